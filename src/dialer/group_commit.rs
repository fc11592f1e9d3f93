//! Group commit: the dialer's per-call writes, many calls to a transaction.
//!
//! Each call submits its write and waits for it. One task writes: whatever queued up
//! while its previous transaction ran goes into the next one. Alone, a write goes at
//! once; under load, one transaction carries many calls, so the database's per-transaction
//! cost (and, on SQLite, the single writer's round trips) is shared.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};

use crate::domain::TaskStatus;
use crate::store::{AnsweredCall, FinishedAttempt, Store};

/// Most writes in one transaction.
const MAX_BATCH: usize = 256;

/// A kind of write the store can do for many calls at once.
#[async_trait]
pub(super) trait BatchWrite: Send + Sync + 'static {
    type Item: Send + Sync + 'static;
    type Done: Send + 'static;
    /// Writes all of `items` in one transaction; one result per item, in order.
    async fn write(&self, items: &[Self::Item]) -> anyhow::Result<Vec<Self::Done>>;
}

type Request<W> = (<W as BatchWrite>::Item, oneshot::Sender<anyhow::Result<<W as BatchWrite>::Done>>);

pub(super) struct GroupCommit<W: BatchWrite> {
    queue: mpsc::UnboundedSender<Request<W>>,
}

impl<W: BatchWrite> GroupCommit<W> {
    /// Starts the writing task; it ends when the `GroupCommit` is dropped.
    pub(super) fn spawn(writer: W) -> GroupCommit<W> {
        let (queue, requests) = mpsc::unbounded_channel();
        tokio::spawn(write_batches(writer, requests));
        GroupCommit { queue }
    }

    pub(super) async fn submit(&self, item: W::Item) -> anyhow::Result<W::Done> {
        let (done, result) = oneshot::channel();
        self.queue.send((item, done)).map_err(|_| anyhow::anyhow!("the dialer's writer has stopped"))?;
        result.await.map_err(|_| anyhow::anyhow!("the dialer's writer has stopped"))?
    }
}

async fn write_batches<W: BatchWrite>(writer: W, mut requests: mpsc::UnboundedReceiver<Request<W>>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while requests.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (items, replies): (Vec<_>, Vec<_>) = batch.drain(..).unzip();
        match writer.write(&items).await {
            Ok(done) => {
                for (reply, done) in replies.into_iter().zip(done) {
                    let _ = reply.send(Ok(done));
                }
            }
            Err(e) if items.len() == 1 => {
                let _ = replies.into_iter().next().expect("one reply").send(Err(e));
            }
            // One bad write must not fail the others with it: each alone, then.
            Err(_) => {
                for (item, reply) in items.iter().zip(replies) {
                    let done = writer.write(std::slice::from_ref(item)).await;
                    let _ = reply.send(done.map(|mut d| d.remove(0)));
                }
            }
        }
    }
}

/// Records of ended attempts, and their tasks moved on.
pub(super) struct Finishes(pub Arc<dyn Store>);

#[async_trait]
impl BatchWrite for Finishes {
    type Item = FinishedAttempt;
    type Done = Option<TaskStatus>;
    async fn write(&self, items: &[FinishedAttempt]) -> anyhow::Result<Vec<Option<TaskStatus>>> {
        Ok(self.0.finish_attempts(items).await?)
    }
}

/// Notes of calls answered, for whoever takes a call over after a crash. Each is `true`
/// when noted, `false` when its lease is held by another claim.
pub(super) struct Answers {
    pub store: Arc<dyn Store>,
    pub node: String,
}

#[async_trait]
impl BatchWrite for Answers {
    type Item = AnsweredCall;
    type Done = bool;
    async fn write(&self, items: &[AnsweredCall]) -> anyhow::Result<Vec<bool>> {
        let noted: std::collections::HashSet<i64> =
            self.store.mark_answered(&self.node, items).await?.into_iter().collect();
        Ok(items.iter().map(|a| noted.contains(&a.batch_id)).collect())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Doubles numbers; fails any batch holding a negative one. Keeps the batch sizes.
    #[derive(Clone, Default)]
    struct Doubler(Arc<Mutex<Vec<usize>>>);

    #[async_trait]
    impl BatchWrite for Doubler {
        type Item = i64;
        type Done = i64;
        async fn write(&self, items: &[i64]) -> anyhow::Result<Vec<i64>> {
            self.0.lock().unwrap().push(items.len());
            tokio::task::yield_now().await;
            anyhow::ensure!(items.iter().all(|&i| i >= 0), "negative");
            Ok(items.iter().map(|i| i * 2).collect())
        }
    }

    #[tokio::test]
    async fn writes_queued_meanwhile_share_a_batch_and_each_gets_its_own_result() {
        let sizes = Doubler::default();
        let commit = Arc::new(GroupCommit::spawn(sizes.clone()));
        let results = futures::future::join_all((0..100).map(|i| {
            let commit = commit.clone();
            async move { commit.submit(i).await.unwrap() }
        }))
        .await;
        assert_eq!(results, (0..100).map(|i| i * 2).collect::<Vec<_>>());
        let sizes = sizes.0.lock().unwrap().clone();
        assert_eq!(sizes.iter().sum::<usize>(), 100);
        assert!(sizes.len() < 100, "no batching: {sizes:?}");
    }

    #[tokio::test]
    async fn a_failing_write_fails_alone() {
        let commit = Arc::new(GroupCommit::spawn(Doubler::default()));
        let results = futures::future::join_all([3, -1, 5].map(|i| {
            let commit = commit.clone();
            async move { commit.submit(i).await.ok() }
        }))
        .await;
        assert_eq!(results, [Some(6), None, Some(10)]);
    }
}
