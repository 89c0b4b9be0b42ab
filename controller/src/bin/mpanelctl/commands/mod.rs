//! One module per command group; each turns its arguments into API requests and shows the
//! answer as a table or record, or as the API's JSON with `--json`.

mod billing;
mod catalogue;
mod cron;
mod fleet;
mod services;
mod tasks;
mod tokens;

use serde_json::Value;

use crate::cli::Command;
use crate::client::Client;
use crate::failure::Failure;
use crate::output;

pub struct Ctx {
    pub client: Client,
    pub json: bool,
}

impl Ctx {
    /// The API's JSON with `--json`, else what `human` prints.
    fn show(&self, value: &Value, human: impl FnOnce(&Value)) {
        if self.json {
            output::json(value);
        } else {
            human(value);
        }
    }

    /// A list page: the JSON, or the table and a hint when more pages follow.
    fn show_list(&self, page: &Value, human: impl FnOnce(&Value)) {
        if self.json {
            output::json(page);
        } else {
            human(page);
            output::more_hint(page);
        }
    }
}

pub async fn run(ctx: &Ctx, command: Command) -> Result<(), Failure> {
    match command {
        Command::Servers(c) => fleet::servers(ctx, c).await,
        Command::Agents(c) => fleet::agents(ctx, c).await,
        Command::Products(c) => catalogue::products(ctx, c).await,
        Command::Customers(c) => catalogue::customers(ctx, c).await,
        Command::Services(c) => services::run(ctx, c).await,
        Command::Tasks(c) => tasks::run(ctx, c).await,
        Command::Invoices(c) => billing::invoices(ctx, c).await,
        Command::Cron(c) => cron::run(ctx, c).await,
        Command::Tokens(c) => tokens::run(ctx, c).await,
        Command::Activity {
            target,
            actor,
            since,
            paging,
        } => tokens::activity(ctx, target, actor, since, &paging).await,
        Command::Completions { .. } => unreachable!("completions need no API"),
    }
}

/// The rows under `key` of a list answer.
fn rows<'a>(page: &'a Value, key: &str) -> &'a [Value] {
    page[key].as_array().map(Vec::as_slice).unwrap_or(&[])
}
