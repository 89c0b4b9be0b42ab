//! Rebuilds the crate when a migration is added: `sqlx::migrate!` embeds the files at compile
//! time but does not track the directory itself.

fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
