//! Starting the workspace's binaries as real processes.

use std::path::PathBuf;

/// Path of a binary built from this workspace (`cargo test` builds them before running tests).
/// `CARGO_BIN_EXE_*` is only set for a crate's own binaries, so the target directory is located
/// from the test executable itself.
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current test executable");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executable lives in target/<profile>/deps");
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: cargo does not build other packages' binaries for this crate's tests. \
         Run `cargo build --workspace` (or just this one: `cargo build -p {name}`) first, or \
         the tests through the workspace (`cargo nextest run --workspace`).",
        path.display()
    );
    path
}
