//! Admin authentication: `Authorization: Bearer <admin token>`, looked up by its SHA-256, and
//! authorisation by the token's scopes. Which scope a request needs follows from its method and
//! route alone ([`required_scopes`]), so every admin route is covered by the one rule, including
//! routes added later:
//!
//! - reading (`GET`, `HEAD`) needs `read`;
//! - changing servers, agents and their enrolment (`/api/servers…`, `/api/agents…`) needs `fleet`;
//! - changing invoices and payments (`/api/invoices…`, `/api/orders…`) needs `billing`;
//! - managing tokens and dashboard sessions (`/api/tokens…`, `/api/admin…`, reads included)
//!   needs all four scopes;
//! - any other change needs `write`.

use axum::extract::{FromRequestParts, MatchedPath};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};

use super::error::ApiError;
use crate::app::AppState;
use crate::crypto::token_hash;

/// What an admin token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    Read,
    Write,
    Billing,
    Fleet,
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::Read, Scope::Write, Scope::Billing, Scope::Fleet];

    pub const fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Billing => "billing",
            Scope::Fleet => "fleet",
        }
    }

    pub fn parse(raw: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

/// The scopes of a stored `scopes` column (unknown names are ignored: they grant nothing).
pub fn parse_scopes(stored: &str) -> Vec<Scope> {
    let mut scopes: Vec<Scope> = stored
        .split(',')
        .filter_map(|s| Scope::parse(s.trim()))
        .collect();
    scopes.sort();
    scopes.dedup();
    scopes
}

/// The scopes a request needs, by its method and route template (see the module's rules).
pub fn required_scopes(method: &Method, route: &str) -> &'static [Scope] {
    // A prefix is whole path segments: `/api/servers` covers `/api/servers/{id}`, not
    // `/api/serversx`.
    let under = |prefix: &str| {
        route
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    if under("/api/tokens") || under("/api/admin") {
        return &Scope::ALL;
    }
    if matches!(*method, Method::GET | Method::HEAD) {
        return &[Scope::Read];
    }
    if under("/api/servers") || under("/api/agents") {
        &[Scope::Fleet]
    } else if under("/api/invoices") || under("/api/orders") {
        &[Scope::Billing]
    } else {
        &[Scope::Write]
    }
}

/// Proof that the request carries a live admin token whose scopes allow it. Handlers that take
/// it are admin-only.
#[derive(Debug, Clone)]
pub struct Admin {
    pub token_id: i64,
    pub token_name: String,
    pub scopes: Vec<Scope>,
}

impl Admin {
    /// How this admin is named in the activity log.
    pub fn actor(&self) -> String {
        format!("admin:{}", self.token_id)
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer <admin token>"))?;
        let token = header.to_str().ok().and_then(bearer_token).ok_or_else(|| {
            ApiError::unauthorized("Authorization must be 'Bearer <admin token>'")
        })?;
        let found = state
            .store
            .authenticate_admin_token(&token_hash(token))
            .await?;
        let token = found
            .ok_or_else(|| ApiError::unauthorized("invalid, expired or revoked admin token"))?;
        let scopes = parse_scopes(&token.scopes);
        let route = parts
            .extensions
            .get::<MatchedPath>()
            .map_or_else(|| parts.uri.path(), MatchedPath::as_str);
        if let Some(missing) = required_scopes(&parts.method, route)
            .iter()
            .find(|s| !scopes.contains(s))
        {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "this token lacks the '{}' scope {} {route} needs",
                    missing.as_str(),
                    parts.method
                ),
            ));
        }
        Ok(Admin {
            token_id: token.id,
            token_name: token.name,
            scopes,
        })
    }
}

/// The token of a `Bearer` credential. The scheme name is case-insensitive (RFC 7235, 2.1), so
/// `bearer` and `BEARER` are the same scheme; the token itself is compared exactly.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_follow_method_and_route() {
        assert_eq!(
            required_scopes(&Method::GET, "/api/services/{id}"),
            [Scope::Read]
        );
        assert_eq!(
            required_scopes(&Method::POST, "/api/services/{id}/suspend"),
            [Scope::Write]
        );
        assert_eq!(
            required_scopes(&Method::POST, "/api/servers"),
            [Scope::Fleet]
        );
        assert_eq!(
            required_scopes(&Method::PATCH, "/api/invoices/{id}"),
            [Scope::Billing]
        );
        assert_eq!(required_scopes(&Method::GET, "/api/tokens"), Scope::ALL);
        assert_eq!(
            required_scopes(&Method::GET, "/api/admin/sessions"),
            Scope::ALL
        );
        // A prefix is a path segment, not a string prefix.
        assert_eq!(
            required_scopes(&Method::POST, "/api/serversx"),
            [Scope::Write]
        );
        assert_eq!(
            parse_scopes("fleet, read,bogus,read"),
            [Scope::Read, Scope::Fleet]
        );
    }

    #[test]
    fn the_scheme_is_matched_without_regard_to_case() {
        for header in ["Bearer t0k", "bearer t0k", "BEARER t0k", "bEaReR   t0k "] {
            assert_eq!(bearer_token(header), Some("t0k"), "{header}");
        }
        for header in ["Basic t0k", "Bearer", "Bearer ", "Bearert0k", "t0k"] {
            assert_eq!(bearer_token(header), None, "{header}");
        }
    }
}
