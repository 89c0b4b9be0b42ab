//! The `mpanel-agent` binary's log as an operator sees it under systemd, where stderr is the
//! journal (or a file), not a terminal: plain text lines, no colour escape codes.

use std::process::{Command, Stdio};

#[test]
fn a_log_written_to_a_file_has_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "controller = \"https://127.0.0.1:7443\"\nstate_dir = \"{}\"\n",
            dir.path().join("state").display()
        ),
    )
    .unwrap();
    let log_path = dir.path().join("agent.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_mpanel-agent"))
        .arg("--config")
        .arg(&config)
        .arg("run")
        .env("RUST_LOG", "info")
        // Both would switch colour off on their own; the binary must decide without them.
        .env_remove("NO_COLOR")
        .env_remove("TERM")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .status()
        .unwrap();
    // Not enrolled: it logs that it starts, then fails with one line naming the problem.
    assert_eq!(status.code(), Some(1));
    let bytes = std::fs::read(&log_path).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains("mpanel-agent starting"), "{text}");
    assert!(
        text.lines()
            .last()
            .is_some_and(|l| l.starts_with("mpanel-agent: not enrolled:")),
        "{text}"
    );
    assert!(
        !bytes.contains(&0x1b),
        "escape codes in a log file: {text:?}"
    );
}
