//! Lifecycle states of services, tasks, invoices, agents and servers, with their legal
//! transitions written as functions, plus the closed vocabularies around provisioning
//! (steps, task kinds, billing cycles).
//!
//! Only the rules live here; storing a state and deciding what a repeated request means
//! (moving to the state already held is illegal, so callers choose their own idempotency) is
//! the caller's job.

use crate::string_enum::string_enum;

pub use crate::string_enum::ParseEnumError;

/// A state change the lifecycle does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{entity} cannot go from {from} to {to}")]
pub struct TransitionError {
    pub entity: &'static str,
    pub from: String,
    pub to: String,
}

fn checked<T: Copy + std::fmt::Display>(
    entity: &'static str,
    from: T,
    to: T,
    legal: bool,
) -> Result<T, TransitionError> {
    if legal {
        Ok(to)
    } else {
        Err(TransitionError {
            entity,
            from: from.to_string(),
            to: to.to_string(),
        })
    }
}

string_enum! {
    /// A customer's hosting service.
    pub enum ServiceStatus: "service status" {
        /// Ordered, not yet provisioned.
        Pending => "pending",
        Active => "active",
        Suspended => "suspended",
        /// Removed from the server by us (non-payment, abuse, end of term).
        Terminated => "terminated",
        /// Ended at the customer's request.
        Cancelled => "cancelled",
    }
}

impl ServiceStatus {
    pub fn can_transition_to(self, next: Self) -> bool {
        use ServiceStatus::*;
        matches!(
            (self, next),
            (Pending, Active | Cancelled | Terminated)
                | (Active, Suspended | Terminated | Cancelled)
                | (Suspended, Active | Terminated | Cancelled)
                // Restored from a backup taken before the account was removed.
                | (Terminated, Active)
        )
    }

    pub fn transition(self, next: Self) -> Result<Self, TransitionError> {
        checked("service", self, next, self.can_transition_to(next))
    }

    /// The service has ended: cancelled ones never change again; a terminated one comes back
    /// only by a restore from a backup.
    pub fn is_final(self) -> bool {
        matches!(self, ServiceStatus::Terminated | ServiceStatus::Cancelled)
    }
}

string_enum! {
    /// Why a service is suspended. Only an `Overdue` suspension is lifted by a payment; the
    /// others stay until someone decides otherwise.
    pub enum SuspensionReason: "suspension reason" {
        /// An invoice is unpaid past its grace period.
        Overdue => "overdue",
        /// An administrator suspended it.
        Admin => "admin",
        Abuse => "abuse",
        /// The customer disputed a payment.
        Dispute => "dispute",
    }
}

string_enum! {
    /// How often a product's accounts are backed up by the `backups` job.
    pub enum BackupSchedule: "backup schedule" {
        None => "none",
        Daily => "daily",
        Weekly => "weekly",
        Monthly => "monthly",
    }
}

impl SuspensionReason {
    /// Whether paying the overdue invoice lifts this suspension.
    pub fn lifted_by_payment(self) -> bool {
        self == SuspensionReason::Overdue
    }
}

string_enum! {
    /// A task in the durable provisioning queue.
    pub enum TaskStatus: "task status" {
        Pending => "pending",
        /// Claimed by a worker under a lease.
        Processing => "processing",
        Completed => "completed",
        /// Out of automatic retries; waits for an operator.
        Failed => "failed",
    }
}

impl TaskStatus {
    pub fn can_transition_to(self, next: Self) -> bool {
        use TaskStatus::*;
        matches!(
            (self, next),
            (Pending, Processing)
                // Back to pending: a retry was scheduled or the lease was released on shutdown.
                | (Processing, Completed | Failed | Pending)
                // Manual retry by an operator.
                | (Failed, Pending)
        )
    }

    pub fn transition(self, next: Self) -> Result<Self, TransitionError> {
        checked("task", self, next, self.can_transition_to(next))
    }

    /// Still owed work: a worker will (or does) hold it.
    pub fn is_open(self) -> bool {
        matches!(self, TaskStatus::Pending | TaskStatus::Processing)
    }
}

string_enum! {
    pub enum InvoiceStatus: "invoice status" {
        /// Being assembled; not yet sent to the customer.
        Draft => "draft",
        Unpaid => "unpaid",
        Paid => "paid",
        /// Unpaid past its due date.
        Overdue => "overdue",
        Void => "void",
        Refunded => "refunded",
    }
}

string_enum! {
    /// A checkout order: written before the customer pays, fulfilled once.
    pub enum OrderStatus: "order status" {
        /// Waiting for the customer to pay.
        Open => "open",
        /// Paid, but could not be fulfilled (the domain was taken meanwhile, say): an admin
        /// refunds or fulfils it by hand.
        Paid => "paid",
        /// Paid, and the customer, service, invoice and provisioning task exist.
        Fulfilled => "fulfilled",
        /// The checkout session expired unpaid.
        Expired => "expired",
        /// A delayed payment failed; nothing was created.
        Failed => "failed",
    }
}

impl InvoiceStatus {
    pub fn can_transition_to(self, next: Self) -> bool {
        use InvoiceStatus::*;
        matches!(
            (self, next),
            (Draft, Unpaid | Void)
                | (Unpaid, Paid | Overdue | Void)
                | (Overdue, Paid | Void)
                | (Paid, Refunded)
        )
    }

    pub fn transition(self, next: Self) -> Result<Self, TransitionError> {
        checked("invoice", self, next, self.can_transition_to(next))
    }
}

string_enum! {
    /// The controller's view of a server's agent connection.
    pub enum AgentStatus: "agent status" {
        /// Enrolled, never connected.
        Pending => "pending",
        Online => "online",
        /// Missed heartbeats; not yet declared offline.
        Suspect => "suspect",
        Offline => "offline",
        /// Certificate revoked; only re-enrolment brings it back.
        Revoked => "revoked",
    }
}

impl AgentStatus {
    pub fn can_transition_to(self, next: Self) -> bool {
        use AgentStatus::*;
        matches!(
            (self, next),
            (Pending, Online)
                | (Online, Suspect | Offline)
                | (Suspect, Online | Offline)
                | (Offline, Online)
                | (Pending | Online | Suspect | Offline, Revoked)
                | (Revoked, Pending)
        )
    }

    pub fn transition(self, next: Self) -> Result<Self, TransitionError> {
        checked("agent", self, next, self.can_transition_to(next))
    }
}

string_enum! {
    /// Whether a server takes new services.
    pub enum ServerStatus: "server status" {
        Active => "active",
        /// Keeps its services, receives no new ones.
        Draining => "draining",
        Disabled => "disabled",
    }
}

impl ServerStatus {
    /// Operators may move a server between any two states.
    pub fn can_transition_to(self, next: Self) -> bool {
        self != next
    }

    pub fn transition(self, next: Self) -> Result<Self, TransitionError> {
        checked("server", self, next, self.can_transition_to(next))
    }
}

string_enum! {
    /// Who serves a server's DNS zones.
    pub enum DnsProvider: "DNS provider" {
        /// The panel's own DNS, through the agent.
        Panel => "panel",
        /// The controller's PowerDNS, written by the controller itself.
        Powerdns => "powerdns",
    }
}

string_enum! {
    /// Where a server's TLS certificates come from.
    pub enum SslProvider: "SSL provider" {
        /// The agent issues from its ACME CA and installs the certificate.
        Acme => "acme",
        /// The panel's AutoSSL issues on its own schedule.
        Autossl => "autossl",
    }
}

string_enum! {
    /// A billing customer.
    pub enum CustomerStatus: "customer status" {
        /// May order.
        Active => "active",
        /// Keeps its history, orders nothing new.
        Closed => "closed",
    }
}

string_enum! {
    /// The steps of provisioning a service, in the order they run.
    pub enum ProvisioningStep: "provisioning step" {
        Account => "account",
        Dns => "dns",
        Ssl => "ssl",
        Email => "email",
        Database => "database",
        WelcomeEmail => "welcome_email",
    }
}

impl ProvisioningStep {
    /// The step after this one, or `None` after the last.
    pub fn next(self) -> Option<Self> {
        let at = Self::ALL.iter().position(|s| *s == self)?;
        Self::ALL.get(at + 1).copied()
    }
}

string_enum! {
    /// How a recorded step of a task ended.
    pub enum StepStatus: "step status" {
        Success => "success",
        Failed => "failed",
        /// Nothing failed; the step waits for something outside (DNS pointing at the server).
        Waiting => "waiting",
    }
}

/// The name a step is recorded under in a task's result: one of the six provisioning steps, or
/// a lifecycle task's one command (named after its kind). The two vocabularies share no name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskStep {
    Provisioning(ProvisioningStep),
    Lifecycle(TaskKind),
}

impl TaskStep {
    pub const fn as_str(self) -> &'static str {
        match self {
            TaskStep::Provisioning(step) => step.as_str(),
            TaskStep::Lifecycle(kind) => kind.as_str(),
        }
    }
}

impl std::fmt::Display for TaskStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for TaskStep {
    type Err = ParseEnumError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse::<ProvisioningStep>()
            .map(TaskStep::Provisioning)
            .or_else(|_| s.parse::<TaskKind>().map(TaskStep::Lifecycle))
            .map_err(|_| ParseEnumError {
                what: "task step",
                input: s.to_owned(),
                accepted: &[
                    "account",
                    "dns",
                    "ssl",
                    "email",
                    "database",
                    "welcome_email",
                    "suspend",
                    "unsuspend",
                    "terminate",
                    "change_package",
                    "change_password",
                    "restore",
                ],
            })
    }
}

impl From<ProvisioningStep> for TaskStep {
    fn from(step: ProvisioningStep) -> Self {
        TaskStep::Provisioning(step)
    }
}

impl PartialEq<&str> for TaskStep {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl serde::Serialize for TaskStep {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for TaskStep {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        raw.parse().map_err(serde::de::Error::custom)
    }
}

string_enum! {
    pub enum BillingCycle: "billing cycle" {
        Monthly => "monthly",
        Quarterly => "quarterly",
        Annually => "annually",
    }
}

impl BillingCycle {
    pub const fn months(self) -> u32 {
        match self {
            BillingCycle::Monthly => 1,
            BillingCycle::Quarterly => 3,
            BillingCycle::Annually => 12,
        }
    }
}

string_enum! {
    /// What a queued task does to a service.
    pub enum TaskKind: "task kind" {
        /// Runs the [`ProvisioningStep`]s in order.
        Provision => "provision",
        Suspend => "suspend",
        Unsuspend => "unsuspend",
        Terminate => "terminate",
        ChangePackage => "change_package",
        ChangePassword => "change_password",
        /// Brings a terminated account back from one of its backups.
        Restore => "restore",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Debug;
    use std::str::FromStr;

    /// Checks `can_transition_to` and `transition` against `legal` for every ordered pair,
    /// so an edge added to or missing from the code shows up as a named pair.
    fn assert_exact_edges<T>(
        all: &[T],
        legal: &[(T, T)],
        can: fn(T, T) -> bool,
        transition: fn(T, T) -> Result<T, TransitionError>,
    ) where
        T: Copy + PartialEq + Debug,
    {
        for &from in all {
            for &to in all {
                let want = legal.contains(&(from, to));
                assert_eq!(can(from, to), want, "{from:?} -> {to:?}");
                assert_eq!(transition(from, to).is_ok(), want, "{from:?} -> {to:?}");
            }
        }
    }

    /// Every wire name round-trips through `FromStr`, `Display` and serde, and a wrong one is
    /// refused with the list of accepted names.
    fn assert_wire_names<T>(all: &[T], names: &[&str])
    where
        T: Copy + PartialEq + Debug + std::fmt::Display + FromStr<Err = ParseEnumError>,
        T: serde::Serialize + serde::de::DeserializeOwned,
    {
        assert_eq!(all.len(), names.len());
        for (&v, &name) in all.iter().zip(names) {
            assert_eq!(v.to_string(), name);
            assert_eq!(T::from_str(name), Ok(v));
            assert_eq!(serde_json::to_string(&v).unwrap(), format!("\"{name}\""));
            assert_eq!(
                serde_json::from_str::<T>(&format!("\"{name}\"")).unwrap(),
                v
            );
        }
        let err = T::from_str("Nope").unwrap_err();
        assert!(err.to_string().ends_with(&names.join(", ")), "{err}");
        assert!(serde_json::from_str::<T>("\"Nope\"").is_err());
    }

    #[test]
    fn service_transitions_match_the_lifecycle() {
        use ServiceStatus::*;
        let legal = [
            (Pending, Active),
            (Pending, Cancelled),
            (Pending, Terminated),
            (Active, Suspended),
            (Active, Terminated),
            (Active, Cancelled),
            (Suspended, Active),
            (Suspended, Terminated),
            (Suspended, Cancelled),
            (Terminated, Active),
        ];
        assert_exact_edges(
            &ServiceStatus::ALL,
            &legal,
            ServiceStatus::can_transition_to,
            ServiceStatus::transition,
        );
        assert!(Terminated.is_final() && Cancelled.is_final() && !Suspended.is_final());
    }

    #[test]
    fn task_transitions_match_the_lifecycle() {
        use TaskStatus::*;
        let legal = [
            (Pending, Processing),
            (Processing, Completed),
            (Processing, Failed),
            (Processing, Pending),
            (Failed, Pending),
        ];
        assert_exact_edges(
            &TaskStatus::ALL,
            &legal,
            TaskStatus::can_transition_to,
            TaskStatus::transition,
        );
        let open: Vec<_> = TaskStatus::ALL
            .into_iter()
            .filter(|s| s.is_open())
            .collect();
        assert_eq!(open, [Pending, Processing]);
    }

    #[test]
    fn invoice_transitions_match_the_lifecycle() {
        use InvoiceStatus::*;
        let legal = [
            (Draft, Unpaid),
            (Draft, Void),
            (Unpaid, Paid),
            (Unpaid, Overdue),
            (Unpaid, Void),
            (Overdue, Paid),
            (Overdue, Void),
            (Paid, Refunded),
        ];
        assert_exact_edges(
            &InvoiceStatus::ALL,
            &legal,
            InvoiceStatus::can_transition_to,
            InvoiceStatus::transition,
        );
    }

    #[test]
    fn agent_transitions_match_the_lifecycle() {
        use AgentStatus::*;
        let legal = [
            (Pending, Online),
            (Online, Suspect),
            (Online, Offline),
            (Suspect, Online),
            (Suspect, Offline),
            (Offline, Online),
            (Pending, Revoked),
            (Online, Revoked),
            (Suspect, Revoked),
            (Offline, Revoked),
            (Revoked, Pending),
        ];
        assert_exact_edges(
            &AgentStatus::ALL,
            &legal,
            AgentStatus::can_transition_to,
            AgentStatus::transition,
        );
    }

    #[test]
    fn server_may_move_between_any_two_different_states() {
        use ServerStatus::*;
        let legal = [
            (Active, Draining),
            (Active, Disabled),
            (Draining, Active),
            (Draining, Disabled),
            (Disabled, Active),
            (Disabled, Draining),
        ];
        assert_exact_edges(
            &ServerStatus::ALL,
            &legal,
            ServerStatus::can_transition_to,
            ServerStatus::transition,
        );
    }

    #[test]
    fn transition_error_names_entity_and_states() {
        let err = ServiceStatus::Cancelled
            .transition(ServiceStatus::Active)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "service cannot go from cancelled to active"
        );
        assert_eq!(err.entity, "service");
        let err = TaskStatus::Completed
            .transition(TaskStatus::Completed)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "task cannot go from completed to completed"
        );
    }

    #[test]
    fn legal_transition_returns_the_new_state() {
        assert_eq!(
            InvoiceStatus::Unpaid.transition(InvoiceStatus::Paid),
            Ok(InvoiceStatus::Paid)
        );
    }

    #[test]
    fn every_enum_has_matching_wire_names() {
        assert_wire_names(
            &ServiceStatus::ALL,
            &["pending", "active", "suspended", "terminated", "cancelled"],
        );
        assert_wire_names(
            &TaskStatus::ALL,
            &["pending", "processing", "completed", "failed"],
        );
        assert_wire_names(
            &InvoiceStatus::ALL,
            &["draft", "unpaid", "paid", "overdue", "void", "refunded"],
        );
        assert_wire_names(
            &AgentStatus::ALL,
            &["pending", "online", "suspect", "offline", "revoked"],
        );
        assert_wire_names(&ServerStatus::ALL, &["active", "draining", "disabled"]);
        assert_wire_names(
            &ProvisioningStep::ALL,
            &[
                "account",
                "dns",
                "ssl",
                "email",
                "database",
                "welcome_email",
            ],
        );
        assert_wire_names(&BillingCycle::ALL, &["monthly", "quarterly", "annually"]);
        assert_wire_names(
            &TaskKind::ALL,
            &[
                "provision",
                "suspend",
                "unsuspend",
                "terminate",
                "change_package",
                "change_password",
                "restore",
            ],
        );
        assert_wire_names(
            &BackupSchedule::ALL,
            &["none", "daily", "weekly", "monthly"],
        );
    }

    #[test]
    fn parse_error_names_what_and_accepted_values() {
        let err = "Active".parse::<ServiceStatus>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown service status 'Active'; expected one of: pending, active, suspended, terminated, cancelled"
        );
    }

    #[test]
    fn provisioning_steps_run_in_order_and_end() {
        use ProvisioningStep::*;
        let mut walked = vec![Account];
        while let Some(next) = walked.last().and_then(|s| s.next()) {
            walked.push(next);
        }
        assert_eq!(walked, [Account, Dns, Ssl, Email, Database, WelcomeEmail]);
        assert_eq!(WelcomeEmail.next(), None);
    }

    #[test]
    fn billing_cycle_months() {
        assert_eq!(BillingCycle::ALL.map(BillingCycle::months), [1, 3, 12]);
    }
}

#[cfg(test)]
mod task_step_tests {
    use super::*;

    #[test]
    fn every_step_name_reads_back_as_itself_and_the_vocabularies_do_not_overlap() {
        let mut names = Vec::new();
        for step in ProvisioningStep::ALL {
            names.push(TaskStep::Provisioning(step));
        }
        for kind in TaskKind::ALL {
            if kind != TaskKind::Provision {
                names.push(TaskStep::Lifecycle(kind));
            }
        }
        for name in &names {
            assert_eq!(name.as_str().parse::<TaskStep>().unwrap(), *name);
            let json = serde_json::to_string(name).unwrap();
            assert_eq!(serde_json::from_str::<TaskStep>(&json).unwrap(), *name);
        }
        let mut strings: Vec<&str> = names.iter().map(|n| n.as_str()).collect();
        strings.sort_unstable();
        strings.dedup();
        assert_eq!(strings.len(), names.len());
        assert!("reticulate".parse::<TaskStep>().is_err());
        assert!(serde_json::from_str::<StepStatus>("\"done\"").is_err());
    }
}
