//! Stripe's request encoding: `application/x-www-form-urlencoded` pairs (or a query string)
//! whose keys nest with brackets (`metadata[order_id]=7`,
//! `line_items[0][price_data][unit_amount]=999`, `payment_method_types[]=card`), read into one
//! JSON object whose leaves are strings, and typed, validated access to it that answers with
//! Stripe's `invalid_request_error` shapes (`parameter_missing`, `parameter_unknown`, ...).

use serde_json::{Map, Value};

use crate::error::ApiError;

/// A key segment or a value that is not valid nesting (`a[b`, `a=1&a[b]=2`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FormError {
    pub key: String,
    pub message: String,
}

/// Decodes a form body or a query string into nested JSON. Numeric segments make arrays
/// (`items[1]` and `items[0]` give a two-element array ordered by index); `[]` appends. A key
/// given twice keeps its last value.
pub(crate) fn parse(raw: &[u8]) -> Result<Map<String, Value>, FormError> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_bytes(raw).map_err(|e| FormError {
            key: String::new(),
            message: format!("The request body could not be decoded: {e}"),
        })?;
    let mut root = Node::Map(Vec::new());
    for (key, value) in pairs {
        let segments = split_key(&key)?;
        insert(&mut root, &segments, value, &key)?;
    }
    match root.into_value() {
        Value::Object(map) => Ok(map),
        // The root only holds named keys; an all-numeric top level is still an object.
        Value::Array(items) => Ok(items
            .into_iter()
            .enumerate()
            .map(|(i, v)| (i.to_string(), v))
            .collect()),
        _ => Ok(Map::new()),
    }
}

/// `a[b][0][]` -> `["a", "b", "0", ""]`.
fn split_key(key: &str) -> Result<Vec<String>, FormError> {
    let invalid = || FormError {
        key: key.to_owned(),
        message: format!("Invalid parameter name: {key}"),
    };
    let (head, mut rest) = match key.find('[') {
        Some(i) => (&key[..i], &key[i..]),
        None => (key, ""),
    };
    if head.is_empty() {
        return Err(invalid());
    }
    let mut segments = vec![head.to_owned()];
    while !rest.is_empty() {
        let inner = rest.strip_prefix('[').ok_or_else(invalid)?;
        let close = inner.find(']').ok_or_else(invalid)?;
        let segment = &inner[..close];
        if segment.contains('[') {
            return Err(invalid());
        }
        segments.push(segment.to_owned());
        rest = &inner[close + 1..];
    }
    Ok(segments)
}

/// The tree while it is built: maps keep first-insertion order.
enum Node {
    Leaf(String),
    Map(Vec<(String, Node)>),
}

fn insert(node: &mut Node, segments: &[String], value: String, key: &str) -> Result<(), FormError> {
    let nesting = || FormError {
        key: key.to_owned(),
        message: format!("Invalid nesting for parameter {key}: a value and nested keys collide"),
    };
    let Node::Map(entries) = node else {
        return Err(nesting());
    };
    let (first, rest) = segments
        .split_first()
        .expect("split_key gives one segment at least");
    // `[]` appends: the next index of this level.
    let name = if first.is_empty() {
        entries.len().to_string()
    } else {
        first.clone()
    };
    let position = entries.iter().position(|(k, _)| *k == name);
    if rest.is_empty() {
        match position {
            Some(i) if matches!(entries[i].1, Node::Leaf(_)) => entries[i].1 = Node::Leaf(value),
            Some(_) => return Err(nesting()),
            None => entries.push((name, Node::Leaf(value))),
        }
        return Ok(());
    }
    let i = match position {
        Some(i) => i,
        None => {
            entries.push((name, Node::Map(Vec::new())));
            entries.len() - 1
        }
    };
    insert(&mut entries[i].1, rest, value, key)
}

impl Node {
    fn into_value(self) -> Value {
        match self {
            Node::Leaf(s) => Value::String(s),
            Node::Map(entries) => {
                let all_indexes = !entries.is_empty()
                    && entries
                        .iter()
                        .all(|(k, _)| !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()));
                if all_indexes {
                    let mut indexed: Vec<(u64, Value)> = entries
                        .into_iter()
                        .map(|(k, v)| (k.parse().unwrap_or(u64::MAX), v.into_value()))
                        .collect();
                    indexed.sort_by_key(|(i, _)| *i);
                    Value::Array(indexed.into_iter().map(|(_, v)| v).collect())
                } else {
                    Value::Object(
                        entries
                            .into_iter()
                            .map(|(k, v)| (k, v.into_value()))
                            .collect(),
                    )
                }
            }
        }
    }
}

/// A level of the parameters with its bracketed name, so errors name the full parameter
/// (`line_items[0][price_data][currency]`), as Stripe's `param` does.
#[derive(Debug, Clone)]
pub(crate) struct Params<'a> {
    map: &'a Map<String, Value>,
    prefix: String,
}

/// Owned top-level parameters of one request.
#[derive(Debug, Clone, Default)]
pub(crate) struct Form(pub Map<String, Value>);

impl Form {
    pub fn params(&self) -> Params<'_> {
        Params {
            map: &self.0,
            prefix: String::new(),
        }
    }
}

impl<'a> Params<'a> {
    /// The full name of `key` at this level.
    pub fn name(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}[{key}]", self.prefix)
        }
    }

    /// `parameter_unknown` for the first key not in `allowed` (`expand` is always allowed at
    /// the top level and ignored: the double never expands).
    pub fn only(&self, allowed: &[&str]) -> Result<(), ApiError> {
        for key in self.map.keys() {
            let top_level_expand = self.prefix.is_empty() && key == "expand";
            if !allowed.contains(&key.as_str()) && !top_level_expand {
                let name = self.name(key);
                return Err(ApiError::invalid(
                    "parameter_unknown",
                    &name,
                    format!("Received unknown parameter: {name}"),
                ));
            }
        }
        Ok(())
    }

    /// A string parameter; nested keys where a string belongs are `parameter_invalid_string`.
    pub fn str(&self, key: &str) -> Result<Option<&'a str>, ApiError> {
        match self.map.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => {
                let name = self.name(key);
                Err(ApiError::invalid(
                    "parameter_invalid_string",
                    &name,
                    format!("Invalid string: {name} must be a string, not a hash"),
                ))
            }
        }
    }

    /// A non-empty string, `None` when absent or empty (Stripe reads `param=` as unset).
    pub fn text(&self, key: &str) -> Result<Option<String>, ApiError> {
        Ok(self.str(key)?.filter(|s| !s.is_empty()).map(str::to_owned))
    }

    pub fn required_str(&self, key: &str) -> Result<&'a str, ApiError> {
        match self.str(key)? {
            Some(s) if !s.is_empty() => Ok(s),
            _ => Err(ApiError::missing(&self.name(key))),
        }
    }

    pub fn int(&self, key: &str) -> Result<Option<i64>, ApiError> {
        let Some(raw) = self.str(key)? else {
            return Ok(None);
        };
        raw.parse::<i64>().map(Some).map_err(|_| {
            ApiError::invalid(
                "parameter_invalid_integer",
                &self.name(key),
                format!("Invalid integer: {raw}"),
            )
        })
    }

    pub fn required_int(&self, key: &str) -> Result<i64, ApiError> {
        self.int(key)?
            .ok_or_else(|| ApiError::missing(&self.name(key)))
    }

    pub fn bool(&self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.str(key)? {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(other) => Err(ApiError::invalid(
                "parameter_invalid_boolean",
                &self.name(key),
                format!("Invalid boolean: {other}"),
            )),
        }
    }

    /// One of `choices`, `invalid_request_error` naming them otherwise.
    pub fn choice(&self, key: &str, choices: &[&str]) -> Result<Option<&'a str>, ApiError> {
        match self.str(key)? {
            None => Ok(None),
            Some(v) if choices.contains(&v) => Ok(Some(v)),
            Some(v) => {
                let name = self.name(key);
                Err(ApiError::invalid(
                    "parameter_invalid_string",
                    &name,
                    format!(
                        "Invalid {name}: must be one of {}; you passed `{v}`",
                        choices.join(", ")
                    ),
                ))
            }
        }
    }

    /// A nested hash (`metadata[...]`, `price_data[...]`).
    pub fn child(&self, key: &str) -> Result<Option<Params<'a>>, ApiError> {
        match self.map.get_key_value(key) {
            None => Ok(None),
            Some((k, Value::Object(map))) => Ok(Some(Params {
                map,
                prefix: self.name(k),
            })),
            Some(_) => {
                let name = self.name(key);
                Err(ApiError::invalid(
                    "parameter_invalid_string",
                    &name,
                    format!("Invalid hash: {name} must be a hash"),
                ))
            }
        }
    }

    /// The elements of an array of hashes (`line_items[0][...]`).
    pub fn list(&self, key: &str) -> Result<Vec<Params<'a>>, ApiError> {
        match self.map.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::Object(map) => Ok(Params {
                        map,
                        prefix: format!("{}[{i}]", self.name(key)),
                    }),
                    _ => {
                        let name = format!("{}[{i}]", self.name(key));
                        Err(ApiError::invalid(
                            "parameter_invalid_string",
                            &name,
                            format!("Invalid hash: {name} must be a hash"),
                        ))
                    }
                })
                .collect(),
            Some(_) => {
                let name = self.name(key);
                Err(ApiError::invalid(
                    "parameter_invalid_string",
                    &name,
                    format!("Invalid array: {name} must be an array"),
                ))
            }
        }
    }

    /// An array of strings (`payment_method_types[]=card`); a single string counts as one.
    pub fn strings(&self, key: &str) -> Result<Option<Vec<String>>, ApiError> {
        match self.map.get(key) {
            None => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(Some(Vec::new())),
            Some(Value::String(s)) => Ok(Some(vec![s.clone()])),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    _ => Err(ApiError::invalid(
                        "parameter_invalid_string",
                        &self.name(key),
                        format!("Invalid array: {} must hold strings", self.name(key)),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(ApiError::invalid(
                "parameter_invalid_string",
                &self.name(key),
                format!("Invalid array: {} must be an array", self.name(key)),
            )),
        }
    }

    /// `metadata[...]` under Stripe's limits: at most 50 keys, keys up to 40 characters,
    /// values up to 500. `metadata=` (empty) means no metadata. Values stay strings.
    pub fn metadata(&self, key: &str) -> Result<Option<Map<String, Value>>, ApiError> {
        let name = self.name(key);
        let map = match self.map.get(key) {
            None => return Ok(None),
            Some(Value::String(s)) if s.is_empty() => return Ok(Some(Map::new())),
            Some(Value::Object(map)) => map,
            Some(_) => {
                return Err(ApiError::invalid(
                    "parameter_invalid_string",
                    &name,
                    format!("Invalid hash: {name} must be a hash"),
                ));
            }
        };
        if map.len() > 50 {
            return Err(ApiError::invalid(
                "parameter_invalid_string",
                &name,
                "Metadata can have up to 50 keys".to_owned(),
            ));
        }
        for (k, v) in map {
            let param = format!("{name}[{k}]");
            if k.chars().count() > 40 {
                return Err(ApiError::invalid(
                    "parameter_invalid_string",
                    &param,
                    format!(
                        "Metadata keys can have up to 40 characters, but you passed in a key \
                         that is {} characters.",
                        k.chars().count()
                    ),
                ));
            }
            match v {
                Value::String(s) if s.chars().count() > 500 => {
                    return Err(ApiError::invalid(
                        "parameter_invalid_string",
                        &param,
                        format!(
                            "Metadata values can have up to 500 characters, but you passed in \
                             a value that is {} characters.",
                            s.chars().count()
                        ),
                    ));
                }
                Value::String(_) => {}
                _ => {
                    return Err(ApiError::invalid(
                        "parameter_invalid_string",
                        &param,
                        format!("Invalid string: {param} must be a string"),
                    ));
                }
            }
        }
        Ok(Some(map.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parsed(raw: &str) -> Value {
        Value::Object(parse(raw.as_bytes()).expect("parses"))
    }

    #[test]
    fn brackets_nest_into_objects_and_indexed_arrays() {
        let v = parsed(
            "mode=payment&metadata[order_id]=7&line_items[1][quantity]=2\
             &line_items[0][price_data][unit_amount]=999&line_items[0][quantity]=1\
             &line_items[0][price_data][product_data][name]=Hosting%20plan",
        );
        assert_eq!(
            v,
            json!({
                "mode": "payment",
                "metadata": {"order_id": "7"},
                "line_items": [
                    {"price_data": {"unit_amount": "999", "product_data": {"name": "Hosting plan"}},
                     "quantity": "1"},
                    {"quantity": "2"}
                ]
            })
        );
    }

    #[test]
    fn empty_brackets_append_and_the_last_duplicate_wins() {
        let v = parsed("payment_method_types[]=card&payment_method_types[]=link&amount=1&amount=2");
        assert_eq!(
            v,
            json!({"payment_method_types": ["card", "link"], "amount": "2"})
        );
    }

    #[test]
    fn malformed_or_colliding_keys_are_refused() {
        assert!(parse(b"a[b=1").is_err());
        assert!(parse(b"[a]=1").is_err());
        assert!(parse(b"a=1&a[b]=2").is_err());
        assert!(parse(b"a[b]=2&a=1").is_err());
    }

    #[test]
    fn errors_name_the_full_bracketed_parameter() {
        let form = Form(parse(b"line_items[0][price_data][currency]=eur").expect("parses"));
        let items = form.params().list("line_items").expect("list");
        let price = items[0]
            .child("price_data")
            .expect("hash")
            .expect("present");
        let err = price.required_int("unit_amount").expect_err("missing");
        assert_eq!(
            err.param.as_deref(),
            Some("line_items[0][price_data][unit_amount]")
        );
    }
}
