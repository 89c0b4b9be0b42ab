//! The `string_enum!` macro behind every closed set of wire names in this crate (statuses,
//! panel kinds, billing cycles), plus the error their `FromStr` returns.
//!
//! One macro keeps `as_str`, `Display`, `FromStr` and serde spelling the same string for each
//! variant: a database column, a JSON field and a log line can then never disagree.

/// A string that is not one of an enum's wire names. The message lists the accepted values so
/// that an operator reading it in an API error or a config error knows what to type instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} '{input}'; expected one of: {}", .accepted.join(", "))]
pub struct ParseEnumError {
    /// What was being parsed, e.g. "service status".
    pub what: &'static str,
    /// The rejected input, as given.
    pub input: String,
    /// Every accepted spelling, in declaration order.
    pub accepted: &'static [&'static str],
}

/// Declares a fieldless enum whose variants each have one fixed snake_case wire name.
///
/// Generates `ALL` (declaration order), `NAMES`, `as_str`, `Display`, `FromStr`
/// (exact match, error = [`ParseEnumError`]) and serde impls that use the same names.
macro_rules! string_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident : $what:literal {
            $(
                $(#[$vmeta:meta])*
                $variant:ident => $wire:literal
            ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(
            Debug,
            Clone,
            Copy,
            PartialEq,
            Eq,
            Hash,
            PartialOrd,
            Ord,
            serde::Serialize,
            serde::Deserialize,
        )]
        pub enum $name {
            $(
                $(#[$vmeta])*
                #[serde(rename = $wire)]
                $variant,
            )+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: [Self; [$($wire),+].len()] = [$(Self::$variant),+];

            /// Every wire name, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$($wire),+];

            /// The wire name used in JSON, the database and logs.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $wire,)+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::string_enum::ParseEnumError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($wire => Ok(Self::$variant),)+
                    _ => Err($crate::string_enum::ParseEnumError {
                        what: $what,
                        input: s.to_owned(),
                        accepted: Self::NAMES,
                    }),
                }
            }
        }

        /// Compares with a wire name, as JSON and tests spell it.
        impl ::std::cmp::PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        /// Lets storage layers decode the wire name straight into the enum.
        impl ::std::convert::TryFrom<String> for $name {
            type Error = $crate::string_enum::ParseEnumError;

            fn try_from(s: String) -> Result<Self, Self::Error> {
                s.parse()
            }
        }
    };
}

pub(crate) use string_enum;
