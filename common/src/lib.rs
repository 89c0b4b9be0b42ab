//! Domain types shared by the controller and the agent: validated values ([`DomainName`],
//! [`Username`], ids, [`Money`]), lifecycle state machines with their legal transitions, and
//! [`Secret`]. No I/O lives here: no files, network, environment, clocks or randomness, so
//! everything is deterministic and testable without setup.

pub mod billing;
pub mod command;
pub mod dns;
pub mod domain;
pub mod ids;
pub mod load;
pub mod money;
pub mod secret;
pub mod status;
mod string_enum;
pub mod username;

pub use domain::{DomainError, DomainName, DomainWarning};
pub use ids::{
    AdminTokenId, CustomerId, IdError, InvoiceId, JobId, PaymentId, ProductId, ServerId, ServiceId,
    TaskId,
};
pub use money::{Currency, Money, MoneyError};
pub use secret::Secret;
pub use status::{
    AgentStatus, BillingCycle, InvoiceStatus, OrderStatus, ProvisioningStep, ServerStatus,
    ServiceStatus, TaskKind, TaskStatus, TransitionError,
};
pub use string_enum::ParseEnumError;
pub use username::{
    PanelKind, Username, UsernameError, database_name, database_prefix, username_for,
    validate_username,
};
