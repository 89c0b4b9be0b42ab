//! Billing arithmetic with no I/O: billing periods over calendar dates, and tax in integers.
//!
//! **Periods.** A service is billed from a date for one cycle (1, 3 or 12 months). The day of the
//! month the service was first billed on (its *billing day*) is kept, and every period ends on that
//! day of the month N months later, or on the month's last day when the month is shorter: billed
//! on Jan 31, the next periods start Feb 28 (Feb 29 in a leap year), Mar 31, Apr 30, May 31.
//! A period never drifts to an earlier day for good because of one short month.
//!
//! **Tax.** Prices are before tax. Tax is `subtotal × rate`, with the rate in basis points
//! (2000 = 20 %), rounded to the nearest minor unit, halves away from zero (0.5 cent → 1 cent),
//! computed in integers so no float ever touches money.

use time::{Date, Month, OffsetDateTime, Time};

use crate::status::BillingCycle;

/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;

/// The date `months` months after `from`, on `billing_day` or the month's last day if shorter.
pub fn add_months(from: Date, months: u32, billing_day: u8) -> Date {
    let zero_based = from.month() as i32 - 1 + months as i32;
    let year = from.year() + zero_based.div_euclid(12);
    let month = Month::try_from((zero_based.rem_euclid(12) + 1) as u8).unwrap_or(Month::January);
    let last = month.length(year);
    let day = billing_day.clamp(1, last);
    Date::from_calendar_date(year, month, day).unwrap_or(from)
}

/// The end of the period starting at `start` (exclusive): the start of the next one.
pub fn period_end(start: Date, cycle: BillingCycle, billing_day: u8) -> Date {
    add_months(start, cycle.months(), billing_day)
}

/// Tax on `subtotal` minor units at `rate_bp` basis points, halves away from zero.
pub fn tax_minor(subtotal: i64, rate_bp: u32) -> i64 {
    let product = i128::from(subtotal) * i128::from(rate_bp);
    let half = 5_000;
    let rounded = if product >= 0 {
        (product + half) / 10_000
    } else {
        (product - half) / 10_000
    };
    i64::try_from(rounded).unwrap_or(i64::MAX)
}

/// The UTC midnight that starts `date`, in Unix milliseconds (how dates are stored).
pub fn date_to_ms(date: Date) -> i64 {
    let ts = date.with_time(Time::MIDNIGHT).assume_utc().unix_timestamp();
    ts * 1000
}

/// The UTC calendar date holding the instant `ms`.
pub fn ms_to_date(ms: i64) -> Date {
    OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .map(OffsetDateTime::date)
        .unwrap_or(Date::MIN)
}

/// `YYYY-MM-DD`.
pub fn format_date(date: Date) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        date.month() as u8,
        date.day()
    )
}

/// Parses `YYYY-MM-DD`.
pub fn parse_date(text: &str) -> Option<Date> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(text, &format).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn chain(start: Date, cycle: BillingCycle, n: usize) -> Vec<Date> {
        let day = start.day();
        let mut out = vec![start];
        for _ in 0..n {
            let next = period_end(*out.last().unwrap(), cycle, day);
            out.push(next);
        }
        out
    }

    #[test]
    fn month_ends_come_back_to_the_billing_day_after_a_short_month() {
        assert_eq!(
            chain(date!(2027 - 01 - 31), BillingCycle::Monthly, 5),
            vec![
                date!(2027 - 01 - 31),
                date!(2027 - 02 - 28),
                date!(2027 - 03 - 31),
                date!(2027 - 04 - 30),
                date!(2027 - 05 - 31),
                date!(2027 - 06 - 30),
            ]
        );
    }

    #[test]
    fn a_leap_year_february_ends_on_the_29th() {
        assert_eq!(
            chain(date!(2028 - 01 - 30), BillingCycle::Monthly, 2),
            vec![
                date!(2028 - 01 - 30),
                date!(2028 - 02 - 29),
                date!(2028 - 03 - 30)
            ]
        );
        // Annual from a leap day: Feb 28 in common years, Feb 29 again in the next leap year.
        assert_eq!(
            chain(date!(2028 - 02 - 29), BillingCycle::Annually, 4),
            vec![
                date!(2028 - 02 - 29),
                date!(2029 - 02 - 28),
                date!(2030 - 02 - 28),
                date!(2031 - 02 - 28),
                date!(2032 - 02 - 29),
            ]
        );
    }

    #[test]
    fn quarters_cross_the_year_end() {
        assert_eq!(
            chain(date!(2026 - 11 - 30), BillingCycle::Quarterly, 2),
            vec![
                date!(2026 - 11 - 30),
                date!(2027 - 02 - 28),
                date!(2027 - 05 - 30)
            ]
        );
    }

    #[test]
    fn tax_rounds_halves_away_from_zero_in_integers() {
        assert_eq!(tax_minor(999, 2000), 200); // 199.8 → 200
        assert_eq!(tax_minor(1005, 1000), 101); // 100.5 → 101
        assert_eq!(tax_minor(1004, 1000), 100); // 100.4 → 100
        assert_eq!(tax_minor(0, 2500), 0);
        assert_eq!(tax_minor(12_345, 0), 0);
        assert_eq!(tax_minor(i64::MAX, 10_000), i64::MAX);
    }

    #[test]
    fn dates_round_trip_through_utc_midnight_milliseconds() {
        let d = date!(2026 - 12 - 01);
        let ms = date_to_ms(d);
        assert_eq!(ms % DAY_MS, 0);
        assert_eq!(ms_to_date(ms), d);
        assert_eq!(ms_to_date(ms + DAY_MS - 1), d);
        assert_eq!(format_date(d), "2026-12-01");
        assert_eq!(parse_date("2026-12-01"), Some(d));
        assert_eq!(parse_date("2026-13-01"), None);
    }
}
