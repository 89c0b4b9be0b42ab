//! The `mpanel-stripedouble` binary: flags, the one `listening on` line, webhook delivery
//! configured from the command line, and no secret in what it prints.

mod support;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{KEY, Receiver, WHSEC, signature_is_valid};

const BIN: &str = env!("CARGO_BIN_EXE_mpanel-stripedouble");

#[test]
fn help_and_version_exit_zero_and_bad_usage_exits_two() {
    let help = Command::new(BIN).arg("--help").output().expect("run");
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("--webhook-url"));
    let version = Command::new(BIN).arg("--version").output().expect("run");
    assert!(version.status.success());
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("mpanel-stripedouble "));
    let bad = Command::new(BIN)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--webhook-url",
            "http://127.0.0.1:9/x",
        ])
        .output()
        .expect("run");
    assert_eq!(bad.status.code(), Some(2));
}

#[tokio::test]
async fn the_binary_serves_the_api_and_signs_events_for_its_webhook_flags() {
    let receiver = Receiver::start().await;
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--webhook-url", &receiver.url])
        .env("MPANEL_STRIPEDOUBLE_WEBHOOK_SECRET", WHSEC)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("listening line");
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();

    let http = reqwest::Client::new();
    let created = http
        .post(format!("{base}/v1/customers"))
        .bearer_auth(KEY)
        .form(&[("email", "cli@example.com")])
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("request");
    assert_eq!(created.status(), 200);
    let delivered = receiver.wait_for(1).await;
    assert!(signature_is_valid(
        delivered[0].signature.as_deref().expect("signature"),
        &delivered[0].body,
        WHSEC
    ));

    let pid = child.id().to_string();
    let terminated = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(terminated.success());
    let output = child.wait_with_output().expect("exit");
    assert!(
        output.status.success(),
        "exit after SIGTERM: {:?}",
        output.status
    );
    let printed = format!(
        "{line}{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!printed.contains(WHSEC), "the webhook secret was printed");
    assert!(!printed.contains(KEY), "the API key was printed");
}
