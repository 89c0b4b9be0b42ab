//! `services`: order, list, show, and the changes that queue a task on the service's server.

use std::io::BufRead;

use serde_json::{Value, json};

use super::tasks::{queued, watch};
use super::{Ctx, rows};
use crate::cli::Services;
use crate::failure::Failure;
use crate::output::{Table, cell, record};

pub async fn run(ctx: &Ctx, command: Services) -> Result<(), Failure> {
    let c = &ctx.client;
    let action = |id: u64, action: &str| format!("/api/services/{id}/{action}");
    match command {
        Services::Order {
            customer,
            product,
            domain,
            cycle,
            follow,
        } => {
            let answer = c
                .post(
                    "/api/services",
                    Some(json!({
                        "customerId": customer,
                        "productId": product,
                        "domain": domain,
                        "billingCycle": cycle.as_str(),
                    })),
                )
                .await?;
            for w in answer["warnings"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[])
            {
                eprintln!("warning: {}", warning(w));
            }
            let service = &answer["service"];
            let job = cell(&answer["jobId"]);
            if follow.wait {
                if !ctx.json {
                    println!("service {} ordered: {job}", cell(&service["id"]));
                }
                watch(ctx, &job, std::time::Duration::from_secs(1), None).await?;
            } else {
                ctx.show(&answer, |_| {
                    println!(
                        "service {} ordered for {} ({}); provisioning task {job}",
                        cell(&service["id"]),
                        cell(&service["domain"]),
                        cell(&service["status"]),
                    );
                });
            }
        }
        Services::List {
            customer,
            status,
            paging,
        } => {
            let filters = [
                ("customerId", customer.map(|c| c.to_string())),
                ("status", status),
            ];
            let page = c
                .list("/api/services", &filters, "services", &paging)
                .await?;
            ctx.show_list(&page, |p| {
                let mut t = Table::new(&[
                    "ID", "DOMAIN", "CUSTOMER", "PRODUCT", "SERVER", "STATUS", "USERNAME",
                    "NEXT DUE",
                ]);
                for s in rows(p, "services") {
                    let status = match s["suspensionReason"].as_str() {
                        Some(r) if s["status"] == "suspended" => format!("suspended ({r})"),
                        _ => cell(&s["status"]),
                    };
                    t.row(vec![
                        cell(&s["id"]),
                        cell(&s["domain"]),
                        cell(&s["customerId"]),
                        cell(&s["productId"]),
                        cell(&s["serverId"]),
                        status,
                        cell(&s["username"]),
                        cell(&s["nextDueDate"]),
                    ]);
                }
                t.print();
            });
        }
        Services::Show { id } => {
            let service = c.get(&format!("/api/services/{id}"), &[]).await?;
            ctx.show(&service, |s| record(s, &[]));
        }
        Services::Suspend {
            id,
            reason,
            note,
            follow,
        } => {
            let mut body = json!({ "reason": reason.as_str() });
            if let Some(n) = note {
                body["note"] = n.into();
            }
            let answer = c.post(&action(id, "suspend"), Some(body)).await?;
            queued(ctx, &answer, &follow).await?;
        }
        Services::Unsuspend { id, follow } => {
            let answer = c.post(&action(id, "unsuspend"), None).await?;
            queued(ctx, &answer, &follow).await?;
        }
        Services::Terminate { id, yes, follow } => {
            // clap requires --yes; this keeps the check if that ever changes.
            if !yes {
                return Err(Failure::Usage("terminate needs --yes".to_owned()));
            }
            let answer = c.post(&action(id, "terminate"), None).await?;
            queued(ctx, &answer, &follow).await?;
        }
        Services::ChangePackage {
            id,
            product,
            follow,
        } => {
            let answer = c
                .post(
                    &action(id, "change-package"),
                    Some(json!({ "productId": product })),
                )
                .await?;
            queued(ctx, &answer, &follow).await?;
        }
        Services::ChangePassword {
            id,
            password_stdin,
            follow,
        } => {
            let body = if password_stdin {
                Some(json!({ "password": read_password()? }))
            } else {
                None
            };
            let answer = c.post(&action(id, "change-password"), body).await?;
            queued(ctx, &answer, &follow).await?;
        }
        Services::Backups { id } => {
            let answer = c.get(&action(id, "backups"), &[]).await?;
            ctx.show(&answer, |a| {
                let mut t = Table::new(&[
                    "ID", "PURPOSE", "STATUS", "SIZE", "CREATED", "DELETED", "LOCATION",
                ]);
                for b in rows(a, "backups") {
                    t.row(vec![
                        cell(&b["id"]),
                        cell(&b["purpose"]),
                        cell(&b["status"]),
                        cell(&b["sizeBytes"]),
                        cell(&b["createdAt"]),
                        cell(&b["deletedAt"]),
                        cell(&b["location"]),
                    ]);
                }
                t.print();
            });
        }
        Services::Restore { id, backup, follow } => {
            let answer = c
                .post(&action(id, "restore"), Some(json!({ "backupId": backup })))
                .await?;
            queued(ctx, &answer, &follow).await?;
        }
    }
    Ok(())
}

/// A domain warning: the API's text when it sends one, else the JSON.
fn warning(w: &Value) -> String {
    w.as_str()
        .map(str::to_owned)
        .or_else(|| w["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| w.to_string())
}

/// The first line of stdin, without its line ending.
fn read_password() -> Result<String, Failure> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Failure::Runtime(format!("cannot read the password from stdin: {e}")))?;
    let password = line.trim_end_matches(['\n', '\r']).to_owned();
    if password.is_empty() {
        return Err(Failure::Usage(
            "--password-stdin: stdin held no password".to_owned(),
        ));
    }
    Ok(password)
}
