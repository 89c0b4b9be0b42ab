//! What the list routes share: query parameters checked by name, and keyset pagination
//! (`?limit=&cursor=` in, `nextCursor` out). Each bad parameter becomes a 400 naming it, in the
//! contract's error body.

use std::collections::HashMap;

use axum::extract::Query;
use axum::extract::rejection::QueryRejection;

use super::error::{ApiError, ApiResult};
use super::extract::{positive_id, shown};
use crate::store::Page;

/// The paging parameters of a list route, for its documentation (`params(PageQuery)`); the
/// route reads them with [`Params::page`].
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(super) struct PageQuery {
    /// How many rows to answer: 1 to 500, 50 when absent.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
    /// The `nextCursor` of the page before.
    #[param(pattern = "^[1-9][0-9]{0,17}$")]
    cursor: Option<String>,
}

/// The query string of a list route, refused when it names a parameter the route does not
/// take (a typo would otherwise silently return everything).
#[derive(Debug)]
pub(super) struct Params(HashMap<String, String>);

impl Params {
    pub(super) fn parse(
        query: Result<Query<HashMap<String, String>>, QueryRejection>,
        allowed: &[&str],
    ) -> ApiResult<Params> {
        let Query(map) = query.map_err(|e| {
            ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "invalid_query",
                e.body_text(),
            )
        })?;
        if let Some(unknown) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(ApiError::invalid(
                unknown,
                "unknown_parameter",
                format!(
                    "not a parameter of this route; expected {}",
                    allowed.join(", ")
                ),
            ));
        }
        Ok(Params(map))
    }

    /// The value of a parameter; an empty value counts as absent.
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    pub(super) fn id(&self, name: &str) -> ApiResult<Option<i64>> {
        self.get(name).map(|v| positive_id(name, v)).transpose()
    }

    /// `limit` (1..=`max`, `default` when absent) and `cursor` (the `nextCursor` of the page
    /// before). The page asks for one row more than the limit, so `finish` can tell whether
    /// another page follows.
    pub(super) fn page(&self, default: i64, max: i64) -> ApiResult<Page> {
        let limit = match self.get("limit") {
            None => default,
            Some(raw) => match raw.parse::<i64>() {
                Ok(n) if (1..=max).contains(&n) => n,
                _ => {
                    return Err(ApiError::invalid(
                        "limit",
                        "invalid_limit",
                        format!("'{}' is not a number from 1 to {max}", shown(raw)),
                    ));
                }
            },
        };
        let after_id = self
            .get("cursor")
            .map(|raw| {
                positive_id("cursor", raw).map_err(|_| {
                    ApiError::invalid(
                        "cursor",
                        "invalid_cursor",
                        format!("'{}' is not a cursor this API returned", shown(raw)),
                    )
                })
            })
            .transpose()?;
        Ok(Page {
            limit: limit + 1,
            after_id,
        })
    }
}

/// Trims the extra row `Params::page` asked for and returns the cursor of the next page, if
/// there is one.
pub(super) fn finish<T>(rows: &mut Vec<T>, page: Page, id: impl Fn(&T) -> i64) -> Option<String> {
    let limit = usize::try_from(page.limit - 1).unwrap_or(0);
    if rows.len() <= limit {
        return None;
    }
    rows.truncate(limit);
    rows.last().map(|row| id(row).to_string())
}
