//! Waking workers when a task is queued. A wake-up is only a hint: the task row is the record,
//! and workers also poll for due tasks (the reconciler), so a lost wake-up delays work by at
//! most one poll interval and loses nothing — not on a restart, not on a Redis flush.
//!
//! Embedded default: an in-process `Notify`. With `REDIS_URL`, every wake-up is also published
//! on a Redis channel that all replicas subscribe to, so a task queued on one replica starts at
//! once on whichever replica has a free worker. Redis being down only degrades to polling.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use redis::AsyncCommands as _;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

#[derive(Clone, Debug, Default)]
pub struct Dispatcher {
    notify: Arc<Notify>,
    /// Set when Redis dispatch runs: wake-ups to publish to the other replicas.
    publish: Option<mpsc::UnboundedSender<()>>,
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
        let channel = format!("{prefix}:provisioning:wake");
        let (tx, rx) = mpsc::unbounded_channel();
        let dispatcher = Self {
            notify: Arc::new(Notify::new()),
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

    /// Tells the workers (here, and on every replica with Redis) that a task may be runnable.
    pub fn wake(&self) {
        self.wake_local();
        if let Some(tx) = &self.publish {
            let _ = tx.send(());
        }
    }

    fn wake_local(&self) {
        wake(&self.notify);
    }

    /// Resolves at the next wake-up (or at once if one is stored).
    pub async fn woken(&self) {
        self.notify.notified().await;
    }
}

fn wake(notify: &Notify) {
    notify.notify_waiters();
    // A worker between its checks would miss `notify_waiters`; one stored permit covers it.
    notify.notify_one();
}

const RECONNECT: Duration = Duration::from_secs(1);

/// Publishes wake-ups, coalescing bursts into one message.
async fn publisher(
    client: redis::Client,
    channel: String,
    mut rx: mpsc::UnboundedReceiver<()>,
    shutdown: CancellationToken,
) {
    let mut conn = None;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            got = rx.recv() => if got.is_none() { return },
        }
        while rx.try_recv().is_ok() {}
        if conn.is_none() {
            conn = client.get_multiplexed_async_connection().await.ok();
        }
        let Some(c) = conn.as_mut() else { continue };
        let sent: redis::RedisResult<usize> = c.publish(&channel, "wake").await;
        if let Err(e) = sent {
            tracing::warn!(error = %e, "Redis publish failed; replicas fall back to polling");
            conn = None;
        }
    }
}

/// Turns wake-ups published by any replica into local ones; reconnects after errors.
async fn subscriber(
    client: redis::Client,
    channel: String,
    notify: Arc<Notify>,
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
                tracing::info!(%channel, "provisioning wake-ups shared through Redis");
                let mut messages = pubsub.on_message();
                loop {
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        msg = messages.next() => match msg {
                            Some(_) => wake(&notify),
                            None => break,
                        },
                    }
                }
                tracing::warn!("Redis subscription ended; reconnecting (polling meanwhile)");
            }
            Err(e) if !warned => {
                warned = true;
                tracing::warn!(error = %e, "Redis unavailable; provisioning falls back to polling until it returns");
            }
            Err(_) => {}
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(RECONNECT) => {}
        }
    }
}
