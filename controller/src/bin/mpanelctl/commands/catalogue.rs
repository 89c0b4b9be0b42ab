//! `products` and `customers`.

use serde_json::{Map, Value, json};

use super::{Ctx, rows};
use crate::cli::{Customers, ProductAdd, Products};
use crate::failure::Failure;
use crate::output::{Table, cell, money, record};

pub async fn products(ctx: &Ctx, command: Products) -> Result<(), Failure> {
    let c = &ctx.client;
    match command {
        Products::List => {
            let answer = c.get("/api/products", &[]).await?;
            ctx.show(&answer, |a| {
                let mut t = Table::new(&["ID", "NAME", "GROUP", "ACTIVE", "PRICES"]);
                for p in rows(a, "products") {
                    t.row(vec![
                        cell(&p["id"]),
                        cell(&p["name"]),
                        cell(&p["group"]),
                        cell(&p["active"]),
                        prices(&p["prices"]),
                    ]);
                }
                t.print();
            });
        }
        Products::Show { id } => {
            let product = c.get(&format!("/api/products/{id}"), &[]).await?;
            ctx.show(&product, show_product);
        }
        Products::Add(add) => {
            let product = c.post("/api/products", Some(product_body(add))).await?;
            ctx.show(&product, show_product);
        }
    }
    Ok(())
}

fn show_product(p: &Value) {
    let mut p = p.clone();
    p["prices"] = prices(&p["prices"]).into();
    record(&p, &[]);
}

/// `9.99 USD monthly, 99.90 USD annually`.
fn prices(list: &Value) -> String {
    let shown: Vec<String> = list
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .map(|p| {
            format!(
                "{} {}",
                money(&p["amount"], &p["currency"]),
                cell(&p["cycle"])
            )
        })
        .collect();
    if shown.is_empty() {
        "-".to_owned()
    } else {
        shown.join(", ")
    }
}

fn product_body(add: ProductAdd) -> Value {
    let mut body = Map::new();
    body.insert("name".into(), add.name.into());
    if let Some(g) = add.group {
        body.insert("group".into(), g.into());
    }
    let mut packages = Map::new();
    for (k, v) in [
        ("cpanel", add.cpanel_package),
        ("plesk", add.plesk_package),
        ("directadmin", add.directadmin_package),
    ] {
        if let Some(v) = v {
            packages.insert(k.into(), v.into());
        }
    }
    body.insert("packages".into(), Value::Object(packages));
    let mut quotas = Map::new();
    for (k, v) in [
        ("diskMb", add.disk_mb),
        ("emailQuotaMb", add.email_quota_mb),
        ("databases", add.databases),
    ] {
        if let Some(v) = v {
            quotas.insert(k.into(), v.into());
        }
    }
    body.insert("quotas".into(), Value::Object(quotas));
    body.insert(
        "prices".into(),
        add.prices
            .into_iter()
            .map(|p| json!({"cycle": p.cycle, "amount": p.amount, "currency": p.currency}))
            .collect(),
    );
    if let Some(t) = add.tax_rate_bp {
        body.insert("taxRateBp".into(), t.into());
    }
    if let Some(s) = add.backup_schedule {
        body.insert("backupSchedule".into(), s.into());
    }
    Value::Object(body)
}

pub async fn customers(ctx: &Ctx, command: Customers) -> Result<(), Failure> {
    let c = &ctx.client;
    match command {
        Customers::List { paging } => {
            let page = c.list("/api/customers", &[], "customers", &paging).await?;
            ctx.show_list(&page, |p| {
                let mut t = Table::new(&["ID", "EMAIL", "NAME", "STATUS", "CREATED"]);
                for cu in rows(p, "customers") {
                    t.row(
                        ["id", "email", "name", "status", "createdAt"]
                            .iter()
                            .map(|k| cell(&cu[*k]))
                            .collect(),
                    );
                }
                t.print();
            });
        }
        Customers::Show { id } => {
            let customer = c.get(&format!("/api/customers/{id}"), &[]).await?;
            ctx.show(&customer, |cu| record(cu, &[]));
        }
        Customers::Add { email, name } => {
            let customer = c
                .post(
                    "/api/customers",
                    Some(json!({ "email": email, "name": name })),
                )
                .await?;
            ctx.show(&customer, |cu| record(cu, &[]));
        }
    }
    Ok(())
}
