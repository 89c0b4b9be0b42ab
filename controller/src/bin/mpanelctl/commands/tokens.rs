//! `tokens` (list, create, revoke) and `activity` (the audit log).

use serde_json::{Value, json};

use super::{Ctx, rows};
use crate::cli::{Paging, Tokens};
use crate::failure::Failure;
use crate::output::{Table, cell};

pub async fn run(ctx: &Ctx, command: Tokens) -> Result<(), Failure> {
    let c = &ctx.client;
    match command {
        Tokens::List => {
            let answer = c.get("/api/tokens", &[]).await?;
            ctx.show(&answer, |a| {
                let mut t = Table::new(&[
                    "ID",
                    "NAME",
                    "SCOPES",
                    "STATUS",
                    "CREATED",
                    "LAST USED",
                    "EXPIRES",
                ]);
                for k in rows(a, "tokens") {
                    let scopes = k["scopes"]
                        .as_array()
                        .map(|s| s.iter().map(cell).collect::<Vec<_>>().join(","))
                        .unwrap_or_default();
                    t.row(vec![
                        cell(&k["id"]),
                        cell(&k["name"]),
                        scopes,
                        cell(&k["status"]),
                        cell(&k["createdAt"]),
                        cell(&k["lastUsedAt"]),
                        cell(&k["expiresAt"]),
                    ]);
                }
                t.print();
            });
        }
        Tokens::Create {
            name,
            scopes,
            expires,
        } => {
            let mut body = json!({ "name": name, "scopes": scopes });
            if let Some(expires) = expires {
                body["expiresAt"] = json!(expires);
            }
            let answer = c.post("/api/tokens", Some(body)).await?;
            ctx.show(&answer, |a| {
                // The one time the token is shown: alone on stdout, so it can be captured.
                eprintln!(
                    "token {} ({}) created; it is shown once:",
                    cell(&a["id"]),
                    cell(&a["name"])
                );
                println!("{}", cell(&a["token"]));
            });
        }
        Tokens::Revoke { id } => {
            let answer = c.delete(&format!("/api/tokens/{id}")).await?;
            ctx.show(&answer, |a| {
                println!("token {} ({}) revoked", cell(&a["id"]), cell(&a["name"]));
            });
        }
    }
    Ok(())
}

pub async fn activity(
    ctx: &Ctx,
    target: Option<String>,
    actor: Option<String>,
    since: Option<String>,
    paging: &Paging,
) -> Result<(), Failure> {
    let page = ctx
        .client
        .list(
            "/api/activity",
            &[("target", target), ("actor", actor), ("since", since)],
            "activity",
            paging,
        )
        .await?;
    ctx.show_list(&page, |p| {
        let mut t = Table::new(&[
            "ID", "WHEN", "ACTOR", "ACTION", "TARGET", "REQUEST", "CHANGE",
        ]);
        for e in rows(p, "activity") {
            t.row(vec![
                cell(&e["id"]),
                cell(&e["createdAt"]),
                cell(&e["actor"]),
                cell(&e["action"]),
                cell(&e["target"]),
                cell(&e["requestId"]),
                change_cell(&e["before"], &e["after"]),
            ]);
        }
        t.print();
    });
    Ok(())
}

/// The widest the CHANGE column gets; `--json` shows the whole of `before` and `after`.
const CHANGE_WIDTH: usize = 80;

/// `before` and `after` in one short cell: `status: active→suspended` for an update,
/// `+ name=…` for a creation, `- hostname=…` for a deletion, `-` when the row has neither.
fn change_cell(before: &Value, after: &Value) -> String {
    let fields = |v: &Value| -> Vec<(String, Value)> {
        v.as_object()
            .map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    };
    let text = match (before.is_object(), after.is_object()) {
        (true, true) => {
            let mut keys: Vec<String> = fields(after).into_iter().map(|(k, _)| k).collect();
            for (k, _) in fields(before) {
                if !keys.contains(&k) {
                    keys.push(k);
                }
            }
            keys.iter()
                .map(|k| {
                    format!(
                        "{k}: {}→{}",
                        cell(&before[k.as_str()]),
                        cell(&after[k.as_str()])
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        }
        (false, true) => listed("+", &fields(after)),
        (true, false) => listed("-", &fields(before)),
        (false, false) => return "-".to_owned(),
    };
    shortened(&text, CHANGE_WIDTH)
}

fn listed(sign: &str, fields: &[(String, Value)]) -> String {
    let shown: Vec<String> = fields
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| format!("{k}={}", cell(v)))
        .collect();
    format!("{sign} {}", shown.join(", "))
}

fn shortened(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(width - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_shows_each_field_from_old_to_new() {
        let cell = change_cell(
            &json!({ "status": "active", "maxAccounts": 10 }),
            &json!({ "status": "draining", "maxAccounts": 20 }),
        );
        assert_eq!(cell, "maxAccounts: 10→20, status: active→draining");
    }

    #[test]
    fn creations_deletions_and_rows_without_changes_are_told_apart() {
        assert_eq!(
            change_cell(&Value::Null, &json!({ "name": "ops", "revokedAt": null })),
            "+ name=ops"
        );
        assert_eq!(
            change_cell(&json!({ "hostname": "a.example" }), &Value::Null),
            "- hostname=a.example"
        );
        assert_eq!(change_cell(&Value::Null, &Value::Null), "-");
    }

    #[test]
    fn a_long_change_is_cut_to_the_column() {
        let long = "x".repeat(200);
        let cell = change_cell(&json!({ "name": "a" }), &json!({ "name": long }));
        assert_eq!(cell.chars().count(), CHANGE_WIDTH);
        assert!(cell.ends_with('…'));
    }
}
