//! Admin authentication: `Authorization: Bearer <admin token>`, looked up by its SHA-256.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::error::ApiError;
use crate::app::AppState;
use crate::crypto::token_hash;

/// Proof that the request carries a live admin token. Handlers that take it are admin-only.
#[derive(Debug, Clone)]
pub struct Admin {
    pub token_id: i64,
    pub token_name: String,
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
        let token =
            found.ok_or_else(|| ApiError::unauthorized("invalid or revoked admin token"))?;
        Ok(Admin {
            token_id: token.id,
            token_name: token.name,
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
    use super::bearer_token;

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
