//! `servers` and `agents`.

use serde_json::{Map, Value, json};

use super::{Ctx, rows};
use crate::cli::{Agents, ServerAdd, Servers};
use crate::failure::Failure;
use crate::output::{Table, cell, record};

pub async fn servers(ctx: &Ctx, command: Servers) -> Result<(), Failure> {
    let c = &ctx.client;
    match command {
        Servers::Add(add) => {
            let server = c.post("/api/servers", Some(server_body(add))).await?;
            ctx.show(&server, |s| record(s, &[]));
        }
        Servers::List { paging } => {
            let page = c.list("/api/servers", &[], "servers", &paging).await?;
            ctx.show_list(&page, |p| {
                let mut t = Table::new(&[
                    "ID", "HOSTNAME", "IP", "PANEL", "STATUS", "GROUP", "MAX", "LOCATION",
                ]);
                for s in rows(p, "servers") {
                    t.row(
                        [
                            "id",
                            "hostname",
                            "ipAddress",
                            "controlPanel",
                            "status",
                            "group",
                            "maxAccounts",
                            "location",
                        ]
                        .iter()
                        .map(|k| cell(&s[*k]))
                        .collect(),
                    );
                }
                t.print();
            });
        }
        Servers::Show { id } => {
            let server = c.get(&format!("/api/servers/{id}"), &[]).await?;
            ctx.show(&server, |s| record(s, &[]));
        }
        Servers::Drain { id } => set_status(ctx, id, "draining").await?,
        Servers::Enable { id } => set_status(ctx, id, "active").await?,
        Servers::Disable { id } => set_status(ctx, id, "disabled").await?,
        Servers::EnrollmentToken { id } => {
            let grant = c
                .post(&format!("/api/servers/{id}/enrollment-token"), None)
                .await?;
            ctx.show(&grant, |g| {
                // The token is what this command is for; it is shown once and cannot be read back.
                record(g, &[]);
                eprintln!(
                    "on the server: mpanel-agent enroll --controller <gRPC URL> --token {}",
                    cell(&g["token"])
                );
            });
        }
        Servers::Revoke { id } => {
            let answer = c
                .post(&format!("/api/servers/{id}/revoke-certificate"), None)
                .await?;
            ctx.show(&answer, |a| {
                let serials = a["revokedSerials"].as_array().map_or(0, Vec::len);
                println!(
                    "server {id}: {serials} certificate(s) revoked; its agent must enroll again"
                );
            });
        }
    }
    Ok(())
}

async fn set_status(ctx: &Ctx, id: u64, status: &str) -> Result<(), Failure> {
    let server = ctx
        .client
        .patch(&format!("/api/servers/{id}"), json!({ "status": status }))
        .await?;
    ctx.show(&server, |s| {
        println!(
            "server {id} ({}) is {}",
            cell(&s["hostname"]),
            cell(&s["status"])
        );
    });
    Ok(())
}

fn server_body(add: ServerAdd) -> Value {
    let mut body = Map::new();
    let mut put = |k: &str, v: Value| {
        body.insert(k.to_owned(), v);
    };
    put("hostname", add.hostname.into());
    put("ipAddress", add.ip_address.into());
    put("controlPanel", add.control_panel.as_str().into());
    put("controlPanelUrl", add.control_panel_url.into());
    put("maxAccounts", add.max_accounts.into());
    put("location", add.location.into());
    put("group", add.group.into());
    put("nameserver1", add.nameserver1.into());
    put("nameserver2", add.nameserver2.into());
    if let Some(p) = add.dns_provider {
        put("dnsProvider", p.into());
    }
    if let Some(p) = add.ssl_provider {
        put("sslProvider", p.into());
    }
    Value::Object(body)
}

pub async fn agents(ctx: &Ctx, command: Agents) -> Result<(), Failure> {
    match command {
        Agents::List => {
            let answer = ctx.client.get("/api/agents", &[]).await?;
            ctx.show(&answer, |a| {
                let mut t = Table::new(&[
                    "SERVER",
                    "HOSTNAME",
                    "STATUS",
                    "CONNECTED",
                    "LAST HEARTBEAT",
                    "LOAD",
                    "VERSION",
                    "CERT EXPIRES",
                ]);
                for agent in rows(a, "agents") {
                    let status = if agent["upgradeRequired"] == true {
                        format!("{} (upgrade required)", cell(&agent["status"]))
                    } else if !agent["revokedAt"].is_null() {
                        format!("{} (revoked)", cell(&agent["status"]))
                    } else {
                        cell(&agent["status"])
                    };
                    t.row(vec![
                        cell(&agent["serverId"]),
                        cell(&agent["hostname"]),
                        status,
                        cell(&agent["connected"]),
                        cell(&agent["lastHeartbeatAt"]),
                        cell(&agent["load"]),
                        cell(&agent["agentVersion"]),
                        cell(&agent["certificateExpiresAt"]),
                    ]);
                }
                t.print();
                println!("{} connected", cell(&a["connected"]));
            });
        }
    }
    Ok(())
}
