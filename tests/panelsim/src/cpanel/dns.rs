//! WHM DNS (reference §1.4): `mass_edit_dns_zone` with its serial check, the
//! `parse_dns_zone` it pairs with, plus the older `dumpzone`/`addzonerecord`/`removezonerecord`.
//!
//! Line numbering: line index 0 is the SOA, record `i` (in zone order) is line index `i + 1`.
//! `parse_dns_zone`/`mass_edit_dns_zone` use these 0-based `line_index` values; `dumpzone`'s
//! `Line` (and `removezonerecord`'s `line`) are the same plus one. UNCONFIRMED: real zone files
//! also have `$TTL`/comment lines.

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{whm_fail, whm_ok};
use crate::catalog::HOSTNAME;
use crate::dns::{self, absolute_name, check_type, normalise_value, soa_fields};
use crate::reply::Reply;
use crate::request::ApiRequest;
use crate::sim::Sim;
use crate::state::{Record, Zone};

fn b64(value: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(value)
}

fn zone_name(req: &ApiRequest) -> String {
    req.arg("zone")
        .or_else(|| req.arg("domain"))
        .unwrap_or("")
        .to_ascii_lowercase()
}

fn no_zone(zone: &str) -> String {
    // Text UNCONFIRMED.
    format!("The zone “{zone}” does not exist.")
}

/// The record's RDATA as `parse_dns_zone`/`mass_edit_dns_zone` list it.
fn record_data(record: &Record) -> Vec<String> {
    match record.rtype.as_str() {
        "CNAME" | "NS" | "PTR" => vec![format!("{}.", record.value)],
        "MX" => vec![
            record.priority.unwrap_or(10).to_string(),
            format!("{}.", record.value),
        ],
        "SRV" => {
            let mut data = vec![record.priority.unwrap_or(0).to_string()];
            data.extend(record.value.split_whitespace().map(str::to_owned));
            data
        }
        "CAA" => record
            .value
            .splitn(3, ' ')
            .map(|s| s.trim_matches('"').to_owned())
            .collect(),
        _ => vec![record.value.clone()],
    }
}

/// Build a record from `mass_edit_dns_zone`'s `{dname, ttl, record_type, data[]}`.
fn record_from_parts(
    zone: &str,
    id: u64,
    dname: &str,
    rtype: &str,
    data: &[String],
    ttl: u32,
) -> Result<Record, String> {
    let rtype = check_type(rtype)?;
    let name = absolute_name(zone, dname);
    let first = data.first().cloned().unwrap_or_default();
    let (value, priority) = match rtype.as_str() {
        "MX" => {
            let preference = first
                .trim()
                .parse::<u16>()
                .map_err(|_| format!("“{first}” is not a valid MX preference."))?;
            let exchange = data.get(1).cloned().unwrap_or_default();
            (normalise_value("MX", &exchange)?, Some(preference))
        }
        "SRV" => {
            let priority = first
                .trim()
                .parse::<u16>()
                .map_err(|_| "Invalid SRV priority.")?;
            (data[1..].join(" "), Some(priority))
        }
        // TXT character-strings are concatenated.
        "TXT" => (normalise_value("TXT", &data.concat())?, None),
        "CAA" => (data.join(" "), None),
        other => (normalise_value(other, &first)?, None),
    };
    Ok(Record {
        id,
        name,
        rtype,
        value,
        ttl,
        priority,
    })
}

/// `parse_dns_zone?zone=D`: `data.payload[]` with base64 names and data.
pub(super) fn parse_dns_zone(sim: &Sim, req: &ApiRequest) -> Reply {
    const CMD: &str = "parse_dns_zone";
    let name = zone_name(req);
    let world = sim.world();
    let Some(zone) = world.zones.get(&name) else {
        drop(world);
        return whm_fail(sim, CMD, no_zone(&name), None);
    };
    let mut payload = vec![json!({
        "type": "record", "line_index": 0, "record_type": "SOA", "ttl": 86400,
        "dname_b64": b64(&format!("{name}.")),
        "data_b64": soa_fields(&name, zone).iter().map(|f| b64(f)).collect::<Vec<_>>(),
    })];
    for (i, record) in zone.records.iter().enumerate() {
        payload.push(json!({
            "type": "record", "line_index": i + 1, "record_type": record.rtype,
            "ttl": record.ttl, "dname_b64": b64(&format!("{}.", record.name)),
            "data_b64": record_data(record).iter().map(|d| b64(d)).collect::<Vec<_>>(),
        }));
    }
    drop(world);
    whm_ok(sim, CMD, "OK", Some(json!({ "payload": payload })), None)
}

/// `dumpzone?domain=D`: `data.zone[0].record[]` with `Line` and per-type fields.
pub(super) fn dumpzone(sim: &Sim, req: &ApiRequest) -> Reply {
    const CMD: &str = "dumpzone";
    let name = zone_name(req);
    let world = sim.world();
    let Some(zone) = world.zones.get(&name) else {
        drop(world);
        return whm_fail(sim, CMD, no_zone(&name), None);
    };
    let soa = soa_fields(&name, zone);
    let mut records = vec![json!({
        "Line": 1, "name": format!("{name}."), "type": "SOA", "class": "IN", "ttl": 86400,
        "mname": soa[0], "rname": soa[1], "serial": soa[2], "refresh": 3600, "retry": 1800,
        "expire": 1209600, "minimum": 86400,
    })];
    for (i, record) in zone.records.iter().enumerate() {
        let mut row = json!({"Line": i + 2, "name": format!("{}.", record.name),
                             "type": record.rtype, "class": "IN", "ttl": record.ttl});
        match record.rtype.as_str() {
            "A" | "AAAA" => row["address"] = json!(record.value),
            "CNAME" => row["cname"] = json!(record.value),
            "NS" => row["nsdname"] = json!(record.value),
            "MX" => {
                row["exchange"] = json!(record.value);
                row["preference"] = json!(record.priority.unwrap_or(10));
            }
            "TXT" => row["txtdata"] = json!(record.value),
            _ => row["record"] = json!(record.value),
        }
        records.push(row);
    }
    drop(world);
    let data = json!({"zone": [{"record": records, "status": 1, "statusmsg": "Zone Serialized"}]});
    whm_ok(sim, CMD, "OK", Some(data), None)
}

#[derive(Deserialize)]
struct AddItem {
    dname: String,
    #[serde(default)]
    ttl: Option<u32>,
    record_type: String,
    #[serde(default)]
    data: Vec<String>,
}

#[derive(Deserialize)]
struct EditItem {
    line_index: usize,
    dname: String,
    #[serde(default)]
    ttl: Option<u32>,
    record_type: String,
    #[serde(default)]
    data: Vec<String>,
}

/// Values of a repeated WHM argument: `name=…&name=…` and `name-1=…&name-2=…`.
fn repeated<'a>(req: &'a ApiRequest, name: &str) -> Vec<&'a str> {
    let numbered = format!("{name}-");
    req.params
        .iter()
        .filter(|(k, _)| {
            k == name
                || k.strip_prefix(&numbered)
                    .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(|(_, v)| v.as_str())
        .collect()
}

/// `mass_edit_dns_zone?zone=D&serial=S&add=…&edit=…&remove=…` (§1.4). All-or-nothing:
/// a stale serial or any bad item changes nothing.
pub(super) fn mass_edit_dns_zone(sim: &Sim, req: &ApiRequest) -> Reply {
    const CMD: &str = "mass_edit_dns_zone";
    let name = zone_name(req);
    let Some(serial) = req.arg("serial") else {
        return whm_fail(sim, CMD, "“serial” is a required argument.", None);
    };
    // §1.4: "Temporary domains cannot be edited" (the `<user>.temp.<hostname>` domain
    // createacct makes without `domain`). Text UNCONFIRMED.
    if name.ends_with(&format!(".temp.{HOSTNAME}")) {
        return whm_fail(
            sim,
            CMD,
            format!("You cannot edit the DNS zone of the temporary domain “{name}”."),
            None,
        );
    }
    let mut world = sim.world();
    let Some(current) = world.zones.get(&name).cloned() else {
        drop(world);
        return whm_fail(sim, CMD, no_zone(&name), None);
    };
    // §1.4: "the current SOA serial; a mismatch fails the request". Text UNCONFIRMED.
    if serial.parse::<u32>().ok() != Some(current.serial) {
        drop(world);
        return whm_fail(
            sim,
            CMD,
            format!(
                "The given serial number ({serial}) does not match the DNS zone’s serial number ({}). Refresh your view of the DNS zone, then resubmit.",
                current.serial
            ),
            None,
        );
    }
    let mut zone: Zone = current;
    let result = (|| -> Result<(), String> {
        for raw in repeated(req, "edit") {
            let item: EditItem =
                serde_json::from_str(raw).map_err(|e| format!("Invalid “edit” item: {e}"))?;
            let index = item
                .line_index
                .checked_sub(1)
                .filter(|i| *i < zone.records.len())
                .ok_or_else(|| format!("No editable record is on line {}.", item.line_index))?;
            let id = zone.records[index].id;
            let ttl = item.ttl.unwrap_or(zone.records[index].ttl);
            zone.records[index] =
                record_from_parts(&name, id, &item.dname, &item.record_type, &item.data, ttl)?;
        }
        let mut removals = Vec::new();
        for raw in repeated(req, "remove") {
            // UNCONFIRMED format (§1.4): a line index, bare or JSON.
            let line: usize = serde_json::from_str::<Value>(raw)
                .ok()
                .and_then(|v| match v {
                    Value::Number(n) => n.as_u64(),
                    Value::String(s) => s.parse().ok(),
                    Value::Object(o) => o.get("line_index").and_then(Value::as_u64),
                    _ => None,
                })
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| format!("Invalid “remove” item: {raw}"))?;
            let index = line
                .checked_sub(1)
                .filter(|i| *i < zone.records.len())
                .ok_or_else(|| format!("No removable record is on line {line}."))?;
            removals.push(index);
        }
        removals.sort_unstable();
        removals.dedup();
        for index in removals.into_iter().rev() {
            zone.records.remove(index);
        }
        for raw in repeated(req, "add") {
            let item: AddItem =
                serde_json::from_str(raw).map_err(|e| format!("Invalid “add” item: {e}"))?;
            let id = world.next_id();
            zone.records.push(record_from_parts(
                &name,
                id,
                &item.dname,
                &item.record_type,
                &item.data,
                item.ttl.unwrap_or(14400),
            )?);
        }
        dns::cname_conflict(&zone.records)
    })();
    if let Err(reason) = result {
        drop(world);
        return whm_fail(sim, CMD, reason, None);
    }
    dns::bump_serial(&mut zone);
    let new_serial = zone.serial;
    world.zones.insert(name, zone);
    drop(world);
    whm_ok(
        sim,
        CMD,
        "OK",
        Some(json!({ "new_serial": new_serial.to_string() })),
        None,
    )
}

/// `addzonerecord?zone=D&name=N&type=T&address|cname|txtdata|exchange=…&ttl=…` (§1.4;
/// parameters UNCONFIRMED, taken from API 2 `ZoneEdit::add_zone_record`).
pub(super) fn addzonerecord(sim: &Sim, req: &ApiRequest) -> Reply {
    const CMD: &str = "addzonerecord";
    let name = zone_name(req);
    let rtype = req.arg("type").unwrap_or("A").to_ascii_uppercase();
    let data: Vec<String> = match rtype.as_str() {
        "CNAME" => vec![req.arg("cname").unwrap_or("").to_owned()],
        "TXT" => vec![req.arg("txtdata").unwrap_or("").to_owned()],
        "NS" => vec![req.arg("nsdname").unwrap_or("").to_owned()],
        "MX" => vec![
            req.arg("preference")
                .or_else(|| req.arg("priority"))
                .unwrap_or("10")
                .to_owned(),
            req.arg("exchange").unwrap_or("").to_owned(),
        ],
        _ => vec![req.arg("address").unwrap_or("").to_owned()],
    };
    let ttl = req.arg("ttl").and_then(|t| t.parse().ok()).unwrap_or(14400);
    let mut world = sim.world();
    if !world.zones.contains_key(&name) {
        drop(world);
        return whm_fail(sim, CMD, no_zone(&name), None);
    }
    let id = world.next_id();
    let record =
        match record_from_parts(&name, id, req.arg("name").unwrap_or(""), &rtype, &data, ttl) {
            Ok(record) => record,
            Err(reason) => {
                drop(world);
                return whm_fail(sim, CMD, reason, None);
            }
        };
    if let Some(zone) = world.zones.get_mut(&name) {
        let mut records = zone.records.clone();
        records.push(record);
        if let Err(reason) = dns::cname_conflict(&records) {
            drop(world);
            return whm_fail(sim, CMD, reason, None);
        }
        zone.records = records;
        dns::bump_serial(zone);
    }
    drop(world);
    // §1.4 success reason example.
    let reason = format!("Bind reloading on {HOSTNAME} using rndc zone: [{name}]\n");
    whm_ok(sim, CMD, &reason, None, None)
}

/// `removezonerecord?zone=D&line=L` (L as in dumpzone's `Line`).
pub(super) fn removezonerecord(sim: &Sim, req: &ApiRequest) -> Reply {
    const CMD: &str = "removezonerecord";
    let name = zone_name(req);
    let line = req
        .arg("line")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(0);
    let mut world = sim.world();
    let Some(zone) = world.zones.get_mut(&name) else {
        drop(world);
        return whm_fail(sim, CMD, no_zone(&name), None);
    };
    let Some(index) = line.checked_sub(2).filter(|i| *i < zone.records.len()) else {
        drop(world);
        return whm_fail(
            sim,
            CMD,
            format!("No removable record is on line {line}."),
            None,
        );
    };
    zone.records.remove(index);
    dns::bump_serial(zone);
    drop(world);
    let reason = format!("Bind reloading on {HOSTNAME} using rndc zone: [{name}]\n");
    whm_ok(sim, CMD, &reason, None, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_built_from_mass_edit_items() {
        let mx = record_from_parts(
            "example.com",
            1,
            "@",
            "mx",
            &["5".into(), "mx.example.net.".into()],
            300,
        )
        .unwrap();
        assert_eq!(
            (mx.name.as_str(), mx.value.as_str(), mx.priority),
            ("example.com", "mx.example.net", Some(5))
        );
        let txt = record_from_parts(
            "example.com",
            2,
            "_acme",
            "TXT",
            &["a".into(), "b".into()],
            60,
        )
        .unwrap();
        assert_eq!(
            (txt.name.as_str(), txt.value.as_str()),
            ("_acme.example.com", "ab")
        );
        assert!(record_from_parts("example.com", 3, "www", "A", &["nope".into()], 60).is_err());
        assert_eq!(
            record_data(&mx),
            vec!["5".to_owned(), "mx.example.net.".to_owned()]
        );
    }
}
