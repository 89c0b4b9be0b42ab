//! Where the API's URL and the admin token come from: flags, then the environment (clap reads
//! both), then the config file. The token is wrapped so it never reaches a `Debug` or an error.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::failure::Failure;

/// The controller's default `HTTP_LISTEN`.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

pub struct Token(String);

impl Token {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(…)")
    }
}

#[derive(Debug)]
pub struct Settings {
    pub url: String,
    pub token: Token,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    url: Option<String>,
    token: Option<String>,
    /// A file holding the token (first line), e.g. a systemd credential.
    token_file: Option<PathBuf>,
}

/// The default config file: `$XDG_CONFIG_HOME/mpanel/ctl.toml`, else `~/.config/mpanel/ctl.toml`.
// This is the CLI's config.rs: the one place it reads the environment (besides clap's `env`).
#[allow(clippy::disallowed_methods)]
fn default_path() -> Option<PathBuf> {
    let non_empty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(dir) = non_empty("XDG_CONFIG_HOME") {
        return Some(PathBuf::from(dir).join("mpanel/ctl.toml"));
    }
    non_empty("HOME").map(|home| PathBuf::from(home).join(".config/mpanel/ctl.toml"))
}

fn read_file(path: &Path, required: bool) -> Result<FileConfig, Failure> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(FileConfig::default());
        }
        Err(e) => {
            return Err(Failure::Usage(format!(
                "cannot read the config file {}: {e}",
                path.display()
            )));
        }
    };
    toml::from_str(&text).map_err(|e| {
        Failure::Usage(format!(
            "config file {}: {}",
            path.display(),
            e.message().trim()
        ))
    })
}

fn given(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// Resolves the URL and token. `url` and `token` are what clap found in the flags or the
/// environment; the file fills in what they leave out. No token is a usage error: nothing is
/// sent without one.
pub fn resolve(
    url: Option<String>,
    token: Option<String>,
    config: Option<&Path>,
) -> Result<Settings, Failure> {
    let url = given(url);
    let token = given(token);
    let file = if url.is_some() && token.is_some() {
        FileConfig::default()
    } else {
        match config {
            Some(path) => read_file(path, true)?,
            None => match default_path() {
                Some(path) => read_file(&path, false)?,
                None => FileConfig::default(),
            },
        }
    };
    let file_token = match (given(file.token), file.token_file) {
        (Some(t), _) => Some(t),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(&path).map_err(|e| {
                Failure::Usage(format!("cannot read token_file {}: {e}", path.display()))
            })?;
            given(text.lines().next().map(str::to_owned))
        }
        (None, None) => None,
    };
    let url = url
        .or(given(file.url))
        .unwrap_or_else(|| DEFAULT_URL.to_owned());
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(Failure::Usage(format!(
            "the API URL '{url}' must start with http:// or https://"
        )));
    }
    let token = token.or(file_token).ok_or_else(|| {
        Failure::Usage(
            "no admin token: set MPANEL_TOKEN, pass --token, or put token = \"…\" in \
             ~/.config/mpanel/ctl.toml (`mpanel-controller token create --admin` makes one)"
                .to_owned(),
        )
    })?;
    Ok(Settings {
        url: url.trim_end_matches('/').to_owned(),
        token: Token(token),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn flags_and_environment_win_over_the_file() {
        let f = file("url = \"http://file:1\"\ntoken = \"file-token\"\n");
        let s = resolve(
            Some("http://flag:2/".into()),
            Some("flag-token".into()),
            Some(f.path()),
        )
        .unwrap();
        assert_eq!(s.url, "http://flag:2");
        assert_eq!(s.token.expose(), "flag-token");
    }

    #[test]
    fn the_file_fills_in_what_flags_leave_out() {
        let f = file("url = \"http://file:1\"\ntoken = \"file-token\"\n");
        let s = resolve(None, None, Some(f.path())).unwrap();
        assert_eq!(s.url, "http://file:1");
        assert_eq!(s.token.expose(), "file-token");
        let s = resolve(None, Some("flag-token".into()), Some(f.path())).unwrap();
        assert_eq!(
            (s.url.as_str(), s.token.expose()),
            ("http://file:1", "flag-token")
        );
    }

    #[test]
    fn a_token_file_is_read_and_the_token_never_shows_in_debug() {
        let t = file("secret-from-file\n");
        let f = file(&format!("token_file = {:?}\n", t.path()));
        let s = resolve(None, None, Some(f.path())).unwrap();
        assert_eq!(s.token.expose(), "secret-from-file");
        assert_eq!(s.url, DEFAULT_URL);
        assert!(!format!("{s:?}").contains("secret-from-file"));
    }

    #[test]
    fn no_token_bad_keys_and_missing_files_are_usage_errors() {
        let empty = file("url = \"http://file:1\"\n");
        let typo = file("tokn = \"x\"\n");
        for (config, want) in [
            (empty.path().to_owned(), "no admin token"),
            (typo.path().to_owned(), "unknown field"),
            (PathBuf::from("/nonexistent/ctl.toml"), "cannot read"),
        ] {
            match resolve(None, None, Some(&config)) {
                Err(Failure::Usage(m)) => assert!(m.contains(want), "{m}"),
                other => panic!("{other:?}"),
            }
        }
        match resolve(Some("ftp://x".into()), Some("t".into()), None) {
            Err(Failure::Usage(m)) => assert!(m.contains("http://"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
