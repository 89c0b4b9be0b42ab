//! `tokens` (list, create, revoke) and `activity` (the audit log).

use serde_json::json;

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
        let mut t = Table::new(&["ID", "WHEN", "ACTOR", "ACTION", "TARGET", "REQUEST"]);
        for e in rows(p, "activity") {
            t.row(vec![
                cell(&e["id"]),
                cell(&e["createdAt"]),
                cell(&e["actor"]),
                cell(&e["action"]),
                cell(&e["target"]),
                cell(&e["requestId"]),
            ]);
        }
        t.print();
    });
    Ok(())
}
