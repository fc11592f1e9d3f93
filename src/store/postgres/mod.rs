//! The PostgreSQL store, for several nodes on one database.
//!
//! Same semantics and same answers as the SQLite store; what differs is how nodes share
//! the work:
//! - the dialer claims with `FOR UPDATE SKIP LOCKED`, so two nodes never take one task,
//!   and holds it by a lease (`locked_by`, `locked_until_ms`) as on SQLite;
//! - `create_tasks` and `stop_tasks` send `NOTIFY` in their transaction, and
//!   `watch_changes` LISTENs, so every node's dialer reacts at once (polling stays as
//!   the fallback);
//! - task creation is serialised by a transaction-level advisory lock, which keeps
//!   batchIds gapless (a retried ticket burns no sequence value) and idempotency by
//!   ticketNo free of races between nodes.
//!
//! When the database goes away, a query fails after at most `ACQUIRE_TIMEOUT` (the API
//! answers 500, the dialer backs off and retries); the pool and the listener reconnect
//! by themselves when it is back. A claim whose COMMIT got no answer may have gone
//! through: the next claim takes it back (see `claims`).

mod background;
mod campaigns;
mod claims;
mod outbox;
mod readers;
mod records;
mod seed;
mod tasks;

use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPoolOptions};
use sqlx::{Arguments, Connection, PgPool};
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use super::sql::{Arg, Sql};
use super::{
    AnsweredCall, CallRecord, CampaignCalls, CampaignCount, CampaignRow, CampaignShare, ClaimRules,
    ClaimedCall, CounterDays, DncEntry, EventOutcome, FinishedAttempt, HourStat, OutboxEvent, Paged, Result,
    StopOutcome, Store, StoreGauges, StoreOptions, TaskRow, TransferNote,
};
use crate::domain::{CallType, NewTask, Page, RecordFilter, TaskFilter, TaskStatus};
use readers::Readers;

/// Connections per node for queries (the listener has its own). The dialer's writes are
/// short transactions, so a few connections serve hundreds of concurrent calls.
const MAX_CONNECTIONS: u32 = 10;
/// How long a query waits for a connection, connecting included, before it fails: when
/// the database is away, the API answers 500 after this rather than hang.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// A pooled connection idle this long is pinged before its next use.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

pub struct PgStore {
    /// Transactions and the dialer's statements.
    pool: PgPool,
    /// The API's reads.
    readers: Readers,
    options: PgConnectOptions,
    /// Tasks of its own (folding task counts, the LISTENs of `watch_changes`), ended
    /// with the store.
    background: Mutex<Vec<AbortHandle>>,
    events: StoreOptions,
    /// Claims whose COMMIT got no answer (see `claims`).
    unsure: Mutex<Vec<claims::UnsureClaim>>,
    /// The days of `record_talk`.
    days: CounterDays,
}

impl PgStore {
    /// Connects and applies the migrations. sqlx's migrator holds a session advisory lock
    /// while it runs, so nodes starting together on a fresh database apply them once.
    pub async fn connect(url: &str, events: StoreOptions) -> Result<PgStore> {
        // Generic plans: each statement's text already names its filter's columns, so a
        // plan per parameter value buys little, and planning the records/list query cost
        // PostgreSQL more than running it (bench/RESULTS.md).
        // The statement it does help (stopTasks) asks for its own plans.
        let options = PgConnectOptions::from_str(url)?
            .application_name("callcenter")
            .options([("plan_cache_mode", "force_generic_plan")]);
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .min_connections(0)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // sqlx pings a connection when it is released; pinging it again before its next
            // query is one more round trip per request (and per PostgreSQL process wake-up).
            // Only a connection idle for a while may have been cut (a database restart).
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_IF_IDLE_FOR {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .idle_timeout(Duration::from_secs(300))
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        let days = records::counter_days(&pool, events.days).await?;
        let fold = tokio::spawn(background::fold_task_counts_forever(pool.clone(), days));
        Ok(PgStore {
            pool,
            readers: Readers::new(options.clone(), MAX_CONNECTIONS),
            options,
            background: Mutex::new(vec![fold.abort_handle()]),
            events,
            unsure: Mutex::new(Vec::new()),
            days,
        })
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        let background = self.background.get_mut().unwrap_or_else(|e| e.into_inner());
        for task in background.drain(..) {
            task.abort();
        }
    }
}

/// PostgreSQL text cannot hold NUL, so no stored value contains one: a filter that does
/// matches nothing (SQLite answers the same), rather than failing the query.
fn has_nul(s: &Option<String>) -> bool {
    s.as_deref().is_some_and(|s| s.contains('\0'))
}

/// `sql`'s arguments, encoded for sqlx.
fn arguments(sql: &Sql) -> PgArguments {
    let mut args = PgArguments::default();
    for arg in &sql.args {
        match arg {
            Arg::Int(v) => args.add(*v),
            Arg::Text(v) => args.add(v.as_str()),
        }
        .expect("integers and text always encode");
    }
    args
}

/// The types of `RECORD_COLUMNS`, for reading records from a bound JSON list.
const RECORD_TYPES: &str = "uuid text, call_type text, batch_id bigint, telephone text, extnum text, \
     callout_ms bigint, answered_ms bigint, ended_ms bigint, time_len bigint, hangup_cause text, wav_path text, \
     wav_url text, dialogue text, intent text, turn_latency_ms bigint, batch_name text";

#[async_trait]
impl Store for PgStore {
    async fn create_tasks(&self, new: &[NewTask], now_ms: i64) -> Result<Vec<i64>> {
        tasks::create(self, new, now_ms).await
    }

    async fn list_tasks(&self, filter: &TaskFilter) -> Result<Paged<TaskRow>> {
        tasks::list(self, filter).await
    }

    async fn list_records(&self, filter: &RecordFilter) -> Result<Paged<CallRecord>> {
        records::list(self, filter).await
    }

    async fn call_type_of(&self, uuid: &str) -> Result<Option<CallType>> {
        records::call_type_of(self, uuid).await
    }

    async fn record(&self, uuid: &str) -> Result<Option<CallRecord>> {
        records::get(self, uuid).await
    }

    async fn import_records(&self, new: &[CallRecord]) -> Result<u64> {
        records::import(self, new, false).await
    }

    async fn record_call(&self, record: &CallRecord) -> Result<()> {
        records::import(self, std::slice::from_ref(record), true).await.map(|_| ())
    }

    async fn dnc_add(&self, phones: &[String], reason: &str, now_ms: i64) -> Result<u64> {
        records::dnc_add(self, phones, reason, now_ms).await
    }

    async fn dnc_remove(&self, phones: &[String]) -> Result<u64> {
        records::dnc_remove(self, phones).await
    }

    async fn dnc_list(&self, phone: Option<&str>, page: Page) -> Result<Paged<DncEntry>> {
        records::dnc_list(self, phone, page).await
    }

    async fn hourly_stats(&self, call_type: CallType, from_ms: i64, until_ms: i64) -> Result<Vec<HourStat>> {
        records::hourly_stats(self, call_type, from_ms, until_ms).await
    }

    async fn seed(&self, records: u64, tasks: u64, now_ms: i64, utc_offset_secs: i32) -> Result<()> {
        seed::load(self, records, tasks, now_ms, utc_offset_secs).await
    }

    async fn claim_events(&self, now_ms: i64, lease_until_ms: i64, limit: u32) -> Result<Vec<OutboxEvent>> {
        outbox::claim(self, now_ms, lease_until_ms, limit).await
    }

    async fn settle_event(&self, id: i64, outcome: &EventOutcome) -> Result<()> {
        outbox::settle(self, id, outcome).await
    }

    async fn stop_tasks(&self, batch_ids: &[i64], ticket_nos: &[String], now_ms: i64) -> Result<StopOutcome> {
        tasks::stop(self, batch_ids, ticket_nos, now_ms).await
    }

    async fn claim_due(
        &self,
        node: &str,
        limit: u32,
        shares: &[CampaignShare],
        now_ms: i64,
        lease_until_ms: i64,
        rules: &ClaimRules,
        next_uuid: &(dyn Fn() -> String + Send + Sync),
    ) -> Result<Vec<ClaimedCall>> {
        claims::claim_due(self, node, limit, shares, now_ms, lease_until_ms, rules, next_uuid).await
    }

    async fn claim_orphans(
        &self,
        node: &str,
        own_too: bool,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Vec<ClaimedCall>> {
        claims::claim_orphans(self, node, own_too, now_ms, lease_until_ms).await
    }

    async fn mark_answered(&self, node: &str, calls: &[AnsweredCall]) -> Result<Vec<i64>> {
        claims::mark_answered(self, node, calls).await
    }

    async fn renew_leases(
        &self,
        node: &str,
        leases: &[(i64, i64)],
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Vec<i64>> {
        claims::renew_leases(self, node, leases, now_ms, lease_until_ms).await
    }

    async fn stop_requested(&self, node: &str) -> Result<Vec<i64>> {
        claims::stop_requested(self, node).await
    }

    async fn finish_attempts(&self, attempts: &[FinishedAttempt]) -> Result<Vec<Option<TaskStatus>>> {
        claims::finish_attempts(self, attempts).await
    }

    async fn note_transfer(&self, node: &str, transfer: &TransferNote) -> Result<bool> {
        claims::note_transfer(self, node, transfer).await
    }

    async fn next_due_ms(&self, campaigns: &[String]) -> Result<Option<i64>> {
        campaigns::next_due_ms(self, campaigns).await
    }

    async fn save_campaign(&self, name: &str, settings: &str, now_ms: i64) -> Result<CampaignRow> {
        campaigns::save(self, name, settings, now_ms).await
    }

    async fn campaigns(&self) -> Result<Vec<CampaignRow>> {
        campaigns::all(self).await
    }

    async fn campaign_counts(&self) -> Result<Vec<CampaignCount>> {
        campaigns::counts(self).await
    }

    async fn campaign_calls(&self, from_ms: i64, until_ms: i64) -> Result<Vec<CampaignCalls>> {
        campaigns::calls(self, from_ms, until_ms).await
    }

    async fn pause_campaign(&self, name: &str, paused: bool, now_ms: i64) -> Result<bool> {
        campaigns::pause(self, name, paused, now_ms).await
    }

    async fn stop_campaign(&self, name: &str, now_ms: i64) -> Result<Option<StopOutcome>> {
        campaigns::stop(self, name, now_ms).await
    }

    async fn gauges(&self) -> Result<StoreGauges> {
        let mut conn = self.readers.get().await?;
        let (tasks_waiting, webhook_backlog, calls_in_progress): (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT CAST(COALESCE(SUM(tasks), 0) AS BIGINT) FROM task_counts
                     WHERE status IN ('pending', 'retry_wait')),
                    (SELECT COUNT(*) FROM webhook_outbox),
                    (SELECT CAST(COALESCE(SUM(tasks), 0) AS BIGINT) FROM task_counts WHERE status = 'calling')",
        )
        .fetch_one(&mut *conn)
        .await?;
        conn.done();
        let (readers_open, readers_idle) = self.readers.connections();
        Ok(StoreGauges {
            tasks_waiting,
            webhook_backlog,
            calls_in_progress,
            pool_open: self.pool.size() + readers_open,
            pool_idle: self.pool.num_idle() as u32 + readers_idle,
        })
    }

    fn watch_changes(&self, created: Arc<Notify>, stopped: Arc<Notify>) {
        let task = tokio::spawn(background::listen_forever(self.options.clone(), created, stopped));
        self.background.lock().unwrap_or_else(|e| e.into_inner()).push(task.abort_handle());
    }

    async fn max_call_uuid_between(&self, from: &str, to: &str) -> Result<Option<String>> {
        claims::max_call_uuid_between(self, from, to).await
    }
}
