//! Waking workers when a task is queued. A wake-up is only a hint: the task row is the record,
//! and workers also poll for due tasks, so a lost wake-up delays work by at most one poll
//! interval and loses nothing.

use std::sync::Arc;

use tokio::sync::Notify;

/// In-process wake-ups for this controller's workers.
#[derive(Clone, Debug, Default)]
pub struct Dispatcher {
    notify: Arc<Notify>,
}

impl Dispatcher {
    pub fn new() -> Self {
        Self::default()
    }

    /// Tells the workers that a task may be runnable now.
    pub fn wake(&self) {
        self.notify.notify_waiters();
        // A worker between checks would miss `notify_waiters`; one stored permit covers it.
        self.notify.notify_one();
    }

    pub(crate) async fn woken(&self) {
        self.notify.notified().await;
    }
}
