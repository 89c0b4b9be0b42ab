//! The production binaries link no test code: with default features, neither `mpanel-controller`
//! nor `mpanel-agent` depends, directly or through another crate, on the panel simulator, and
//! the controller does not depend on the agent (it reaches agents only over gRPC). Read from
//! `cargo tree -e normal` for each package on its own, i.e. with its own default features, for
//! every target platform; dev- and build-dependencies do not end up in the binary and are left out.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// The workspace packages `package`'s normal dependencies reach, itself included.
fn normal_dependencies(package: &str) -> BTreeSet<String> {
    // The cargo that builds this test, so the query runs with the same toolchain.
    let cargo = env!("CARGO");
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let output = Command::new(cargo)
        .current_dir(&workspace)
        .args([
            "tree",
            "--locked",
            "--offline",
            "--package",
            package,
            "--edges",
            "normal",
            "--target",
            "all",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .output()
        .expect("run cargo tree");
    assert!(
        output.status.success(),
        "cargo tree -p {package} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_controller_links_neither_the_agent_nor_the_simulator() {
    let deps = normal_dependencies("mpanel-controller");
    assert!(
        deps.contains("mpanel-controller") && deps.contains("mpanel-proto"),
        "{deps:?}"
    );
    assert!(!deps.contains("mpanel-panelsim"), "{deps:?}");
    assert!(!deps.contains("mpanel-agent"), "{deps:?}");
    assert!(
        !deps.contains("mpanel-demo") && !deps.contains("mpanel-e2e"),
        "{deps:?}"
    );
}

#[test]
fn the_agent_links_no_simulator() {
    let deps = normal_dependencies("mpanel-agent");
    assert!(
        deps.contains("mpanel-agent") && deps.contains("mpanel-proto"),
        "{deps:?}"
    );
    assert!(!deps.contains("mpanel-panelsim"), "{deps:?}");
    assert!(
        !deps.contains("mpanel-demo") && !deps.contains("mpanel-e2e"),
        "{deps:?}"
    );
}

/// The same query sees such a link where there is one, so the two tests above cannot pass by
/// reading nothing.
#[test]
fn the_query_sees_the_demos_links_to_agent_and_simulator() {
    let deps = normal_dependencies("mpanel-demo");
    for expected in ["mpanel-controller", "mpanel-agent", "mpanel-panelsim"] {
        assert!(deps.contains(expected), "{expected} missing from {deps:?}");
    }
}
