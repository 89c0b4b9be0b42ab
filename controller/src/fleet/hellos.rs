//! Agents' Hellos, written in batches. A fleet dialling back after a controller restart sends
//! thousands of Hellos within seconds; one transaction each would queue them behind the single
//! writer (SQLite) or cost a commit apiece (PostgreSQL), and agents waiting for their Welcome
//! would time out and dial again. The writer takes every Hello already waiting (up to
//! `MAX_BATCH`) into one transaction, so a lone Hello is written at once and a storm is
//! written in a few hundred commits. Each session still waits for its own row to be committed
//! before it is welcomed.

use mpanel_common::ids::ServerId;
use tokio::sync::{mpsc, oneshot};

use crate::store::{AgentHello, DynStore};

/// Hellos in one transaction at most.
const MAX_BATCH: usize = 512;
/// Hellos waiting for the writer at most; a session past it waits for room.
pub(super) const QUEUE: usize = 8192;

/// Whether the agent is enrolled (`Ok(false)`: not, or revoked), or why the write failed.
pub(super) type HelloOutcome = Result<bool, String>;

pub(super) struct PendingHello {
    pub server_id: ServerId,
    pub hello: AgentHello,
    pub done: oneshot::Sender<HelloOutcome>,
}

/// Writes batches until every sender is gone.
pub(super) async fn writer(store: DynStore, mut queue: mpsc::Receiver<PendingHello>) {
    let mut pending = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut pending, MAX_BATCH).await > 0 {
        let (rows, waiters): (Vec<_>, Vec<_>) = pending
            .drain(..)
            .map(|p| ((p.server_id, p.hello), p.done))
            .unzip();
        match store.record_agent_hellos(&rows).await {
            Ok(known) => {
                for (done, known) in waiters.into_iter().zip(known) {
                    let _ = done.send(Ok(known));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, hellos = rows.len(), "could not record agents' Hellos");
                for done in waiters {
                    let _ = done.send(Err(e.to_string()));
                }
            }
        }
    }
}
