//! The repository: every read and write of tasks and call records goes through `Store`.
//! SQLite is the embedded default; PostgreSQL serves several nodes on one database.
//!
//! By concern: tasks (createTasks' rules, calltask/list), claims (the dialer's claims and
//! attempts), records (records/list), counters (the hour and day counters of records),
//! outbox (webhook events), seed (`callcenter seed`'s rows); the rows both backends
//! decode (rows), the statements built for either (sql), and a time limit on every call
//! to a networked database (deadline). `sqlite/` and `postgres/` hold each backend's SQL,
//! split the same way.

mod campaigns;
mod claims;
mod counters;
mod deadline;
mod outbox;
mod postgres;
mod records;
mod rows;
mod seed;
mod settings;
mod sql;
mod sqlite;
mod tasks;

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Notify;

use crate::domain::{CallType, NewTask, Page, RecordFilter, TaskFilter, TaskStatus};

pub use campaigns::{CampaignCalls, CampaignCount, CampaignRow, CampaignShare};
pub use claims::{AnsweredCall, ClaimRules, ClaimedCall, FinishedAttempt, NextStep};
pub use counters::{CounterDays, DAY_MS, HOUR_MS};
pub use outbox::{CALL_ENDED, CALL_TRANSFERRED, EventOutcome, OutboxEvent, TASK_ENDED, TransferNote};
pub use postgres::PgStore;
pub use rows::{CallRecord, DncEntry, HourStat, Paged, StopOutcome, StoreGauges, TaskRow};
pub use settings::DatabaseSettings;
pub use sqlite::SqliteStore;

pub type Result<T> = std::result::Result<T, StoreError>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database url `{0}` (expected sqlite://… or postgres://…)")]
    UnsupportedUrl(String),
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error("the store is shutting down")]
    ShuttingDown,
    #[error("the database did not answer within {0:?}")]
    TimedOut(std::time::Duration),
}

/// How a store is opened.
#[derive(Clone)]
pub struct StoreOptions {
    /// Write webhook events to the outbox (only when a webhook is configured).
    pub emit_events: bool,
    /// Notified after a transaction that wrote events, to wake the deliverer.
    pub events_written: Arc<Notify>,
    /// The days the counters keep, for a database that has not chosen them yet: the
    /// configured zone's (see `CounterDays`).
    pub days: CounterDays,
}

impl StoreOptions {
    /// Options whose counters keep the days of `zone`, writing no events.
    pub fn in_zone(zone: chrono_tz::Tz) -> StoreOptions {
        StoreOptions {
            emit_events: false,
            events_written: Default::default(),
            days: CounterDays::of_zone(zone),
        }
    }
}

/// The default settings' (`timezone` Asia/Shanghai).
impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions::in_zone(crate::domain::Timezone::default().0)
    }
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates one task per ticket, all or nothing, and returns their batchIds in input
    /// order. A ticket whose ticketNo already has an unfinished task gets that task's
    /// batchId and creates nothing.
    async fn create_tasks(&self, tasks: &[NewTask], now_ms: i64) -> Result<Vec<i64>>;

    async fn list_tasks(&self, filter: &TaskFilter) -> Result<Paged<TaskRow>>;

    async fn list_records(&self, filter: &RecordFilter) -> Result<Paged<CallRecord>>;

    async fn call_type_of(&self, uuid: &str) -> Result<Option<CallType>>;

    async fn record(&self, uuid: &str) -> Result<Option<CallRecord>>;

    /// Stores calls made elsewhere (inbound, manual outbound), all or nothing; a uuid
    /// already stored is skipped. Returns how many were new.
    async fn import_records(&self, records: &[CallRecord]) -> Result<u64>;

    /// Stores a call this node took that has no task (an inbound call) with its counters
    /// and, in the same transaction, its `call.ended` event. A uuid already stored is left
    /// as it is.
    async fn record_call(&self, record: &CallRecord) -> Result<()>;

    /// Adds numbers to the do-not-call list (a number already there keeps its entry);
    /// returns how many were new.
    async fn dnc_add(&self, phones: &[String], reason: &str, now_ms: i64) -> Result<u64>;

    /// Removes numbers from the do-not-call list; returns how many were there.
    async fn dnc_remove(&self, phones: &[String]) -> Result<u64>;

    /// The do-not-call list, newest first, optionally one number.
    async fn dnc_list(&self, phone: Option<&str>, page: Page) -> Result<Paged<DncEntry>>;

    /// Calls of one type per hour and outcome, for hours starting in `[from, until)`.
    async fn hourly_stats(&self, call_type: CallType, from_ms: i64, until_ms: i64) -> Result<Vec<HourStat>>;

    /// Fills the database with `records` realistic call records spread over the 90 days
    /// before `now_ms` (a mix of call types, outcomes, talk times and dialogues; uuids of
    /// node 99, stamped at `utc_offset_secs`) and `tasks` ended tasks, then recounts
    /// `record_stats`. For benchmarks and demos: `callcenter seed`.
    async fn seed(&self, records: u64, tasks: u64, now_ms: i64, utc_offset_secs: i32) -> Result<()>;

    /// Leases up to `limit` webhook events that are due, oldest first.
    async fn claim_events(&self, now_ms: i64, lease_until_ms: i64, limit: u32) -> Result<Vec<OutboxEvent>>;

    /// Settles a leased event: done, retried later, or given up.
    async fn settle_event(&self, id: i64, outcome: &EventOutcome) -> Result<()>;

    /// Stops the tasks named by batchId or ticketNo: waiting ones end as 已停止 at once,
    /// ones with a call in progress are flagged for the dialer to hang up.
    async fn stop_tasks(&self, batch_ids: &[i64], ticket_nos: &[String], now_ms: i64) -> Result<StopOutcome>;

    // ---- the dialer's side ----

    /// Claims up to `limit` due tasks of the campaigns `shares` names (in their order of
    /// preference, see `CampaignShare`; a paused campaign's are never claimed) for `node`
    /// with a lease until `lease_until_ms`, counting the attempt and giving it a uuid from
    /// `next_uuid`. On the way, a task for a do-not-call number ends as 已拦截, and one
    /// whose number reached its daily cap waits for tomorrow.
    #[allow(clippy::too_many_arguments)]
    async fn claim_due(
        &self,
        node: &str,
        limit: u32,
        shares: &[CampaignShare],
        now_ms: i64,
        lease_until_ms: i64,
        rules: &ClaimRules,
        next_uuid: &(dyn Fn() -> String + Send + Sync),
    ) -> Result<Vec<ClaimedCall>>;

    /// Takes over calls whose node died: leases expired before `now_ms`, or (at start,
    /// `own_too`) any lease held by `node` itself from an earlier run.
    async fn claim_orphans(
        &self,
        node: &str,
        own_too: bool,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Vec<ClaimedCall>>;

    /// Notes that these calls in progress of `node` were answered, each only while its
    /// lease (node and generation) still holds. Returns the batchIds noted.
    async fn mark_answered(&self, node: &str, calls: &[AnsweredCall]) -> Result<Vec<i64>>;

    /// Extends the leases of `node`'s calls in progress, given as (batchId, lease
    /// generation), each only while it still holds; a lease is never shortened. Returns
    /// the batchIds renewed: a call missing from it has lost its lease.
    async fn renew_leases(
        &self,
        node: &str,
        leases: &[(i64, i64)],
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Vec<i64>>;

    /// `node`'s calls in progress whose task was asked to stop.
    async fn stop_requested(&self, node: &str) -> Result<Vec<i64>>;

    /// Writes the attempts' records and moves their tasks on, all in one transaction; an
    /// attempt is written (task, record, counts, outbox) only while its node still holds
    /// the lease with the claim's generation, so a late node never overwrites what the
    /// node that took its call over wrote. Returns each task's new status, in input order
    /// (`None`: the lease was lost and nothing was written for that attempt).
    async fn finish_attempts(&self, attempts: &[FinishedAttempt]) -> Result<Vec<Option<TaskStatus>>>;

    /// Writes the `call.transferred` event of a call `node` handed to a person who
    /// answered, only while its lease (node and generation) still holds. Whether it was
    /// written (true also when no webhook takes events).
    async fn note_transfer(&self, node: &str, transfer: &TransferNote) -> Result<bool>;

    /// When the next waiting task of these campaigns is due, if any.
    async fn next_due_ms(&self, campaigns: &[String]) -> Result<Option<i64>>;

    // ---- campaigns ----

    /// Creates the campaign `name` with `settings` (JSON), or replaces the settings of the
    /// one that exists; a pause stays as it is.
    async fn save_campaign(&self, name: &str, settings: &str, now_ms: i64) -> Result<CampaignRow>;

    /// Every campaign, by name.
    async fn campaigns(&self) -> Result<Vec<CampaignRow>>;

    /// Each campaign's tasks by status (from the counters, not the rows).
    async fn campaign_counts(&self) -> Result<Vec<CampaignCount>>;

    /// Each campaign's AI calls started in `[from_ms, until_ms)`, by hangup cause.
    async fn campaign_calls(&self, from_ms: i64, until_ms: i64) -> Result<Vec<CampaignCalls>>;

    /// Pauses or resumes a campaign; every node's next claim sees it. `false`: no such
    /// campaign.
    async fn pause_campaign(&self, name: &str, paused: bool, now_ms: i64) -> Result<bool>;

    /// Stops every unfinished task of a campaign, as `stop_tasks` does; `None`: no such
    /// campaign.
    async fn stop_campaign(&self, name: &str, now_ms: i64) -> Result<Option<StopOutcome>>;

    /// Numbers for /metrics, read when it is scraped.
    async fn gauges(&self) -> Result<StoreGauges>;

    /// For stores shared by several nodes: notifies `created` when any node creates
    /// tasks and `stopped` when any node stops tasks, so that every dialer reacts at once.
    /// A store with one process needs nothing: the API notifies its own dialer directly.
    fn watch_changes(&self, _created: Arc<Notify>, _stopped: Arc<Notify>) {}

    /// The largest call uuid in `[from, to]` (records and calls in progress), so a
    /// restarted node can continue its counter.
    async fn max_call_uuid_between(&self, from: &str, to: &str) -> Result<Option<String>>;
}

/// The database url as logs may show it: `postgres://user:***@host/db`.
pub fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    match rest.split_once('@') {
        Some((user_info, host)) if user_info.contains(':') => {
            let user = user_info.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_string(),
    }
}

/// Opens the store that `url` names, creating and migrating it as needed.
pub async fn connect(url: &str, options: StoreOptions) -> Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url, options).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(deadline::Deadline(PgStore::connect(url, options).await?)))
    } else {
        Err(StoreError::UnsupportedUrl(url.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_database_urls_are_not_shown() {
        assert_eq!(redact_password("postgres://cc:s3cret@db:5432/cc"), "postgres://cc:***@db:5432/cc");
        assert_eq!(redact_password("postgres://cc@db/cc"), "postgres://cc@db/cc");
        assert_eq!(redact_password("sqlite://data/callcenter.db"), "sqlite://data/callcenter.db");
    }
}
