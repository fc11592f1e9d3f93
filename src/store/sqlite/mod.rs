//! The SQLite store: one file in WAL mode, read-only connections for reads (see
//! `readers`) and a single writer connection (SQLite has one writer at a time anyway; one
//! connection means no lock upgrades and no SQLITE_BUSY between our own writes).

mod campaigns;
mod claims;
mod outbox;
mod readers;
mod records;
mod seed;
mod tasks;

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::{
    AnsweredCall, CallRecord, CampaignCalls, CampaignCount, CampaignRow, CampaignShare, ClaimRules,
    ClaimedCall, CounterDays, DncEntry, EventOutcome, FinishedAttempt, HourStat, OutboxEvent, Paged, Result,
    StopOutcome, Store, StoreError, StoreGauges, StoreOptions, TaskRow, TransferNote,
};
use crate::domain::{CallType, NewTask, Page, RecordFilter, TaskFilter, TaskStatus};
use readers::Readers;

pub struct SqliteStore {
    /// The database file.
    path: PathBuf,
    readers: Arc<Readers>,
    writer: SqlitePool,
    events: StoreOptions,
    /// The days of `record_talk`.
    days: CounterDays,
}

impl SqliteStore {
    pub async fn connect(url: &str, events: StoreOptions) -> Result<SqliteStore> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .pragma("temp_store", "memory");
        if let Some(dir) = options.get_filename().parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
        }
        // No ping before each use: a connection to a local file does not go stale, and the
        // ping is one more round trip to the connection's thread for every query.
        let pool = || SqlitePoolOptions::new().test_before_acquire(false);
        let writer = pool().max_connections(1).connect_with(options.clone()).await?;
        sqlx::migrate!("migrations/sqlite").run(&writer).await?;
        let days = records::counter_days(&writer, events.days).await?;
        let path = options.get_filename().to_path_buf();
        Ok(SqliteStore { readers: Readers::new(path.clone()), path, writer, events, days })
    }
}

#[async_trait]
impl Store for SqliteStore {
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
        let (tasks_waiting, webhook_backlog, calls_in_progress) = self
            .readers
            .read_blocking(|conn| {
                let count = |sql: &str| conn.prepare_cached(sql)?.query_row([], |row| row.get(0));
                Ok((
                    count("SELECT COALESCE(SUM(tasks), 0) FROM task_counts WHERE status IN ('pending', 'retry_wait')")?,
                    count("SELECT COUNT(*) FROM webhook_outbox")?,
                    count("SELECT COALESCE(SUM(tasks), 0) FROM task_counts WHERE status = 'calling'")?,
                ))
            })
            .await?;
        let (readers_open, readers_idle) = self.readers.connections();
        Ok(StoreGauges {
            tasks_waiting,
            webhook_backlog,
            calls_in_progress,
            pool_open: readers_open + self.writer.size(),
            pool_idle: readers_idle + self.writer.num_idle() as u32,
        })
    }

    async fn max_call_uuid_between(&self, from: &str, to: &str) -> Result<Option<String>> {
        claims::max_call_uuid_between(self, from, to).await
    }
}
