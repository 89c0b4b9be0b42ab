//! How answers are shown: `--json` prints the API's JSON; otherwise aligned columns for lists
//! and `key  value` lines for one record.

use std::io::Write;

use serde_json::Value;

/// Prints `value` as pretty JSON on stdout.
pub fn json(value: &Value) {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    println!("{text}");
}

/// A JSON value as one table cell: strings bare, null as `-`, arrays and objects compact.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) if s.is_empty() => "-".to_owned(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => if *b { "yes" } else { "no" }.to_owned(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

/// Columns padded to their widest cell; the last column is not padded.
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&'static str]) -> Table {
        Table {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.headers.len());
        // A cell never breaks its row.
        self.rows.push(
            cells
                .into_iter()
                .map(|c| c.replace(['\n', '\r', '\t'], " "))
                .collect(),
        );
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, c) in widths.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |cells: &mut dyn Iterator<Item = &str>| {
            let mut out = String::new();
            let cells: Vec<&str> = cells.collect();
            for (i, c) in cells.iter().enumerate() {
                if i + 1 == cells.len() {
                    out.push_str(c);
                } else {
                    out.push_str(c);
                    let pad = widths[i] - c.chars().count() + 2;
                    out.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.trim_end().to_owned()
        };
        let mut out = line(&mut self.headers.iter().copied());
        out.push('\n');
        for row in &self.rows {
            out.push_str(&line(&mut row.iter().map(String::as_str)));
            out.push('\n');
        }
        out
    }

    pub fn print(&self) {
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(self.render().as_bytes());
    }
}

/// One record as `key  value` lines, sorted by key, nested values compact.
pub fn record(value: &Value, skip: &[&str]) {
    let Some(map) = value.as_object() else {
        println!("{}", cell(value));
        return;
    };
    let width = map.keys().map(|k| k.chars().count()).max().unwrap_or(0);
    for (k, v) in map {
        if skip.contains(&k.as_str()) {
            continue;
        }
        println!("{k:<width$}  {}", cell(v));
    }
}

/// Currencies without minor units (Stripe's list), so `amount` is already whole units.
const ZERO_DECIMAL: [&str; 16] = [
    "BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV",
    "XAF", "XOF", "XPF",
];

/// An amount in minor units shown in major units: `999, "USD"` is `9.99 USD`.
pub fn money(amount: &Value, currency: &Value) -> String {
    let (Some(minor), Some(cur)) = (amount.as_i64(), currency.as_str()) else {
        return cell(amount);
    };
    if ZERO_DECIMAL.contains(&cur.to_ascii_uppercase().as_str()) {
        return format!("{minor} {cur}");
    }
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    format!("{sign}{}.{:02} {cur}", abs / 100, abs % 100)
}

/// Unix milliseconds (the provisioning routes' times) as RFC 3339 UTC.
pub fn millis(v: &Value) -> String {
    let Some(ms) = v.as_i64() else {
        return cell(v);
    };
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.replace_nanosecond(0)
                .ok()?
                .format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

/// A hint on stderr when a list has more pages than it showed.
pub fn more_hint(page: &Value) {
    if let Some(next) = page["nextCursor"].as_str() {
        eprintln!("more rows follow: --cursor {next} for the next page, or --all for every page");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn columns_line_up_whatever_the_cell_widths() {
        let mut t = Table::new(&["ID", "NAME", "STATUS"]);
        t.row(vec!["1".into(), "a-long-name".into(), "active".into()]);
        t.row(vec!["10".into(), "b\nc".into(), "-".into()]);
        assert_eq!(
            t.render(),
            "ID  NAME         STATUS\n1   a-long-name  active\n10  b c          -\n"
        );
    }

    #[test]
    fn money_and_times_read_as_people_write_them() {
        assert_eq!(money(&json!(999), &json!("USD")), "9.99 USD");
        assert_eq!(money(&json!(-5), &json!("EUR")), "-0.05 EUR");
        assert_eq!(money(&json!(500), &json!("JPY")), "500 JPY");
        assert_eq!(millis(&json!(0)), "1970-01-01T00:00:00Z");
        assert_eq!(
            millis(&json!(1_700_000_000_123_i64)),
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(millis(&Value::Null), "-");
        assert_eq!(cell(&json!(["a"])), "[\"a\"]");
    }
}
