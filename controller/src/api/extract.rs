//! The extractors every route reads its request with: [`JsonBody`] for bodies and [`PathId`] /
//! [`PathSegment`] for the `{id}` in paths. Each refuses in the contract's error body, naming
//! the field when it can, so no handler sees axum's own plain-text rejections.

use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequest, Path, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::{ApiError, ApiResult};

/// A JSON request body that must be an object, read into `T`.
///
/// serde reads a struct from a JSON array too, field by field in order, so `["a", 1]` would
/// pass for `{"name":"a","id":1}`; a body that is not an object is refused before `T` sees it.
/// Errors name the field by its path (`prices[0].amount`). As `Option<JsonBody<T>>`, a request
/// without a `Content-Type` is `None` (for routes whose body is optional).
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T, S> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> ApiResult<Self> {
        let axum::Json(value) =
            <axum::Json<Value> as FromRequest<S>>::from_request(req, state).await?;
        from_object(value).map(JsonBody)
    }
}

impl<T, S> OptionalFromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> ApiResult<Option<Self>> {
        let value = <axum::Json<Value> as OptionalFromRequest<S>>::from_request(req, state).await?;
        value
            .map(|axum::Json(value)| from_object(value).map(JsonBody))
            .transpose()
    }
}

fn from_object<T: DeserializeOwned>(value: Value) -> ApiResult<T> {
    if !value.is_object() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            format!(
                "the request body must be a JSON object, not {}",
                json_kind(&value)
            ),
        ));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let field = field_of(&path, &inner);
        let message = match &field {
            Some(field) => format!("{field}: {inner}"),
            None => inner,
        };
        ApiError {
            field,
            ..ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", message)
        }
    })
}

/// The full path of the offending field: the path serde walked to the error, plus the field a
/// "missing field" or "unknown field" message names (serde reports those from the object that
/// holds them).
fn field_of(path: &str, message: &str) -> Option<String> {
    let named = ["missing field `", "unknown field `"]
        .iter()
        .find_map(|prefix| message.split(prefix).nth(1))
        .and_then(|rest| rest.split('`').next());
    let path = (path != ".").then_some(path);
    match (path, named) {
        (Some(path), Some(name)) if !path.ends_with(name) => Some(format!("{path}.{name}")),
        (Some(path), _) => Some(path.to_owned()),
        (None, name) => name.map(str::to_owned),
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The `{id}` segment of a path, as sent (for ids that are not plain numbers, like `job_12`).
#[derive(Debug)]
pub struct PathSegment(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathSegment {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> ApiResult<Self> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::invalid("id", "invalid_id", e.body_text()))?;
        Ok(PathSegment(raw))
    }
}

/// A positive numeric `{id}` from the path, as the typed id `T` (`ServerId`, `ProductId`, …).
/// Anything else, zero and negatives included, is a 400 naming `id`: no record has such an id,
/// so "not found" would mislead.
#[derive(Debug)]
pub struct PathId<T>(pub T);

impl<T, S> FromRequestParts<S> for PathId<T>
where
    T: From<i64>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> ApiResult<Self> {
        let PathSegment(raw) = PathSegment::from_request_parts(parts, state).await?;
        positive_id("id", &raw).map(|id| PathId(T::from(id)))
    }
}

/// A positive integer id given as text, or a 400 naming `field`.
pub(super) fn positive_id(field: &str, raw: &str) -> ApiResult<i64> {
    match raw.parse::<i64>() {
        Ok(id) if id > 0 => Ok(id),
        _ => Err(ApiError::invalid(
            field,
            "invalid_id",
            format!("'{}' is not a positive integer id", shown(raw)),
        )),
    }
}

/// Echoes at most 40 characters of what the client sent.
pub(super) fn shown(raw: &str) -> String {
    raw.chars().take(40).collect()
}

/// For `#[serde(default, deserialize_with = "given")]` on an `Option` field of a PATCH body:
/// left out stays `None`, given becomes `Some`. With `Option<T>` a field the column always holds
/// refuses `null` (T cannot be read from it); with `Option<Option<T>>` a `null` reads as
/// `Some(None)`, "clear it", apart from "leave it".
pub(super) fn given<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Order {
        #[allow(dead_code)]
        customer_id: i64,
        #[allow(dead_code)]
        #[serde(default)]
        prices: Vec<Price>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Price {
        #[allow(dead_code)]
        amount: i64,
    }

    fn refusal(value: Value) -> ApiError {
        from_object::<Order>(value).unwrap_err()
    }

    #[test]
    fn only_an_object_is_read_as_a_struct() {
        for body in [json!([7, []]), json!(7), json!("x"), json!(null)] {
            let e = refusal(body.clone());
            assert_eq!(
                (e.code, e.field.as_deref()),
                ("invalid_body", None),
                "{body}"
            );
            assert!(e.message.contains("JSON object"), "{}", e.message);
        }
        assert!(from_object::<Order>(json!({"customerId": 7})).is_ok());
    }

    #[test]
    fn refusals_name_the_field_by_its_path() {
        let cases = [
            (json!({}), "customerId"),
            (json!({"customerId": "x"}), "customerId"),
            (json!({"customerId": 1, "colour": 2}), "colour"),
            (
                json!({"customerId": 1, "prices": [{"amount": "x"}]}),
                "prices[0].amount",
            ),
            (json!({"customerId": 1, "prices": [{}]}), "prices[0].amount"),
            (
                json!({"customerId": 1, "prices": [{"amount": 1, "tax": 2}]}),
                "prices[0].tax",
            ),
        ];
        for (body, field) in cases {
            let e = refusal(body.clone());
            assert_eq!(e.field.as_deref(), Some(field), "{body}: {}", e.message);
            assert!(
                e.message.starts_with(&format!("{field}: ")),
                "{}",
                e.message
            );
        }
    }
}
