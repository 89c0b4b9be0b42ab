//! The OpenAPI document against the routes the controller really serves: every route is in the
//! document and nothing else is served, each operation is described whole (answers, security,
//! parameters, unique ids, resolvable references), the served document is the generated one,
//! and the documentation page works from files compiled into the binary.

mod fleet_support;

use std::collections::{BTreeMap, BTreeSet};

use fleet_support::{Controller, concrete};
use reqwest::Method;
use serde_json::Value;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// The generated document as JSON.
fn document() -> Value {
    serde_json::to_value(mpanel_controller::api::openapi()).unwrap()
}

/// (path template, method) → operation, for every operation in the document.
fn operations(doc: &Value) -> BTreeMap<(String, String), Value> {
    let mut ops = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            if let Some(op) = item.get(method) {
                ops.insert((path.clone(), method.to_owned()), op.clone());
            }
        }
    }
    ops
}

fn is_public(op: &Value) -> bool {
    op["security"].as_array().is_some_and(|s| {
        s.iter()
            .all(|r| r.as_object().is_some_and(|o| o.is_empty()))
    })
}

/// Routes can only be added through `routes!`, which documents them: a route added any other
/// way would be served without being in the document. The metrics route is served on its own
/// listener (or beside the API) and is no part of the API.
#[test]
fn no_route_is_declared_outside_the_document() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/api");
    let mut stray = Vec::new();
    let mut files = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        files += 1;
        let source = std::fs::read_to_string(&path).unwrap();
        for call in [".route(", ".route_service(", ".nest(", ".nest_service("] {
            for (i, _) in source.match_indices(call) {
                let rest = source[i + call.len()..].trim_start();
                if rest.starts_with("\"/metrics\"") {
                    continue;
                }
                let line = source[..i].lines().count();
                stray.push(format!("{}:{line}: {call}", path.display()));
            }
        }
    }
    assert!(files > 10, "the API's sources were not found in {dir}");
    assert!(stray.is_empty(), "routes outside `routes!`: {stray:#?}");
}

#[test]
fn every_operation_is_described_whole() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(
        doc["info"]["version"]
            .as_str()
            .is_some_and(|v| !v.is_empty())
    );
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let responses = doc["components"]["responses"].as_object().unwrap();
    assert_eq!(
        doc["components"]["securitySchemes"]["adminToken"]["scheme"],
        "bearer"
    );
    let tags: BTreeSet<&str> = doc["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();

    let ops = operations(&doc);
    assert!(ops.len() >= 9, "{} operations", ops.len());
    let mut ids = BTreeSet::new();
    for ((path, method), op) in &ops {
        let at = format!("{method} {path}");
        let id = op["operationId"].as_str().unwrap_or_default();
        assert!(!id.is_empty(), "{at}: no operationId");
        assert!(
            ids.insert(id.to_owned()),
            "{at}: operationId {id} is used twice"
        );
        assert!(
            op["summary"].as_str().is_some_and(|s| !s.is_empty()),
            "{at}: no summary"
        );
        let op_tags = op["tags"].as_array().map(Vec::len).unwrap_or(0);
        assert_eq!(op_tags, 1, "{at}: one tag expected");
        assert!(
            tags.contains(op["tags"][0].as_str().unwrap()),
            "{at}: unknown tag"
        );

        let answers = op["responses"].as_object().unwrap();
        assert!(
            answers
                .keys()
                .any(|s| s.starts_with('2') || s.starts_with('3')),
            "{at}: no success answer"
        );
        for status in ["500", "503"] {
            assert!(answers.contains_key(status), "{at}: no {status}");
        }
        if is_public(op) {
            assert!(!answers.contains_key("401"), "{at}: public but answers 401");
        } else {
            assert_eq!(
                op["security"][0]["adminToken"],
                serde_json::json!([]),
                "{at}"
            );
            for status in ["401", "403"] {
                assert!(answers.contains_key(status), "{at}: no {status}");
            }
        }
        if op.get("requestBody").is_some() {
            assert!(answers.contains_key("400"), "{at}: a body but no 400");
        }

        // Every `{param}` of the template is a required path parameter, and no other is.
        let in_template: BTreeSet<String> = path
            .split('{')
            .skip(1)
            .map(|s| s.split('}').next().unwrap().to_owned())
            .collect();
        let declared: BTreeSet<String> = op["parameters"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .filter(|p| p["in"] == "path")
                    .inspect(|p| assert_eq!(p["required"], true, "{at}: {p}"))
                    .map(|p| p["name"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(in_template, declared, "{at}: path parameters");
    }

    // Every reference resolves.
    let text = doc.to_string();
    let mut refs = 0;
    for (i, _) in text.match_indices("\"$ref\":\"#/components/") {
        let rest = &text[i + "\"$ref\":\"#/components/".len()..];
        let target = &rest[..rest.find('"').unwrap()];
        let (kind, name) = target.split_once('/').unwrap();
        let found = match kind {
            "schemas" => schemas.contains_key(name),
            "responses" => responses.contains_key(name),
            _ => false,
        };
        assert!(found, "dangling reference #/components/{target}");
        refs += 1;
    }
    assert!(refs > ops.len(), "{refs} references");
}

/// Served routes against the document, over HTTP: every documented operation is routed (not
/// 405, not the fallback's 404), every other method of a documented path is 405, an admin
/// operation without a token is 401 and a public one is not; and the served document is the
/// generated one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_routes_are_exactly_the_documented_ones() {
    let mut c = Controller::start(&[]).await;
    let client = reqwest::Client::new();
    let served: Value = client
        .get(format!("{}/api/openapi.json", c.http))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let doc = document();
    assert_eq!(served, doc, "the served document is the generated one");

    let ops = operations(&doc);
    let paths: BTreeSet<&String> = ops.keys().map(|(p, _)| p).collect();
    let mut probed = 0;
    for template in paths {
        let path = concrete(template, "999999");
        for method in METHODS {
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let documented = ops.get(&(template.clone(), method.to_owned()));
            let resp = client
                .request(m.clone(), format!("{}{path}", c.http))
                .bearer_auth(&c.token)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            match documented {
                None => assert_eq!(
                    status, 405,
                    "{method} {path} is served but not documented: {body}"
                ),
                Some(op) => {
                    assert_ne!(status, 405, "{method} {path} is documented but not served");
                    assert_ne!(
                        body["error"]["message"], "no such route",
                        "{method} {path} is documented but not served"
                    );
                    assert!(
                        op["responses"].get(status.to_string()).is_some(),
                        "{method} {path} answered {status}, which its operation does not list: {body}"
                    );
                    let anonymous = client
                        .request(m.clone(), format!("{}{path}", c.http))
                        .send()
                        .await
                        .unwrap()
                        .status()
                        .as_u16();
                    if is_public(op) {
                        assert_ne!(anonymous, 401, "{method} {path} is public in the document");
                    } else {
                        assert_eq!(
                            anonymous, 401,
                            "{method} {path} needs a token in the document"
                        );
                    }
                    probed += 1;
                }
            }
        }
    }
    assert_eq!(probed, ops.len());
    c.stop().await;
}

/// `/api/docs` is Swagger UI from files compiled into the binary: the page loads only its own
/// scripts (nothing from another host), and its initializer points at the served document.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documentation_page_is_served_from_the_binary() {
    let mut c = Controller::start(&[]).await;
    let client = reqwest::Client::new();
    let page = client
        .get(format!("{}/api/docs/", c.http))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    let mut scripts = Vec::new();
    for (i, _) in html.match_indices("src=\"") {
        let rest = &html[i + 5..];
        scripts.push(rest[..rest.find('"').unwrap()].to_owned());
    }
    assert!(scripts.len() >= 2, "{html}");
    for src in &scripts {
        assert!(!src.contains("//"), "{src} is loaded from elsewhere");
        let resp = client
            .get(format!(
                "{}/api/docs/{}",
                c.http,
                src.trim_start_matches("./")
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{src}");
        let text = resp.text().await.unwrap();
        assert!(text.len() > 100, "{src}");
        if src.contains("initializer") {
            assert!(text.contains("/api/openapi.json"), "{text}");
        }
    }
    assert!(
        scripts.iter().any(|s| s.contains("initializer")),
        "{scripts:?}"
    );
    c.stop().await;
}
