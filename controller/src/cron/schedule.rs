//! A job's schedule: a five-field cron expression (minute, hour, day of month, month, day of
//! week; croner's syntax, so `L`, `W`, `#` and `@daily` work too) evaluated in one time zone.
//!
//! Slots are whole seconds; times go in and out as Unix milliseconds, as the store keeps them.

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::Timestamp;
use jiff::tz::{Offset, TimeZone};

/// The zone schedules are read in (`CRON_TIMEZONE`): UTC, a fixed offset, or an IANA zone
/// from the system's time zone database, whose daylight-saving changes it follows.
#[derive(Debug, Clone)]
pub struct Zone {
    tz: TimeZone,
    name: String,
}

impl Zone {
    pub fn utc() -> Zone {
        Zone {
            tz: TimeZone::UTC,
            name: "UTC".to_owned(),
        }
    }

    /// `UTC`, an offset such as `+02:00`, `-0530` or `+3`, or an IANA name such as
    /// `Europe/Berlin`.
    pub fn parse(raw: &str) -> Result<Zone, String> {
        let raw = raw.trim();
        if raw.eq_ignore_ascii_case("utc") || raw.eq_ignore_ascii_case("z") {
            return Ok(Zone::utc());
        }
        if let Some(offset) = parse_offset(raw) {
            let seconds = offset?;
            let offset = Offset::from_seconds(seconds).map_err(|e| e.to_string())?;
            return Ok(Zone {
                tz: TimeZone::fixed(offset),
                name: raw.to_owned(),
            });
        }
        match TimeZone::get(raw) {
            Ok(tz) => Ok(Zone {
                tz,
                name: raw.to_owned(),
            }),
            Err(_) => Err(format!(
                "'{raw}' is not UTC, an offset like +02:00, or a time zone known to this system \
                 (such as Europe/Berlin; the tzdata package provides them)"
            )),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// `Some` when `raw` looks like an offset (`+HH`, `+HHMM`, `+HH:MM`, optionally after `UTC`
/// or `GMT`), with its seconds or why they are wrong.
fn parse_offset(raw: &str) -> Option<Result<i32, String>> {
    let upper = raw.to_ascii_uppercase();
    let rest = upper
        .strip_prefix("UTC")
        .or_else(|| upper.strip_prefix("GMT"))
        .unwrap_or(&upper);
    let (sign, digits) = match rest.as_bytes().first()? {
        b'+' => (1, &rest[1..]),
        b'-' => (-1, &rest[1..]),
        _ => return None,
    };
    let wrong = || Err(format!("'{raw}' is not an offset like +02:00"));
    let (hours, minutes) = match digits.split_once(':') {
        Some((h, m)) => (h, m),
        None if digits.len() > 2 => digits.split_at(digits.len() - 2),
        None => (digits, "0"),
    };
    let (Ok(h), Ok(m)) = (hours.parse::<i32>(), minutes.parse::<i32>()) else {
        return Some(wrong());
    };
    if hours.is_empty() || h > 18 || m > 59 {
        return Some(wrong());
    }
    Some(Ok(sign * (h * 3600 + m * 60)))
}

/// A parsed five-field cron expression in a zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    expression: String,
    zone: Zone,
}

impl Schedule {
    /// Parses `expression` (five fields, no seconds or years); an expression that never
    /// matches (`0 0 30 2 *`) is refused too.
    pub fn parse(expression: &str, zone: &Zone) -> Result<Schedule, String> {
        let expression = expression.trim();
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(expression)
            .map_err(|e| format!("'{expression}' is not a cron expression: {e}"))?;
        let schedule = Schedule {
            cron,
            expression: expression.to_owned(),
            zone: zone.clone(),
        };
        // 2000-01-01: a fixed start, so the check does not depend on when it runs.
        if schedule.next_after(946_684_800_000).is_none() {
            return Err(format!("'{expression}' never matches a date"));
        }
        Ok(schedule)
    }

    pub fn expression(&self) -> &str {
        &self.expression
    }

    pub fn zone(&self) -> &Zone {
        &self.zone
    }

    /// The first slot strictly after `ms`.
    pub fn next_after(&self, ms: i64) -> Option<i64> {
        let start = Timestamp::from_second(ms.div_euclid(1000))
            .ok()?
            .to_zoned(self.zone.tz.clone());
        let next = self.cron.find_next_occurrence(&start, false).ok()?;
        Some(next.timestamp().as_millisecond())
    }

    /// The latest slot at or before `ms`.
    pub fn latest_at_or_before(&self, ms: i64) -> Option<i64> {
        let start = Timestamp::from_second(ms.div_euclid(1000))
            .ok()?
            .to_zoned(self.zone.tz.clone());
        let previous = self.cron.find_previous_occurrence(&start, true).ok()?;
        Some(previous.timestamp().as_millisecond())
    }

    /// The slots in `(after, until]`, oldest first, at most `limit` of them (the newest).
    pub fn slots_between(&self, after: i64, until: i64, limit: usize) -> Vec<i64> {
        let mut slots = Vec::new();
        let mut cursor = after;
        while let Some(slot) = self.next_after(cursor) {
            if slot > until {
                break;
            }
            slots.push(slot);
            cursor = slot;
        }
        if slots.len() > limit {
            slots.drain(..slots.len() - limit);
        }
        slots
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;
    /// 2027-01-01T00:00:00Z, a Friday.
    const JAN1: i64 = 1_798_761_600_000;

    #[test]
    fn daily_slots_fall_on_the_hour_in_utc() {
        let s = Schedule::parse("0 2 * * *", &Zone::utc()).unwrap();
        assert_eq!(s.next_after(JAN1), Some(JAN1 + 2 * HOUR));
        assert_eq!(
            s.next_after(JAN1 + 2 * HOUR),
            Some(JAN1 + 26 * HOUR),
            "strictly after"
        );
        assert_eq!(
            s.latest_at_or_before(JAN1 + 2 * HOUR),
            Some(JAN1 + 2 * HOUR)
        );
        assert_eq!(
            s.latest_at_or_before(JAN1 + 2 * HOUR + 500),
            Some(JAN1 + 2 * HOUR)
        );
        assert_eq!(
            s.latest_at_or_before(JAN1 + 2 * HOUR - 1),
            Some(JAN1 + 2 * HOUR - 24 * HOUR)
        );
        assert_eq!(
            s.slots_between(JAN1, JAN1 + 72 * HOUR, 10),
            vec![JAN1 + 2 * HOUR, JAN1 + 26 * HOUR, JAN1 + 50 * HOUR]
        );
        assert_eq!(
            s.slots_between(JAN1, JAN1 + 72 * HOUR, 1),
            vec![JAN1 + 50 * HOUR]
        );
    }

    #[test]
    fn a_fixed_offset_moves_the_slots() {
        let zone = Zone::parse("+02:00").unwrap();
        let s = Schedule::parse("0 2 * * *", &zone).unwrap();
        assert_eq!(s.next_after(JAN1), Some(JAN1 + 24 * HOUR));
        let west = Schedule::parse("0 2 * * *", &Zone::parse("UTC-0530").unwrap()).unwrap();
        assert_eq!(west.next_after(JAN1), Some(JAN1 + 7 * HOUR + HOUR / 2));
        assert_eq!(Zone::parse("utc").unwrap().name(), "UTC");
    }

    #[test]
    fn an_iana_zone_follows_daylight_saving_time() {
        let zone = Zone::parse("Europe/Berlin").unwrap();
        let s = Schedule::parse("0 2 * * *", &zone).unwrap();
        // Winter: UTC+1, so 02:00 local is 01:00 UTC.
        assert_eq!(s.next_after(JAN1), Some(JAN1 + HOUR));
        // 2027-07-01T00:00Z: summer, UTC+2, so 02:00 local is 00:00 UTC the same day.
        let jul1 = 1_814_400_000_000;
        assert_eq!(s.next_after(jul1 - 1000), Some(jul1));
    }

    #[test]
    fn bad_expressions_and_zones_are_refused() {
        let utc = Zone::utc();
        for bad in [
            "",
            "0 2 * *",
            "0 0 2 * * *",
            "61 * * * *",
            "0 25 * * *",
            "nonsense",
            "0 0 30 2 *",
        ] {
            assert!(Schedule::parse(bad, &utc).is_err(), "{bad:?} was accepted");
        }
        assert!(Schedule::parse("@daily", &utc).is_ok());
        assert!(Schedule::parse("*/15 9-17 * * MON-FRI", &utc).is_ok());
        for bad in ["Mars/Olympus", "+25:00", "+02:75", "UTC+x"] {
            assert!(Zone::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
