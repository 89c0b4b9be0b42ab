//! `tasks`: the provisioning queue (list, show with steps, retry, the failed list, stats), and
//! `watch`, which polls a task until it ends. `queued` is the answer of every command that
//! queues a task, with `--wait` handing over to `watch`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Ctx, rows};
use crate::cli::{Follow, Tasks};
use crate::failure::Failure;
use crate::output::{self, Table, cell, millis, record};

pub async fn run(ctx: &Ctx, command: Tasks) -> Result<(), Failure> {
    let c = &ctx.client;
    match command {
        Tasks::List {
            status,
            service,
            paging,
        } => {
            let filters = [
                ("status", status),
                ("serviceId", service.map(|s| s.to_string())),
            ];
            let page = c
                .list("/api/provisioning/tasks", &filters, "tasks", &paging)
                .await?;
            ctx.show_list(&page, task_table);
        }
        Tasks::Failed { paging } => {
            let page = c
                .list("/api/provisioning/failed", &[], "tasks", &paging)
                .await?;
            ctx.show_list(&page, task_table);
        }
        Tasks::Show { job } => {
            let task = c.get(&task_path(&job)?, &[]).await?;
            ctx.show(&task, show_task);
        }
        Tasks::Retry { job, follow } => {
            let answer = c
                .post(&format!("/api/provisioning/retry/{}", job_id(&job)?), None)
                .await?;
            queued(ctx, &answer, &follow).await?;
        }
        Tasks::ClearFailed => {
            let answer = c.delete("/api/provisioning/failed").await?;
            ctx.show(&answer, |a| {
                println!(
                    "{} failed task(s) cleared from the failed list",
                    cell(&a["cleared"])
                );
            });
        }
        Tasks::Stats => {
            let stats = c.get("/api/provisioning/stats", &[]).await?;
            ctx.show(&stats, show_stats);
        }
        Tasks::Watch {
            job,
            interval,
            timeout,
        } => {
            let interval = seconds("--interval", interval)?;
            let timeout = timeout.map(|t| seconds("--timeout", t)).transpose()?;
            watch(ctx, &job, interval, timeout).await?;
        }
    }
    Ok(())
}

fn seconds(flag: &str, value: f64) -> Result<Duration, Failure> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            Failure::Usage(format!(
                "{flag}: '{value}' is not a positive number of seconds"
            ))
        })
}

/// `job_12` or `12`, as the API's job id.
fn job_id(raw: &str) -> Result<String, Failure> {
    let digits = raw.strip_prefix("job_").unwrap_or(raw);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        Ok(format!("job_{digits}"))
    } else {
        Err(Failure::Usage(format!(
            "'{raw}' is not a job id (job_12 or 12)"
        )))
    }
}

fn task_path(raw: &str) -> Result<String, Failure> {
    Ok(format!("/api/provisioning/tasks/{}", job_id(raw)?))
}

fn task_table(page: &Value) {
    let mut t = Table::new(&[
        "JOB",
        "TYPE",
        "SERVICE",
        "STATUS",
        "ATTEMPTS",
        "CREATED",
        "COMPLETED",
        "ERROR",
    ]);
    for task in rows(page, "tasks") {
        t.row(vec![
            cell(&task["jobId"]),
            cell(&task["type"]),
            cell(&task["serviceId"]),
            cell(&task["status"]),
            format!("{}/{}", cell(&task["attempts"]), cell(&task["maxRetries"])),
            millis(&task["createdAt"]),
            millis(&task["completedAt"]),
            cell(&task["error"]),
        ]);
    }
    t.print();
}

fn show_task(task: &Value) {
    let mut shown = task.clone();
    if let Some(map) = shown.as_object_mut() {
        map.remove("result");
        for k in ["createdAt", "completedAt", "nextAttemptAt", "clearedAt"] {
            if let Some(v) = map.get_mut(k) {
                *v = millis(v).into();
            }
        }
    }
    record(&shown, &[]);
    let steps = task["result"]["steps"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if steps.is_empty() {
        println!("\nno steps yet");
        return;
    }
    println!();
    let mut t = Table::new(&["STEP", "STATUS", "FINISHED", "DETAIL"]);
    for step in steps {
        t.row(vec![
            cell(&step["step"]),
            cell(&step["status"]),
            millis(&step["finishedAt"]),
            step_detail(step),
        ]);
    }
    t.print();
}

/// A step's error, else its data (compact).
fn step_detail(step: &Value) -> String {
    match &step["error"] {
        Value::String(e) => e.clone(),
        _ => match &step["data"] {
            Value::Object(m) if m.is_empty() => "-".to_owned(),
            Value::Null => "-".to_owned(),
            data => data.to_string(),
        },
    }
}

fn show_stats(s: &Value) {
    let mut t = Table::new(&["QUEUE", "PENDING", "PROCESSING", "FAILED"]);
    if let Some(queues) = s["queue"].as_object() {
        for (name, q) in queues.iter().filter(|(_, q)| q.is_object()) {
            t.row(vec![
                name.clone(),
                cell(&q["pending"]),
                cell(&q["processing"]),
                cell(&q["failed"]),
            ]);
        }
    }
    t.print();
    println!(
        "failed list: {}   processing now: {}",
        cell(&s["queue"]["failed"]),
        cell(&s["queue"]["processing_total"])
    );
    let week = &s["tasks"]["last_7_days"];
    println!(
        "last 7 days: {} pending, {} processing, {} completed, {} failed",
        cell(&week["pending"]),
        cell(&week["processing"]),
        cell(&week["completed"]),
        cell(&week["failed"])
    );
}

/// The answer of a command that queued a task (`{"message","jobId","serviceId","status"}`):
/// printed, or followed to its end with `--wait`.
pub async fn queued(ctx: &Ctx, answer: &Value, follow: &Follow) -> Result<(), Failure> {
    let job = answer["jobId"].as_str().map(str::to_owned);
    if follow.wait {
        let job = job.ok_or_else(|| {
            Failure::Runtime(format!("the API's answer names no jobId: {answer}"))
        })?;
        if !ctx.json {
            println!("{}: {job}", cell(&answer["message"]));
        }
        return watch(ctx, &job, Duration::from_secs(1), None).await;
    }
    ctx.show(answer, |a| {
        println!(
            "{}: {} (service {}); follow it with `mpanelctl tasks watch {}`",
            cell(&a["message"]),
            cell(&a["jobId"]),
            cell(&a["serviceId"]),
            cell(&a["jobId"]),
        );
    });
    Ok(())
}

/// Polls the task until it is `completed` (Ok) or `failed` (a runtime failure naming its
/// error), printing the task's status when it changes and each step once its status settles.
/// With `--json` only the final task is printed.
pub async fn watch(
    ctx: &Ctx,
    job: &str,
    interval: Duration,
    timeout: Option<Duration>,
) -> Result<(), Failure> {
    let path = task_path(job)?;
    let started = Instant::now();
    let mut last_status = String::new();
    let mut steps_seen: HashMap<String, String> = HashMap::new();
    loop {
        let task = ctx.client.get(&path, &[]).await?;
        let status = cell(&task["status"]);
        if !ctx.json {
            if status != last_status {
                let mut line = format!("{} {status}", cell(&task["jobId"]));
                if status == "pending" || status == "processing" {
                    line.push_str(&format!(
                        " (attempt {}/{})",
                        cell(&task["attempts"]),
                        cell(&task["maxRetries"])
                    ));
                }
                if let Some(reason) = task["waitReason"].as_str() {
                    line.push_str(&format!(": {reason}"));
                }
                println!("{line}");
            }
            for step in task["result"]["steps"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[])
            {
                let name = cell(&step["step"]);
                let step_status = cell(&step["status"]);
                if steps_seen.get(&name) != Some(&step_status) {
                    println!("  {name:<14} {step_status:<8} {}", step_detail(step));
                    steps_seen.insert(name, step_status);
                }
            }
        }
        last_status = status;
        match last_status.as_str() {
            "completed" => {
                if ctx.json {
                    output::json(&task);
                }
                return Ok(());
            }
            "failed" => {
                if ctx.json {
                    output::json(&task);
                }
                return Err(Failure::Runtime(format!(
                    "{} failed: {}",
                    cell(&task["jobId"]),
                    cell(&task["error"])
                )));
            }
            _ => {}
        }
        if timeout.is_some_and(|t| started.elapsed() >= t) {
            return Err(Failure::Runtime(format!(
                "{} is still {last_status} after {:.0} s",
                cell(&task["jobId"]),
                started.elapsed().as_secs_f64()
            )));
        }
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_id_is_taken_with_or_without_its_prefix() {
        assert_eq!(job_id("job_12").unwrap(), "job_12");
        assert_eq!(job_id("12").unwrap(), "job_12");
        for bad in ["", "job_", "job_1x", "../x", "-3"] {
            assert!(matches!(job_id(bad), Err(Failure::Usage(_))), "{bad}");
        }
    }
}
