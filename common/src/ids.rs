//! Typed database ids, so a `ServiceId` cannot be passed where a `CustomerId` is meant, and
//! [`JobId`], the string form of a task id that agents and logs use.
//!
//! Ids are not checked for positivity here: they come from the database, which owns them.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! i64_id {
    ($($(#[$meta:meta])* $name:ident),+ $(,)?) => {$(
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(i64);

        impl $name {
            pub const fn new(id: i64) -> Self {
                Self(id)
            }

            pub const fn get(self) -> i64 {
                self.0
            }
        }

        impl From<i64> for $name {
            fn from(id: i64) -> Self {
                Self(id)
            }
        }

        impl From<$name> for i64 {
            fn from(id: $name) -> i64 {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    )+};
}

i64_id! {
    /// A server (one panel installation with one agent).
    ServerId,
    /// A customer account in billing.
    CustomerId,
    /// A product (hosting plan) that can be ordered.
    ProductId,
    /// One customer's hosting service: an account on one server.
    ServiceId,
    /// A row in the durable provisioning queue.
    TaskId,
    InvoiceId,
    PaymentId,
    /// An admin API token (the id, never the token itself).
    AdminTokenId,
}

/// Why a string is not a job id. Messages read naturally after "job id: ".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("is empty")]
    Empty,
    #[error("'{0}' is not of the form job_<number>")]
    Malformed(String),
    #[error("'{0}' is not a positive number")]
    NotPositive(String),
    #[error("'{0}' is too large for an id")]
    TooLarge(String),
}

/// The id agents and logs use for a queued task: `job_<task id>`.
///
/// A string rather than a bare number so that it cannot be mistaken for some other id in an
/// agent's logs or a panel's audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct JobId(String);

impl JobId {
    pub fn for_task(task: TaskId) -> JobId {
        JobId(format!("job_{task}"))
    }

    /// The task a job id names. Accepts `job_<n>` and, for ids typed by hand, a bare `<n>`;
    /// `n` must be a positive integer in canonical form (no sign, no leading zeros), so that
    /// each task has exactly one spelling.
    pub fn parse(input: &str) -> Result<TaskId, IdError> {
        if input.is_empty() {
            return Err(IdError::Empty);
        }
        let digits = input.strip_prefix("job_").unwrap_or(input);
        let shown = || input.chars().take(40).collect::<String>();
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(IdError::Malformed(shown()));
        }
        if digits.starts_with('0') {
            return Err(IdError::NotPositive(shown()));
        }
        // Only digits remain, so the one way this parse can fail is overflow.
        let id = digits
            .parse::<i64>()
            .map_err(|_| IdError::TooLarge(shown()))?;
        Ok(TaskId(id))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn task_id(&self) -> TaskId {
        // Every `JobId` is built by `for_task` from a `TaskId`, so this re-parse succeeds; the
        // fallback only keeps the function total.
        JobId::parse(&self.0).unwrap_or(TaskId(0))
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<TaskId> for JobId {
    fn from(task: TaskId) -> Self {
        JobId::for_task(task)
    }
}

/// Normalises a bare `<n>` to `job_<n>`.
impl TryFrom<String> for JobId {
    type Error = IdError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        JobId::parse(&s).map(JobId::for_task)
    }
}

impl From<JobId> for String {
    fn from(id: JobId) -> String {
        id.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_transparent_numbers_in_json() {
        let id = ServiceId::from(42);
        assert_eq!(serde_json::to_string(&id).unwrap(), "42");
        assert_eq!(serde_json::from_str::<ServiceId>("42").unwrap(), id);
        assert_eq!(id.get(), 42);
        assert_eq!(id.to_string(), "42");
        assert_eq!(i64::from(AdminTokenId::new(-3)), -3);
    }

    #[test]
    fn ids_order_by_their_number() {
        assert!(TaskId::from(2) < TaskId::from(10));
    }

    #[test]
    fn job_id_formats_as_job_underscore_id() {
        let job = JobId::for_task(TaskId::from(17));
        assert_eq!(job.as_str(), "job_17");
        assert_eq!(job.to_string(), "job_17");
        assert_eq!(job.task_id(), TaskId::from(17));
        assert_eq!(serde_json::to_string(&job).unwrap(), "\"job_17\"");
    }

    #[test]
    fn job_id_parse_accepts_prefixed_and_bare_positive_ids() {
        assert_eq!(JobId::parse("job_17"), Ok(TaskId::from(17)));
        assert_eq!(JobId::parse("17"), Ok(TaskId::from(17)));
        assert_eq!(
            JobId::parse(&format!("job_{}", i64::MAX)),
            Ok(TaskId::from(i64::MAX))
        );
    }

    #[test]
    fn job_id_parse_rejects_everything_else() {
        type Check = fn(&IdError) -> bool;
        let cases: &[(&str, &str, Check)] = &[
            ("empty", "", |e| *e == IdError::Empty),
            ("prefix only", "job_", |e| {
                matches!(e, IdError::Malformed(_))
            }),
            ("zero", "job_0", |e| matches!(e, IdError::NotPositive(_))),
            ("leading zero", "job_007", |e| {
                matches!(e, IdError::NotPositive(_))
            }),
            ("negative", "job_-1", |e| matches!(e, IdError::Malformed(_))),
            ("plus sign", "+5", |e| matches!(e, IdError::Malformed(_))),
            ("wrong prefix", "task_5", |e| {
                matches!(e, IdError::Malformed(_))
            }),
            ("uppercase prefix", "JOB_5", |e| {
                matches!(e, IdError::Malformed(_))
            }),
            ("whitespace", " job_5", |e| {
                matches!(e, IdError::Malformed(_))
            }),
            ("trailing text", "job_5x", |e| {
                matches!(e, IdError::Malformed(_))
            }),
            ("overflow", "job_9223372036854775808", |e| {
                matches!(e, IdError::TooLarge(_))
            }),
        ];
        for (why, input, check) in cases {
            let err = JobId::parse(input).unwrap_err();
            assert!(check(&err), "case '{why}': {input:?} gave {err:?}");
        }
    }

    #[test]
    fn job_id_deserialize_validates_and_normalises() {
        assert_eq!(
            serde_json::from_str::<JobId>("\"5\"").unwrap().as_str(),
            "job_5"
        );
        assert!(serde_json::from_str::<JobId>("\"job_x\"").is_err());
    }
}
