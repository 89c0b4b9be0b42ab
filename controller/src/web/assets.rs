//! Static assets compiled into the binary: the stylesheet every page links and the one script
//! that keeps live parts of a page current. Served under `/assets/<name>` with a strong ETag, so
//! a browser revalidates instead of downloading again.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::Web;

/// Name, content type, bytes.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("assets/style.css"),
    ),
    (
        "live.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/live.js"),
    ),
];

pub(super) fn routes() -> Router<Web> {
    Router::new().route("/assets/{name}", get(asset))
}

async fn asset(State(web): State<Web>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    let Some((_, content_type, bytes)) = ASSETS.iter().find(|(n, _, _)| *n == name) else {
        return web.not_found("/");
    };
    let etag = format!("\"{}\"", hex::encode(&aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref()[..12]));
    let cache = HeaderValue::from_static("public, max-age=300, must-revalidate");
    let etag_value = HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"0\""));
    let fresh = headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    if fresh {
        return (
            StatusCode::NOT_MODIFIED,
            [(ETAG, etag_value), (CACHE_CONTROL, cache)],
        )
            .into_response();
    }
    (
        StatusCode::OK,
        [
            (CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (ETAG, etag_value),
            (CACHE_CONTROL, cache),
        ],
        *bytes,
    )
        .into_response()
}
