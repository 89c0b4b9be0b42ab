//! The agent's state directory: its private key (generated here, never sent anywhere), the
//! certificate the controller signed, the controller's CA, what enrollment said, and the
//! session status `mpanel-agent status` reads. Every file is written 0600 via a temporary file
//! and a rename, so a crash never leaves a half-written key or certificate.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error(
        "not enrolled: {dir} has no certificate; run `mpanel-agent enroll --controller URL --token TOKEN`"
    )]
    NotEnrolled { dir: String },
}

/// What `enroll` learned, kept beside the key and certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrollment {
    pub server_id: i64,
    pub controller: String,
    pub ca_fingerprint: String,
    pub enrolled_at_ms: i64,
}

/// The live session's state as `run` last wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionStatus {
    /// `connecting`, `connected`, `disconnected`, `needs_enrollment`.
    pub state: String,
    pub since_ms: i64,
    pub detail: String,
    pub pid: u32,
}

#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl StateDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn key_path(&self) -> PathBuf {
        self.dir.join("agent.key")
    }

    pub fn cert_path(&self) -> PathBuf {
        self.dir.join("agent.crt")
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    fn enrollment_path(&self) -> PathBuf {
        self.dir.join("enrollment.json")
    }

    fn status_path(&self) -> PathBuf {
        self.dir.join("session.json")
    }

    /// Creates the directory (0700) if needed.
    pub fn ensure(&self) -> Result<(), StateError> {
        std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))
                .map_err(io(&self.dir))?;
        }
        Ok(())
    }

    /// Writes `name` atomically with mode 0600, on disk before it returns.
    pub fn write_private(&self, path: &Path, contents: &[u8]) -> Result<(), StateError> {
        Self::write_atomically(path, contents, true)
    }

    /// Writes `path` atomically (a temporary file renamed over it) with mode 0600; `durable`:
    /// flushed to disk first, for what must survive a power cut (keys, certificates).
    fn write_atomically(path: &Path, contents: &[u8], durable: bool) -> Result<(), StateError> {
        let tmp = path.with_extension("tmp");
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp).map_err(io(&tmp))?;
        #[cfg(unix)]
        {
            // `mode` applies only when the file is created; an older tmp file keeps its mode.
            use std::os::unix::fs::PermissionsExt as _;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(io(&tmp))?;
        }
        file.write_all(contents).map_err(io(&tmp))?;
        if durable {
            file.sync_all().map_err(io(&tmp))?;
        }
        drop(file);
        std::fs::rename(&tmp, path).map_err(io(path))?;
        Ok(())
    }

    fn read(&self, path: &Path) -> Result<String, StateError> {
        std::fs::read_to_string(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                StateError::NotEnrolled {
                    dir: self.dir.display().to_string(),
                }
            } else {
                StateError::Io {
                    path: path.display().to_string(),
                    source: e,
                }
            }
        })
    }

    pub fn read_key(&self) -> Result<String, StateError> {
        self.read(&self.key_path())
    }

    pub fn read_cert(&self) -> Result<String, StateError> {
        self.read(&self.cert_path())
    }

    pub fn read_ca(&self) -> Result<String, StateError> {
        self.read(&self.ca_path())
    }

    /// Stores a new key and certificate; the key first, so a crash in between leaves a
    /// mismatched pair only until the next renewal... which is why both are written before
    /// either is used, and `load` checks they belong together.
    pub fn store_identity(&self, key_pem: &str, cert_pem: &str) -> Result<(), StateError> {
        self.write_private(&self.key_path(), key_pem.as_bytes())?;
        self.write_private(&self.cert_path(), cert_pem.as_bytes())
    }

    pub fn store_ca(&self, ca_pem: &str) -> Result<(), StateError> {
        self.write_private(&self.ca_path(), ca_pem.as_bytes())
    }

    pub fn store_enrollment(&self, e: &Enrollment) -> Result<(), StateError> {
        let text = serde_json::to_vec_pretty(e).unwrap_or_default();
        self.write_private(&self.enrollment_path(), &text)
    }

    pub fn enrollment(&self) -> Result<Enrollment, StateError> {
        let path = self.enrollment_path();
        let text = self.read(&path)?;
        serde_json::from_str(&text).map_err(|e| StateError::Invalid {
            path: path.display().to_string(),
            message: e.to_string(),
        })
    }

    /// The session's state for `mpanel-agent status`. Written at every connection attempt,
    /// and only informative: not flushed to disk (a flush costs milliseconds of blocked I/O
    /// each time, and a status lost in a power cut is rewritten at the next attempt).
    pub fn store_status(&self, status: &SessionStatus) -> Result<(), StateError> {
        let text = serde_json::to_vec(status).unwrap_or_default();
        Self::write_atomically(&self.status_path(), &text, false)
    }

    pub fn status(&self) -> Option<SessionStatus> {
        let text = std::fs::read_to_string(self.status_path()).ok()?;
        serde_json::from_str(&text).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_private_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("state"));
        state.ensure().unwrap();
        state.store_identity("KEY", "CERT").unwrap();
        assert_eq!(state.read_key().unwrap(), "KEY");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            for path in [state.key_path(), state.cert_path()] {
                let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600);
            }
        }
        let e = Enrollment {
            server_id: 3,
            controller: "https://c".into(),
            ca_fingerprint: "ab".into(),
            enrolled_at_ms: 1,
        };
        state.store_enrollment(&e).unwrap();
        assert_eq!(state.enrollment().unwrap(), e);
    }

    #[test]
    fn a_missing_certificate_says_how_to_enrol() {
        let dir = tempfile::tempdir().unwrap();
        let err = StateDir::new(dir.path()).read_cert().unwrap_err();
        assert!(err.to_string().contains("mpanel-agent enroll"), "{err}");
    }
}
