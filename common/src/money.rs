//! Amounts of money as integer minor units plus an ISO 4217 currency, never floats.
//!
//! [`Money`] refuses negative amounts and mixed-currency arithmetic. Exchange rates, rounding of
//! taxes and proration live in billing, not here.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why an amount or currency was refused. Messages read naturally after "money: ".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("'{0}' is not a currency code; expected three letters like USD")]
    InvalidCurrency(String),
    #[error("cannot combine {left} with {right}")]
    CurrencyMismatch { left: Currency, right: Currency },
    #[error("amount {0} is negative")]
    Negative(i64),
    #[error("the amount is too large")]
    Overflow,
}

/// An ISO 4217 alphabetic code, stored uppercase. Whether the code is actually assigned is not
/// checked: payment providers decide which currencies they accept.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

impl Currency {
    pub const USD: Currency = Currency(*b"USD");
    pub const EUR: Currency = Currency(*b"EUR");
    pub const GBP: Currency = Currency(*b"GBP");

    /// Accepts three ASCII letters in either case.
    pub fn parse(input: &str) -> Result<Currency, MoneyError> {
        match input.as_bytes() {
            &[a, b, c] if [a, b, c].iter().all(u8::is_ascii_alphabetic) => {
                Ok(Currency([a, b, c].map(|x| x.to_ascii_uppercase())))
            }
            _ => Err(MoneyError::InvalidCurrency(
                input.chars().take(20).collect(),
            )),
        }
    }

    pub fn as_str(&self) -> &str {
        // Construction admits only ASCII letters, so this never takes the fallback.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }

    /// Digits after the decimal point (ISO 4217 minor units). Only the exceptions are listed;
    /// every other currency has 2.
    pub fn minor_units(self) -> u32 {
        match &self.0 {
            b"BIF" | b"CLP" | b"DJF" | b"GNF" | b"ISK" | b"JPY" | b"KMF" | b"KRW" | b"PYG"
            | b"RWF" | b"UGX" | b"UYI" | b"VND" | b"VUV" | b"XAF" | b"XOF" | b"XPF" => 0,
            b"BHD" | b"IQD" | b"JOD" | b"KWD" | b"LYD" | b"OMR" | b"TND" => 3,
            b"CLF" | b"UYW" => 4,
            _ => 2,
        }
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Currency({})", self.as_str())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Currency {
    type Err = MoneyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Currency::parse(s)
    }
}

impl TryFrom<String> for Currency {
    type Error = MoneyError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Currency::parse(&s)
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.as_str().to_owned()
    }
}

/// An amount in the currency's minor unit (cents for USD, yen for JPY).
///
/// Fields are public for pattern matching and storage code; build values with [`Money::new`]
/// so that the non-negative rule holds. JSON: `{"amount": 999, "currency": "USD"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "MoneyJson", into = "MoneyJson")]
pub struct Money {
    pub amount_minor: i64,
    pub currency: Currency,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MoneyJson {
    amount: i64,
    currency: Currency,
}

impl TryFrom<MoneyJson> for Money {
    type Error = MoneyError;

    fn try_from(j: MoneyJson) -> Result<Self, Self::Error> {
        Money::new(j.amount, j.currency)
    }
}

impl From<Money> for MoneyJson {
    fn from(m: Money) -> Self {
        MoneyJson {
            amount: m.amount_minor,
            currency: m.currency,
        }
    }
}

impl Money {
    pub fn new(amount_minor: i64, currency: Currency) -> Result<Money, MoneyError> {
        if amount_minor < 0 {
            return Err(MoneyError::Negative(amount_minor));
        }
        Ok(Money {
            amount_minor,
            currency,
        })
    }

    pub const fn zero(currency: Currency) -> Money {
        Money {
            amount_minor: 0,
            currency,
        }
    }

    pub const fn is_zero(self) -> bool {
        self.amount_minor == 0
    }

    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let sum = self
            .amount_minor
            .checked_add(other.amount_minor)
            .ok_or(MoneyError::Overflow)?;
        Money::new(sum, self.currency)
    }

    /// Errors if the result would be below zero: a refund larger than the payment, say, is a
    /// bug for the caller to handle, not a negative balance to carry on with.
    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let diff = self
            .amount_minor
            .checked_sub(other.amount_minor)
            .ok_or(MoneyError::Overflow)?;
        Money::new(diff, self.currency)
    }

    fn same_currency(self, other: Money) -> Result<(), MoneyError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(MoneyError::CurrencyMismatch {
                left: self.currency,
                right: other.currency,
            })
        }
    }
}

/// `9.99 USD`, `1000 JPY`, `1.500 KWD`. Negative values (only reachable through the public
/// fields) print with a leading `-` rather than being hidden.
impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.amount_minor < 0 { "-" } else { "" };
        let abs = self.amount_minor.unsigned_abs();
        let units = self.currency.minor_units();
        if units == 0 {
            return write!(f, "{sign}{abs} {}", self.currency);
        }
        let scale = 10u64.pow(units);
        let width = units as usize;
        write!(
            f,
            "{sign}{}.{:0width$} {}",
            abs / scale,
            abs % scale,
            self.currency
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(minor: i64) -> Money {
        Money::new(minor, Currency::USD).unwrap()
    }

    #[test]
    fn currency_parse_uppercases_three_letters() {
        assert_eq!(Currency::parse("usd"), Ok(Currency::USD));
        assert_eq!(Currency::parse("eUr").unwrap().as_str(), "EUR");
        assert_eq!("GBP".parse::<Currency>(), Ok(Currency::GBP));
    }

    #[test]
    fn currency_parse_rejects_anything_but_three_letters() {
        for bad in ["", "US", "USDT", "U5D", "US ", "€UR", "ÜSD"] {
            assert!(
                matches!(Currency::parse(bad), Err(MoneyError::InvalidCurrency(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn minor_units_know_the_zero_and_three_decimal_currencies() {
        let units = |c: &str| Currency::parse(c).unwrap().minor_units();
        assert_eq!(units("USD"), 2);
        assert_eq!(units("JPY"), 0);
        assert_eq!(units("KRW"), 0);
        assert_eq!(units("KWD"), 3);
        assert_eq!(units("CLF"), 4);
    }

    #[test]
    fn display_uses_the_currency_decimals() {
        assert_eq!(usd(999).to_string(), "9.99 USD");
        assert_eq!(usd(5).to_string(), "0.05 USD");
        assert_eq!(usd(100_000).to_string(), "1000.00 USD");
        assert_eq!(Money::zero(Currency::EUR).to_string(), "0.00 EUR");
        let jpy = Currency::parse("JPY").unwrap();
        assert_eq!(Money::new(1000, jpy).unwrap().to_string(), "1000 JPY");
        let kwd = Currency::parse("KWD").unwrap();
        assert_eq!(Money::new(1500, kwd).unwrap().to_string(), "1.500 KWD");
        let negative = Money {
            amount_minor: -150,
            currency: Currency::USD,
        };
        assert_eq!(negative.to_string(), "-1.50 USD");
        let min = Money {
            amount_minor: i64::MIN,
            currency: Currency::USD,
        };
        assert_eq!(min.to_string(), "-92233720368547758.08 USD");
    }

    #[test]
    fn new_rejects_negative_amounts() {
        assert_eq!(Money::new(-1, Currency::USD), Err(MoneyError::Negative(-1)));
        assert!(Money::new(0, Currency::USD).unwrap().is_zero());
    }

    #[test]
    fn add_and_sub_within_one_currency() {
        assert_eq!(usd(999).checked_add(usd(1)), Ok(usd(1000)));
        assert_eq!(usd(1000).checked_sub(usd(1)), Ok(usd(999)));
        assert_eq!(usd(5).checked_sub(usd(5)), Ok(usd(0)));
    }

    #[test]
    fn arithmetic_refuses_mixed_currencies() {
        let eur = Money::new(1, Currency::EUR).unwrap();
        let want = Err(MoneyError::CurrencyMismatch {
            left: Currency::USD,
            right: Currency::EUR,
        });
        assert_eq!(usd(1).checked_add(eur), want);
        assert_eq!(usd(1).checked_sub(eur), want);
        assert_eq!(
            usd(1).checked_add(eur).unwrap_err().to_string(),
            "cannot combine USD with EUR"
        );
    }

    #[test]
    fn sub_below_zero_is_an_error() {
        assert_eq!(usd(1).checked_sub(usd(2)), Err(MoneyError::Negative(-1)));
    }

    #[test]
    fn add_overflow_is_an_error() {
        assert_eq!(usd(i64::MAX).checked_add(usd(1)), Err(MoneyError::Overflow));
    }

    #[test]
    fn json_shape_is_amount_and_currency() {
        assert_eq!(
            serde_json::to_string(&usd(999)).unwrap(),
            r#"{"amount":999,"currency":"USD"}"#
        );
        let back: Money = serde_json::from_str(r#"{"amount":999,"currency":"usd"}"#).unwrap();
        assert_eq!(back, usd(999));
    }

    #[test]
    fn json_rejects_negative_amounts_and_bad_currencies() {
        assert!(serde_json::from_str::<Money>(r#"{"amount":-1,"currency":"USD"}"#).is_err());
        assert!(serde_json::from_str::<Money>(r#"{"amount":1,"currency":"US"}"#).is_err());
        assert!(serde_json::from_str::<Money>(r#"{"amount":1.5,"currency":"USD"}"#).is_err());
    }
}
