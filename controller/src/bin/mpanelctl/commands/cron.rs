//! `cron`: the scheduled jobs, a manual run, and the runs.

use super::{Ctx, rows};
use crate::cli::Cron;
use crate::failure::Failure;
use crate::output::{Table, cell};

pub async fn run(ctx: &Ctx, command: Cron) -> Result<(), Failure> {
    let c = &ctx.client;
    match command {
        Cron::Jobs => {
            let answer = c.get("/api/cron/jobs", &[]).await?;
            ctx.show(&answer, |a| {
                let mut t = Table::new(&[
                    "JOB",
                    "SCHEDULE",
                    "ENABLED",
                    "LAST RUN",
                    "LAST STATUS",
                    "NEXT RUN",
                    "LEADER",
                ]);
                for j in rows(a, "jobs") {
                    let last = &j["lastRun"];
                    let schedule = if j["stale"] == true {
                        format!("{} (stale)", cell(&j["schedule"]))
                    } else {
                        cell(&j["schedule"])
                    };
                    t.row(vec![
                        cell(&j["name"]),
                        schedule,
                        cell(&j["enabled"]),
                        cell(&last["startedAt"]),
                        cell(&last["status"]),
                        cell(&j["nextRunAt"]),
                        cell(&j["leader"]),
                    ]);
                }
                t.print();
            });
        }
        Cron::Run { name } => {
            // Job names are kebab-case; anything else would not be one path segment.
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return Err(Failure::Usage(format!(
                    "'{name}' is not a job name (see `mpanelctl cron jobs`)"
                )));
            }
            let answer = c.post(&format!("/api/cron/jobs/{name}/run"), None).await?;
            ctx.show(&answer, |a| {
                println!(
                    "{} run {} is {}",
                    cell(&a["job"]),
                    cell(&a["runId"]),
                    cell(&a["status"])
                );
            });
        }
        Cron::Runs { job, paging } => {
            let page = c
                .list("/api/cron/runs", &[("job", job)], "runs", &paging)
                .await?;
            ctx.show_list(&page, |p| {
                let mut t = Table::new(&[
                    "ID",
                    "JOB",
                    "TRIGGER",
                    "STATUS",
                    "SCHEDULED FOR",
                    "STARTED",
                    "FINISHED",
                    "SUMMARY",
                ]);
                for r in rows(p, "runs") {
                    let summary = match r["error"].as_str() {
                        Some(e) => e.to_owned(),
                        None => cell(&r["summary"]),
                    };
                    t.row(vec![
                        cell(&r["id"]),
                        cell(&r["job"]),
                        cell(&r["trigger"]),
                        cell(&r["status"]),
                        cell(&r["scheduledFor"]),
                        cell(&r["startedAt"]),
                        cell(&r["finishedAt"]),
                        summary,
                    ]);
                }
                t.print();
            });
        }
    }
    Ok(())
}
