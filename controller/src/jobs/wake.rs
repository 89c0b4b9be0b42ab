//! Waking workers when a row is queued. A wake-up is only a hint: the row is the record, and
//! workers also poll for due rows (the reconciler), so a lost wake-up delays work by at most one
//! poll interval and loses nothing — not on a restart, not on a Redis flush.
//!
//! Embedded default: an in-process `Notify` per queue. With `REDIS_URL`, every wake-up is also
//! published on one Redis channel (the message names the queue) that all replicas subscribe to,
//! so a row queued on one replica starts at once on whichever replica has a free worker. Redis
//! being down only degrades to polling.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use redis::AsyncCommands as _;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::store::lease_queue::{PROVISIONING, QUEUES, QueueTable};

/// One `Notify` per queue table, in `QUEUES` order.
type Notifiers = Arc<[Arc<Notify>; QUEUES.len()]>;

#[derive(Clone, Debug, Default)]
pub struct Dispatcher {
    notify: Notifiers,
    /// Set when Redis dispatch runs: wake-ups (queue names) to publish to the other replicas.
    publish: Option<mpsc::UnboundedSender<&'static str>>,
}

fn index_of(queue: &QueueTable) -> usize {
    QUEUES
        .iter()
        .position(|q| *q == queue)
        .expect("every queue table is listed in QUEUES")
}

impl Dispatcher {
    /// In-process wake-ups only (the embedded default).
    pub fn new() -> Self {
        Self::default()
    }

    /// Wake-ups shared through Redis by every replica using the same `prefix`. Connections are
    /// made (and re-made) in the background until `shutdown`.
    pub fn with_redis(
        url: &str,
        prefix: &str,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Self> {
        let client = redis::Client::open(url).map_err(|e| anyhow::anyhow!("REDIS_URL: {e}"))?;
        let channel = format!("{prefix}:jobs:wake");
        let (tx, rx) = mpsc::unbounded_channel();
        let dispatcher = Self {
            notify: Notifiers::default(),
            publish: Some(tx),
        };
        tokio::spawn(publisher(
            client.clone(),
            channel.clone(),
            rx,
            shutdown.clone(),
        ));
        tokio::spawn(subscriber(
            client,
            channel,
            dispatcher.notify.clone(),
            shutdown.clone(),
        ));
        Ok(dispatcher)
    }

    /// Tells the provisioning workers (here, and on every replica with Redis) that a task may
    /// be runnable.
    pub fn wake(&self) {
        self.wake_queue(&PROVISIONING);
    }

    /// Tells the workers of `queue` (here, and on every replica with Redis) that a row may be
    /// runnable.
    pub fn wake_queue(&self, queue: &'static QueueTable) {
        wake(&self.notify[index_of(queue)]);
        if let Some(tx) = &self.publish {
            let _ = tx.send(queue.name);
        }
    }

    /// Wakes one more local worker of `queue`: what a worker does after it claimed a row, since
    /// where there was one row there may be more.
    pub fn pass_on(&self, queue: &'static QueueTable) {
        wake(&self.notify[index_of(queue)]);
    }

    /// Resolves at the next wake-up of `queue` (or at once if one is stored).
    pub async fn woken(&self, queue: &QueueTable) {
        self.notify[index_of(queue)].notified().await;
    }
}

/// Wakes one idle worker, or leaves a permit for the next one to go idle. Only one: waking
/// every worker for one new row sends all but one of them to claim nothing. A worker that claims
/// a row passes the wake-up on (`Dispatcher::pass_on`), so a burst still reaches every worker.
fn wake(notify: &Notify) {
    notify.notify_one();
}

const RECONNECT: Duration = Duration::from_secs(1);

/// Publishes wake-ups, coalescing a burst into one message per queue.
async fn publisher(
    client: redis::Client,
    channel: String,
    mut rx: mpsc::UnboundedReceiver<&'static str>,
    shutdown: CancellationToken,
) {
    let mut conn = None;
    loop {
        let first = tokio::select! {
            () = shutdown.cancelled() => return,
            got = rx.recv() => match got { Some(q) => q, None => return },
        };
        let mut queues = vec![first];
        while let Ok(q) = rx.try_recv() {
            if !queues.contains(&q) {
                queues.push(q);
            }
        }
        if conn.is_none() {
            conn = client.get_multiplexed_async_connection().await.ok();
        }
        let Some(c) = conn.as_mut() else { continue };
        for queue in queues {
            let sent: redis::RedisResult<usize> = c.publish(&channel, queue).await;
            if let Err(e) = sent {
                tracing::warn!(error = %e, "Redis publish failed; replicas fall back to polling");
                conn = None;
                break;
            }
        }
    }
}

/// Turns wake-ups published by any replica into local ones; reconnects after errors.
async fn subscriber(
    client: redis::Client,
    channel: String,
    notify: Notifiers,
    shutdown: CancellationToken,
) {
    let mut warned = false;
    while !shutdown.is_cancelled() {
        let subscribed = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        }
        .await;
        match subscribed {
            Ok(mut pubsub) => {
                warned = false;
                tracing::info!(%channel, "job wake-ups shared through Redis");
                let mut messages = pubsub.on_message();
                loop {
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        msg = messages.next() => match msg {
                            Some(msg) => wake_named(&notify, msg.get_payload_bytes()),
                            None => break,
                        },
                    }
                }
                tracing::warn!("Redis subscription ended; reconnecting (polling meanwhile)");
            }
            Err(e) if !warned => {
                warned = true;
                tracing::warn!(error = %e, "Redis unavailable; workers fall back to polling until it returns");
            }
            Err(_) => {}
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(RECONNECT) => {}
        }
    }
}

/// A wake-up from another replica; an unknown name (a newer replica's queue) wakes nothing.
fn wake_named(notify: &Notifiers, name: &[u8]) {
    if let Some(i) = QUEUES.iter().position(|q| q.name.as_bytes() == name) {
        wake(&notify[i]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::lease_queue::EMAIL;

    #[tokio::test]
    async fn a_wake_up_wakes_one_idle_worker_and_passing_it_on_wakes_the_next() {
        let d = Dispatcher::new();
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let d = d.clone();
                tokio::spawn(async move { d.woken(&PROVISIONING).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        d.wake();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let woken = waiters.iter().filter(|w| w.is_finished()).count();
        assert_eq!(woken, 1, "one row, one worker");
        d.pass_on(&PROVISIONING);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(waiters.iter().filter(|w| w.is_finished()).count(), 2);
        for w in waiters {
            w.abort();
        }
    }

    #[tokio::test]
    async fn a_wake_up_reaches_only_its_own_queue() {
        let d = Dispatcher::new();
        d.wake_queue(&EMAIL);
        let email = tokio::time::timeout(Duration::from_millis(200), d.woken(&EMAIL)).await;
        assert!(email.is_ok(), "the email queue was woken");
        let tasks = tokio::time::timeout(Duration::from_millis(50), d.woken(&PROVISIONING)).await;
        assert!(tasks.is_err(), "the provisioning queue was not");
    }

    #[tokio::test]
    async fn a_named_wake_up_from_redis_wakes_that_queue_and_unknown_names_nothing() {
        let d = Dispatcher::new();
        wake_named(&d.notify, b"future-queue");
        assert!(
            tokio::time::timeout(Duration::from_millis(50), d.woken(&EMAIL))
                .await
                .is_err()
        );
        wake_named(&d.notify, b"email");
        assert!(
            tokio::time::timeout(Duration::from_millis(200), d.woken(&EMAIL))
                .await
                .is_ok()
        );
    }
}
