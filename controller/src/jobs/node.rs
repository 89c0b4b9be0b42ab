//! Who holds a lease, and taking back at start-up what this controller's previous process left
//! in flight.
//!
//! Every holder name is `<node>#<boot>#<queue>-<n>`: the node is the controller's stable
//! identity (`NODE_ID`, by default the host name and HTTP port, which a restart keeps), the boot
//! is new for every process. A process killed mid-run leaves rows `processing` under its holder
//! names until their leases expire. The restarted process takes them back at once instead,
//! without weakening fencing against a live holder: it does so only while it holds the node's
//! lock file, an exclusive `flock` that the kernel releases when its holder dies. Holding it
//! proves that no other live process on this host runs as this node, so every row held by an
//! earlier boot of this node is abandoned. Without the lock (a second process configured with
//! the same identity, or no stable identity at all), nothing is taken back early and those
//! rows wait for their leases as before.

use std::fs::File;

use nix::fcntl::{Flock, FlockArg};

use crate::store::DynStore;
use crate::store::lease_queue::QueueTable;

/// This process's identity as a lease holder.
#[derive(Debug)]
pub struct Node {
    id: String,
    boot: String,
    /// Held for the life of the process; `None` when another process holds it or the node
    /// has no stable identity.
    lock: Option<Flock<File>>,
}

impl Node {
    /// The node `id` (made safe for holder names) with a fresh boot id, taking the node's lock
    /// when `stable` (the identity survives a restart) and no live process holds it.
    /// `scope` tells apart nodes of different installations on one host (the database URL).
    pub fn start(id: &str, stable: bool, scope: &str) -> Self {
        let id: String = id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '-') {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let boot = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let lock = stable.then(|| lock_node(&id, scope)).flatten();
        Self { id, boot, lock }
    }

    /// The node this controller runs as: `NODE_ID`, or the host name and HTTP port. Port 0 (an
    /// ephemeral port, as tests use) gives no stable identity.
    pub fn for_config(config: &crate::config::Config) -> Self {
        let scope = config.database_url.expose();
        match &config.node_id {
            Some(id) => Self::start(id, true, scope),
            None if config.http_listen.port() == 0 => Self::ephemeral(),
            None => {
                let host = nix::unistd::gethostname()
                    .ok()
                    .and_then(|h| h.into_string().ok())
                    .unwrap_or_else(|| "controller".to_owned());
                Self::start(
                    &format!("{host}:{}", config.http_listen.port()),
                    true,
                    scope,
                )
            }
        }
    }

    /// A node for a process whose identity does not survive it (tests, tools): holder names
    /// are unique, nothing is ever taken back early.
    pub fn ephemeral() -> Self {
        let id = format!("node-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        Self::start(&id, false, "")
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The name worker `n` of `queue` holds its leases under.
    pub fn holder(&self, queue: &QueueTable, n: usize) -> String {
        format!("{}#{}#{}-{n}", self.id, self.boot, queue.name)
    }

    /// The name this process holds a named lease under (`role`: what the lease is for, such as
    /// `scheduler`).
    pub fn lease_holder(&self, role: &str) -> String {
        format!("{}#{}#{role}", self.id, self.boot)
    }

    /// Whether this process holds the node's lock, and so may take back earlier boots' rows.
    pub fn owns_identity(&self) -> bool {
        self.lock.is_some()
    }

    /// Expires at once the leases earlier boots of this node hold in `queues`, so the rows run
    /// again now rather than after their leases. Does nothing without the node's lock.
    pub async fn reclaim_abandoned(&self, store: &DynStore, queues: &[&'static QueueTable]) {
        if !self.owns_identity() {
            return;
        }
        let node_prefix = format!("{}#", self.id);
        let own_prefix = format!("{}#{}#", self.id, self.boot);
        for queue in queues {
            match store
                .reclaim_abandoned(queue, &node_prefix, &own_prefix)
                .await
            {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    queue = queue.name,
                    rows = n,
                    node = %self.id,
                    "took back the rows this node's previous process left in flight"
                ),
                Err(e) => tracing::warn!(
                    queue = queue.name,
                    error = %e,
                    "could not take back earlier rows; they run again after their leases"
                ),
            }
        }
    }
}

/// Takes the node's lock file (in the temporary directory, named by a digest of the node and
/// scope); `None` when another live process holds it.
fn lock_node(id: &str, scope: &str) -> Option<Flock<File>> {
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        format!("{id}\n{scope}").as_bytes(),
    );
    let name = format!(
        "mpanel-controller-{}.lock",
        &hex::encode(digest.as_ref())[..20]
    );
    let path = std::env::temp_dir().join(name);
    let file = match File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot open the node lock; in-flight work of a previous process waits for its leases");
            return None;
        }
    };
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Some(lock),
        Err((_, errno)) => {
            tracing::warn!(node = id, error = %errno, "another live process runs as this node (NODE_ID); nothing is taken back early");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::lease_queue::PROVISIONING;

    #[test]
    fn holder_names_carry_node_boot_and_queue_and_are_safe_for_matching() {
        let node = Node::start("web 1_%:8080", false, "x");
        let holder = node.holder(&PROVISIONING, 3);
        assert!(holder.starts_with("web-1--:8080#"), "{holder}");
        assert!(holder.ends_with("#provisioning-3"), "{holder}");
        assert_ne!(
            holder,
            Node::start("web 1_%:8080", false, "x").holder(&PROVISIONING, 3)
        );
    }

    #[test]
    fn only_one_live_process_holds_a_node_identity() {
        let scope = uuid::Uuid::new_v4().to_string();
        let first = Node::start("host:8080", true, &scope);
        assert!(first.owns_identity());
        let twin = Node::start("host:8080", true, &scope);
        assert!(
            !twin.owns_identity(),
            "a second process with the same identity must not take back the first's rows"
        );
        drop(first);
        let restarted = Node::start("host:8080", true, &scope);
        assert!(
            restarted.owns_identity(),
            "the lock is free once its holder is gone"
        );
        assert!(!Node::start("host:8080", false, &scope).owns_identity());
    }
}
