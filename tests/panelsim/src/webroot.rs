//! Files written into accounts' web roots, and the ACME HTTP-01 responder that serves them.
//!
//! Each panel has its own file-writing call (cPanel `Fileman::save_file_content`, a Plesk CLI
//! gateway command, DirectAdmin's file-manager upload); they all land here as absolute paths.
//! `GET /.well-known/acme-challenge/<token>` picks the site from the `Host` header and serves
//! `<docroot>/.well-known/acme-challenge/<token>`.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::Response;

use crate::reply;
use crate::sim::Sim;
use crate::state::{WebFile, World};

/// Join `input` onto `base` (or take it as absolute), refusing `..` and empty segments.
pub(crate) fn resolve(base: &str, input: &str) -> Option<String> {
    let input = input.trim();
    let joined = if input.starts_with('/') {
        input.to_owned()
    } else {
        format!("{base}/{input}")
    };
    let mut parts = Vec::new();
    for segment in joined.split('/') {
        match segment {
            "" | "." => {}
            ".." => return None,
            other => parts.push(other),
        }
    }
    Some(format!("/{}", parts.join("/")))
}

/// Whether `path` lies inside directory `dir`.
pub(crate) fn is_within(path: &str, dir: &str) -> bool {
    path.strip_prefix(dir)
        .is_some_and(|rest| rest.starts_with('/') && rest.len() > 1)
}

pub(crate) fn write(world: &mut World, owner: &str, path: String, content: Vec<u8>) {
    world.files.insert(
        path,
        WebFile {
            owner: owner.to_owned(),
            content,
        },
    );
}

/// `GET /.well-known/acme-challenge/{token}` (only routed when `web_root_http` is on).
pub(crate) async fn challenge(
    State(sim): State<Arc<Sim>>,
    Path(token): Path<String>,
    request: Request,
) -> Response {
    let host = request
        .uri()
        .host()
        .map(str::to_owned)
        .or_else(|| {
            request
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(strip_port)
        })
        .unwrap_or_default();
    let found = {
        let world = sim.world();
        world.site_for_host(&host).and_then(|site| {
            let path = format!("{}/.well-known/acme-challenge/{token}", site.docroot);
            world.files.get(&path).map(|f| f.content.clone())
        })
    };
    match found {
        Some(content) => {
            tracing::debug!(%host, %token, "served ACME challenge");
            reply::text(
                StatusCode::OK,
                "text/plain",
                String::from_utf8_lossy(&content).into_owned(),
            )
        }
        None => reply::text(
            StatusCode::NOT_FOUND,
            "text/plain",
            "Not Found\n".to_owned(),
        ),
    }
}

fn strip_port(host: &str) -> String {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("").to_owned();
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_relative_and_refuse_parent_segments() {
        assert_eq!(
            resolve("/home/bob", "public_html/.well-known/x").as_deref(),
            Some("/home/bob/public_html/.well-known/x")
        );
        assert_eq!(
            resolve("/home/bob", "/home/bob//a/./b").as_deref(),
            Some("/home/bob/a/b")
        );
        assert_eq!(resolve("/home/bob", "../alice"), None);
        assert!(is_within("/home/bob/a", "/home/bob"));
        assert!(!is_within("/home/bobby/a", "/home/bob"));
        assert_eq!(strip_port("example.com:8080"), "example.com");
        assert_eq!(strip_port("[::1]:80"), "::1");
    }
}
