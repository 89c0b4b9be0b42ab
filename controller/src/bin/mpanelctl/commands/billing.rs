//! `invoices`: list, show with lines and payments, charge the saved card.

use serde_json::Value;

use super::{Ctx, rows};
use crate::cli::Invoices;
use crate::failure::Failure;
use crate::output::{Table, cell, money, record};

pub async fn invoices(ctx: &Ctx, command: Invoices) -> Result<(), Failure> {
    let c = &ctx.client;
    match command {
        Invoices::List {
            customer,
            service,
            status,
            paging,
        } => {
            let filters = [
                ("customerId", customer.map(|c| c.to_string())),
                ("serviceId", service.map(|s| s.to_string())),
                ("status", status),
            ];
            let page = c
                .list("/api/invoices", &filters, "invoices", &paging)
                .await?;
            ctx.show_list(&page, |p| {
                let mut t = Table::new(&[
                    "ID", "NUMBER", "CUSTOMER", "SERVICE", "STATUS", "TOTAL", "PAID", "DUE",
                ]);
                for i in rows(p, "invoices") {
                    t.row(vec![
                        cell(&i["id"]),
                        cell(&i["number"]),
                        cell(&i["customerId"]),
                        cell(&i["serviceId"]),
                        cell(&i["status"]),
                        money(&i["total"], &i["currency"]),
                        money(&i["amountPaid"], &i["currency"]),
                        cell(&i["dueAt"]),
                    ]);
                }
                t.print();
            });
        }
        Invoices::Show { id } => {
            let invoice = c.get(&format!("/api/invoices/{id}"), &[]).await?;
            ctx.show(&invoice, show_invoice);
        }
        Invoices::Pay { id } => {
            let invoice = c.post(&format!("/api/invoices/{id}/pay"), None).await?;
            ctx.show(&invoice, |i| {
                println!(
                    "invoice {} is {} ({} paid of {})",
                    cell(&i["number"]),
                    cell(&i["status"]),
                    money(&i["amountPaid"], &i["currency"]),
                    money(&i["total"], &i["currency"]),
                );
            });
        }
    }
    Ok(())
}

fn show_invoice(invoice: &Value) {
    let currency = &invoice["currency"];
    let mut shown = invoice.clone();
    if let Some(map) = shown.as_object_mut() {
        map.remove("lines");
        map.remove("payments");
        for k in [
            "subtotal",
            "tax",
            "total",
            "amountPaid",
            "amountRefunded",
            "amountDue",
        ] {
            if let Some(v) = map.get_mut(k) {
                *v = money(v, currency).into();
            }
        }
    }
    record(&shown, &[]);
    println!();
    let mut t = Table::new(&["LINE", "AMOUNT"]);
    for line in invoice["lines"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        t.row(vec![
            cell(&line["description"]),
            money(&line["amount"], currency),
        ]);
    }
    t.print();
    let payments = rows(invoice, "payments");
    if !payments.is_empty() {
        println!();
        let mut t = Table::new(&[
            "PAYMENT",
            "AMOUNT",
            "METHOD",
            "STATUS",
            "REFUNDED",
            "REFERENCE",
            "AT",
        ]);
        for p in payments {
            t.row(vec![
                cell(&p["id"]),
                money(&p["amount"], &p["currency"]),
                cell(&p["method"]),
                cell(&p["status"]),
                money(&p["refunded"], &p["currency"]),
                cell(&p["reference"]),
                cell(&p["createdAt"]),
            ]);
        }
        t.print();
    }
}
