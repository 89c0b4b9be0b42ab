//! The command line: every command group, its arguments and its help text. Nothing here talks
//! to the API; `commands` does.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const AFTER_HELP: &str = "\
Configuration, first found wins for each of the URL and the token:
  1. --url / --token
  2. MPANEL_URL / MPANEL_TOKEN
  3. the config file: --config PATH, else $XDG_CONFIG_HOME/mpanel/ctl.toml
     (~/.config/mpanel/ctl.toml), with the keys url, token or token_file
The URL defaults to http://127.0.0.1:8080. The token is never printed; prefer the environment
or the config file (mode 0600) to --token, which other users can see in the process list.
`mpanel-controller token create --admin` makes a token.

Output: aligned columns for people; --json prints the API's JSON for scripts (with --all, one
document holding every page). A list shows its first page and says on stderr how to get more.

Exit status: 0 success; 1 the API refused the request (the error's code is named), could not be
reached, or a watched task failed; 2 bad usage, including no token configured (nothing is sent).
Errors are one line on stderr.";

/// Admin CLI for mpanel: servers, catalogue, services, provisioning tasks, invoices and
/// scheduled jobs, over the controller's HTTP API.
#[derive(Debug, Parser)]
#[command(name = "mpanelctl", version, about, after_help = AFTER_HELP)]
pub struct Cli {
    /// Base URL of the controller's HTTP API.
    #[arg(
        long,
        global = true,
        env = "MPANEL_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub url: Option<String>,
    /// Admin API token (prefer MPANEL_TOKEN or the config file).
    #[arg(
        long,
        global = true,
        env = "MPANEL_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    /// Config file (TOML: url, token or token_file) instead of ~/.config/mpanel/ctl.toml.
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Hosting servers of the fleet.
    #[command(subcommand)]
    Servers(Servers),
    /// Agents: connection, heartbeat, load and certificate of each enrolled server.
    #[command(subcommand)]
    Agents(Agents),
    /// Products (what can be ordered).
    #[command(subcommand)]
    Products(Products),
    /// Customers.
    #[command(subcommand)]
    Customers(Customers),
    /// Services: order, inspect and change hosting accounts.
    #[command(subcommand)]
    Services(Services),
    /// Provisioning tasks (jobs): list, show with steps, retry, watch.
    #[command(subcommand)]
    Tasks(Tasks),
    /// Invoices.
    #[command(subcommand)]
    Invoices(Invoices),
    /// Scheduled jobs and their runs.
    #[command(subcommand)]
    Cron(Cron),
    /// Admin API tokens: list, create with scopes, revoke (needs a token with every scope).
    #[command(subcommand)]
    Tokens(Tokens),
    /// The audit log: who changed what, newest first.
    Activity {
        /// `type` or `type:id`, e.g. `service:42`.
        #[arg(long)]
        target: Option<String>,
        /// As the log names it, e.g. `admin:3`, `cron:service-suspension`, `billing`.
        #[arg(long)]
        actor: Option<String>,
        /// An RFC 3339 time or a date (`2027-01-31`).
        #[arg(long)]
        since: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Print shell completions (bash, zsh, fish, elvish, powershell) on stdout.
    ///
    /// bash: `mpanelctl completions bash > /etc/bash_completion.d/mpanelctl`;
    /// zsh: into a directory of $fpath as `_mpanelctl`; fish: `~/.config/fish/completions/mpanelctl.fish`.
    Completions { shell: clap_complete::Shell },
}

/// `--limit`, `--cursor` and `--all` of every paged list.
#[derive(Debug, Args)]
pub struct Paging {
    /// Rows per page (the API's default when absent).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=500))]
    pub limit: Option<u32>,
    /// Start after this cursor (the `nextCursor` a previous page gave).
    #[arg(long, conflicts_with = "all")]
    pub cursor: Option<String>,
    /// Follow `nextCursor` to the last page.
    #[arg(long)]
    pub all: bool,
}

/// A task a command queued: print its job id, or follow it to the end.
#[derive(Debug, Args)]
pub struct Follow {
    /// Watch the queued task until it ends (like `tasks watch`); exit 1 if it fails.
    #[arg(long)]
    pub wait: bool,
}

#[derive(Debug, Subcommand)]
pub enum Servers {
    /// Register a server.
    Add(ServerAdd),
    /// List servers.
    List {
        #[command(flatten)]
        paging: Paging,
    },
    /// Show one server.
    Show { id: u64 },
    /// Stop placing new accounts on a server (existing ones stay).
    Drain { id: u64 },
    /// Make a drained or disabled server take new accounts again.
    Enable { id: u64 },
    /// Take a server out of service.
    Disable { id: u64 },
    /// Make a one-time enrollment token (1 hour) for `mpanel-agent enroll`; printed once.
    EnrollmentToken { id: u64 },
    /// Revoke the agent certificates of a server; its agent must enroll again.
    Revoke { id: u64 },
}

#[derive(Debug, Args)]
pub struct ServerAdd {
    /// The server's host name.
    #[arg(long)]
    pub hostname: String,
    /// Its IP address (the address its accounts' DNS records point at).
    #[arg(long = "ip", value_name = "IP")]
    pub ip_address: String,
    /// The control panel it runs.
    #[arg(long = "panel", value_enum)]
    pub control_panel: PanelKind,
    /// URL of the control panel's API, e.g. https://127.0.0.1:2087.
    #[arg(long = "panel-url", value_name = "URL")]
    pub control_panel_url: String,
    /// Accounts it may hold.
    #[arg(long, default_value_t = 500)]
    pub max_accounts: i32,
    /// Where it is (free text).
    #[arg(long, default_value = "")]
    pub location: String,
    /// Placement group (products name the group they are placed in).
    #[arg(long, default_value = "default")]
    pub group: String,
    /// First nameserver of the zones it hosts.
    #[arg(long, default_value = "")]
    pub nameserver1: String,
    /// Second nameserver.
    #[arg(long, default_value = "")]
    pub nameserver2: String,
    /// DNS provider (the API's default when absent).
    #[arg(long)]
    pub dns_provider: Option<String>,
    /// SSL provider (the API's default when absent).
    #[arg(long)]
    pub ssl_provider: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PanelKind {
    Cpanel,
    Plesk,
    Directadmin,
}

impl PanelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PanelKind::Cpanel => "cpanel",
            PanelKind::Plesk => "plesk",
            PanelKind::Directadmin => "directadmin",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Agents {
    /// List agents and their health.
    List,
}

#[derive(Debug, Subcommand)]
pub enum Products {
    /// List products.
    List,
    /// Show one product.
    Show { id: u64 },
    /// Create a product.
    Add(ProductAdd),
}

#[derive(Debug, Args)]
pub struct ProductAdd {
    /// The product's name.
    #[arg(long)]
    pub name: String,
    /// Placement group of its services.
    #[arg(long)]
    pub group: Option<String>,
    /// A price, CYCLE:AMOUNT:CURRENCY with AMOUNT in minor units (monthly:999:USD is 9.99);
    /// repeat for each cycle.
    #[arg(long = "price", value_name = "CYCLE:AMOUNT:CURRENCY", value_parser = parse_price, required = true)]
    pub prices: Vec<Price>,
    /// cPanel package name.
    #[arg(long)]
    pub cpanel_package: Option<String>,
    /// Plesk service plan name.
    #[arg(long)]
    pub plesk_package: Option<String>,
    /// DirectAdmin package name.
    #[arg(long)]
    pub directadmin_package: Option<String>,
    /// Disk quota in MB.
    #[arg(long)]
    pub disk_mb: Option<i32>,
    /// Mailbox quota in MB.
    #[arg(long)]
    pub email_quota_mb: Option<i32>,
    /// How many databases an account may have.
    #[arg(long)]
    pub databases: Option<i32>,
    /// Tax in basis points (2000 = 20 %).
    #[arg(long)]
    pub tax_rate_bp: Option<i64>,
    /// none, daily, weekly or monthly.
    #[arg(long)]
    pub backup_schedule: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Price {
    pub cycle: String,
    pub amount: i64,
    pub currency: String,
}

fn parse_price(raw: &str) -> Result<Price, String> {
    let mut parts = raw.split(':');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(cycle), Some(amount), Some(currency), None)
            if !cycle.is_empty() && !currency.is_empty() =>
        {
            let amount = amount
                .parse::<i64>()
                .map_err(|_| format!("'{amount}' is not a whole amount in minor units"))?;
            Ok(Price {
                cycle: cycle.to_owned(),
                amount,
                currency: currency.to_owned(),
            })
        }
        _ => Err("expected CYCLE:AMOUNT:CURRENCY, e.g. monthly:999:USD".to_owned()),
    }
}

#[derive(Debug, Subcommand)]
pub enum Customers {
    /// List customers.
    List {
        #[command(flatten)]
        paging: Paging,
    },
    /// Show one customer.
    Show { id: u64 },
    /// Create a customer.
    Add {
        /// The customer's email address (unique).
        #[arg(long)]
        email: String,
        /// The customer's full name.
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Cycle {
    Monthly,
    Quarterly,
    Annually,
}

impl Cycle {
    pub fn as_str(self) -> &'static str {
        match self {
            Cycle::Monthly => "monthly",
            Cycle::Quarterly => "quarterly",
            Cycle::Annually => "annually",
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SuspensionReason {
    Admin,
    Abuse,
    Dispute,
    Overdue,
}

impl SuspensionReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SuspensionReason::Admin => "admin",
            SuspensionReason::Abuse => "abuse",
            SuspensionReason::Dispute => "dispute",
            SuspensionReason::Overdue => "overdue",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Services {
    /// Order a service for a customer: the service and its provisioning task, in one step.
    Order {
        /// The customer's id.
        #[arg(long)]
        customer: u64,
        /// The product's id.
        #[arg(long)]
        product: u64,
        /// The domain the account is made for.
        #[arg(long)]
        domain: String,
        #[arg(long, value_enum, default_value_t = Cycle::Monthly)]
        cycle: Cycle,
        #[command(flatten)]
        follow: Follow,
    },
    /// List services.
    List {
        #[arg(long)]
        customer: Option<u64>,
        /// pending, active, suspended, terminated or cancelled.
        #[arg(long)]
        status: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show one service.
    Show { id: u64 },
    /// Suspend a service.
    Suspend {
        id: u64,
        #[arg(long, value_enum, default_value_t = SuspensionReason::Admin)]
        reason: SuspensionReason,
        /// Free text kept with the task, for the admins.
        #[arg(long)]
        note: Option<String>,
        #[command(flatten)]
        follow: Follow,
    },
    /// Lift a suspension.
    Unsuspend {
        id: u64,
        #[command(flatten)]
        follow: Follow,
    },
    /// Terminate a service: its account is removed from the panel (a final backup is taken
    /// when the product has backups).
    Terminate {
        id: u64,
        /// Required: termination removes the account.
        #[arg(long, required = true)]
        yes: bool,
        #[command(flatten)]
        follow: Follow,
    },
    /// Move a service to another product (its package changes on the panel).
    ChangePackage {
        id: u64,
        #[arg(long)]
        product: u64,
        #[command(flatten)]
        follow: Follow,
    },
    /// Set a new panel password; without --password-stdin one is generated and sent to the
    /// customer.
    ChangePassword {
        id: u64,
        /// Read the new password from the first line of stdin (never from the command line).
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        follow: Follow,
    },
    /// List a service's backups.
    Backups { id: u64 },
    /// Bring a terminated service back from one of its backups.
    Restore {
        id: u64,
        /// The backup's id (see `services backups`).
        #[arg(long)]
        backup: u64,
        #[command(flatten)]
        follow: Follow,
    },
}

#[derive(Debug, Subcommand)]
pub enum Tasks {
    /// List tasks, newest first.
    List {
        /// pending, processing, completed or failed.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        service: Option<u64>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show one task with its steps.
    Show { job: String },
    /// Re-queue a failed task.
    Retry {
        job: String,
        #[command(flatten)]
        follow: Follow,
    },
    /// The failed list (failed tasks not cleared).
    Failed {
        #[command(flatten)]
        paging: Paging,
    },
    /// Clear the failed list (the tasks stay in history as failed).
    ClearFailed,
    /// Queue depths and the last seven days of tasks.
    Stats,
    /// Poll a task until it ends, printing each step as it finishes; exit 1 if it fails.
    Watch {
        job: String,
        /// Seconds between polls.
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
        /// Give up (exit 1) after this many seconds; no limit when absent.
        #[arg(long)]
        timeout: Option<f64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum Invoices {
    /// List invoices, newest first.
    List {
        #[arg(long)]
        customer: Option<u64>,
        #[arg(long)]
        service: Option<u64>,
        /// unpaid, paid, void or refunded.
        #[arg(long)]
        status: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show one invoice with its lines and payments.
    Show { id: u64 },
    /// Charge the customer's saved card now.
    Pay { id: u64 },
}

#[derive(Debug, Subcommand)]
pub enum Cron {
    /// Scheduled jobs: schedule, last run, next run, leader.
    Jobs,
    /// Run a job now (a run already in progress is reported, not doubled).
    Run { name: String },
    /// Runs, newest first.
    Runs {
        /// Only this job's runs.
        #[arg(long)]
        job: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
}

#[derive(Debug, Subcommand)]
pub enum Tokens {
    /// Every token with its scopes and status (the tokens themselves are never shown again).
    List,
    /// Create a token; it is printed once.
    Create {
        /// What the token is for, e.g. `monitoring`.
        name: String,
        /// Scopes: read, write, billing, fleet (repeat or comma-separate).
        #[arg(long = "scope", required = true, value_delimiter = ',')]
        scopes: Vec<String>,
        /// When it stops working: an RFC 3339 time or a date.
        #[arg(long)]
        expires: Option<String>,
    },
    /// Revoke a token by id; requests with it get 401 from then on.
    Revoke { id: u64 },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_price_is_cycle_amount_currency() {
        let p = parse_price("monthly:999:USD").unwrap();
        assert_eq!(
            (p.cycle.as_str(), p.amount, p.currency.as_str()),
            ("monthly", 999, "USD")
        );
        assert!(parse_price("monthly:9.99:USD").is_err());
        assert!(parse_price("monthly:999").is_err());
        assert!(parse_price("monthly:999:USD:x").is_err());
    }
}
