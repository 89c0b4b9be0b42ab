//! The API client: JSON requests with the admin token, answers turned into `Value` or a
//! `Failure`, and the keyset paging every list route shares.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Map, Value};

use crate::cli::Paging;
use crate::config::Settings;
use crate::failure::Failure;

pub struct Client {
    http: reqwest::Client,
    settings: Settings,
}

/// Query parameters; `None` values are left out.
pub type Query<'a> = &'a [(&'a str, Option<String>)];

impl Client {
    pub fn new(settings: Settings) -> Result<Client, Failure> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("mpanelctl/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            // The slowest routes wait for a charge (45 s) or a task (120 s).
            .timeout(Duration::from_secs(150))
            .build()
            .map_err(Failure::from)?;
        Ok(Client { http, settings })
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        query: Query<'_>,
        body: Option<Value>,
    ) -> Result<Value, Failure> {
        let query: Vec<(&str, &str)> = query
            .iter()
            .filter_map(|(k, v)| v.as_deref().map(|v| (*k, v)))
            .collect();
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.settings.url))
            .bearer_auth(self.settings.token.expose())
            .query(&query);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let raw = resp.text().await?;
        let body: Value = if raw.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&raw).unwrap_or(Value::Null)
        };
        // The pay route answers 202 with an error object when the charge is still running.
        if !(200..300).contains(&status) || body["error"].is_object() {
            return Err(Failure::from_answer(status, &body, &raw));
        }
        if body.is_null() && !raw.trim().is_empty() {
            return Err(Failure::Runtime(format!(
                "the API answered HTTP {status} with something that is not JSON"
            )));
        }
        Ok(body)
    }

    pub async fn get(&self, path: &str, query: Query<'_>) -> Result<Value, Failure> {
        self.request(Method::GET, path, query, None).await
    }

    pub async fn post(&self, path: &str, body: Option<Value>) -> Result<Value, Failure> {
        self.request(Method::POST, path, &[], body).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Result<Value, Failure> {
        self.request(Method::PATCH, path, &[], Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Result<Value, Failure> {
        self.request(Method::DELETE, path, &[], None).await
    }

    /// A paged list: the first page (from `--cursor` if given), or with `--all` every page
    /// joined under `key` with `nextCursor: null`.
    pub async fn list(
        &self,
        path: &str,
        filters: Query<'_>,
        key: &str,
        paging: &Paging,
    ) -> Result<Value, Failure> {
        let mut cursor = paging.cursor.clone();
        let mut rows: Vec<Value> = Vec::new();
        loop {
            let mut query: Vec<(&str, Option<String>)> = filters.to_vec();
            query.push(("limit", paging.limit.map(|l| l.to_string())));
            query.push(("cursor", cursor.clone()));
            let mut page = self.get(path, &query).await?;
            let next = page["nextCursor"].as_str().map(str::to_owned);
            if !paging.all {
                return Ok(page);
            }
            match page[key].take() {
                Value::Array(more) => rows.extend(more),
                other => {
                    return Err(Failure::Runtime(format!(
                        "the API's page of {path} has no '{key}' list: {other}"
                    )));
                }
            }
            match next {
                // A cursor that does not move would loop for ever.
                Some(n) if Some(&n) != cursor.as_ref() => cursor = Some(n),
                _ => break,
            }
        }
        let mut all = Map::new();
        all.insert(key.to_owned(), Value::Array(rows));
        all.insert("nextCursor".to_owned(), Value::Null);
        Ok(Value::Object(all))
    }
}
