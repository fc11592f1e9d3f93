//! A time limit on every call of a store that talks to its database over the network.
//!
//! A PostgreSQL behind a link that silently drops packets neither answers nor closes the
//! connection, and sqlx sets no TCP keepalive or user timeout on its sockets: a query on
//! a connection already open would wait until the kernel gives up, many minutes later.
//! So the limit is the application's, on each call: past `DEADLINE` it fails, the API
//! answers its 500 envelope, /readyz 503, and the dialer pauses before it claims again.
//! The call's future is dropped, and with it the connection it held, so a silent
//! connection is not used again; when the database answers again, new ones are opened.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

use super::{
    AnsweredCall, CallRecord, CampaignCalls, CampaignCount, CampaignRow, CampaignShare, ClaimRules,
    ClaimedCall, DncEntry, EventOutcome, FinishedAttempt, HourStat, OutboxEvent, Paged, Result, StopOutcome,
    Store, StoreError, StoreGauges, TaskRow, TransferNote,
};
use crate::domain::{CallType, NewTask, Page, RecordFilter, TaskFilter, TaskStatus};

/// The longest any one call may take: acquiring a connection (the pool gives up after
/// the same time) and its queries together, so a request that meets a silent database
/// is answered within about this.
pub(super) const DEADLINE: Duration = Duration::from_secs(3);

/// `S` with every call limited to `DEADLINE`, but for the seed (minutes, on purpose).
pub(super) struct Deadline<S>(pub S);

async fn within<T>(call: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(DEADLINE, call).await.unwrap_or(Err(StoreError::TimedOut(DEADLINE)))
}

#[async_trait]
impl<S: Store> Store for Deadline<S> {
    async fn create_tasks(&self, tasks: &[NewTask], now_ms: i64) -> Result<Vec<i64>> {
        within(self.0.create_tasks(tasks, now_ms)).await
    }

    async fn list_tasks(&self, filter: &TaskFilter) -> Result<Paged<TaskRow>> {
        within(self.0.list_tasks(filter)).await
    }

    async fn list_records(&self, filter: &RecordFilter) -> Result<Paged<CallRecord>> {
        within(self.0.list_records(filter)).await
    }

    async fn call_type_of(&self, uuid: &str) -> Result<Option<CallType>> {
        within(self.0.call_type_of(uuid)).await
    }

    async fn record(&self, uuid: &str) -> Result<Option<CallRecord>> {
        within(self.0.record(uuid)).await
    }

    async fn import_records(&self, records: &[CallRecord]) -> Result<u64> {
        within(self.0.import_records(records)).await
    }

    async fn record_call(&self, record: &CallRecord) -> Result<()> {
        within(self.0.record_call(record)).await
    }

    async fn dnc_add(&self, phones: &[String], reason: &str, now_ms: i64) -> Result<u64> {
        within(self.0.dnc_add(phones, reason, now_ms)).await
    }

    async fn dnc_remove(&self, phones: &[String]) -> Result<u64> {
        within(self.0.dnc_remove(phones)).await
    }

    async fn dnc_list(&self, phone: Option<&str>, page: Page) -> Result<Paged<DncEntry>> {
        within(self.0.dnc_list(phone, page)).await
    }

    async fn hourly_stats(&self, call_type: CallType, from_ms: i64, until_ms: i64) -> Result<Vec<HourStat>> {
        within(self.0.hourly_stats(call_type, from_ms, until_ms)).await
    }

    async fn seed(&self, records: u64, tasks: u64, now_ms: i64, utc_offset_secs: i32) -> Result<()> {
        self.0.seed(records, tasks, now_ms, utc_offset_secs).await
    }

    async fn claim_events(&self, now_ms: i64, lease_until_ms: i64, limit: u32) -> Result<Vec<OutboxEvent>> {
        within(self.0.claim_events(now_ms, lease_until_ms, limit)).await
    }

    async fn settle_event(&self, id: i64, outcome: &EventOutcome) -> Result<()> {
        within(self.0.settle_event(id, outcome)).await
    }

    async fn stop_tasks(&self, batch_ids: &[i64], ticket_nos: &[String], now_ms: i64) -> Result<StopOutcome> {
        within(self.0.stop_tasks(batch_ids, ticket_nos, now_ms)).await
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
        within(self.0.claim_due(node, limit, shares, now_ms, lease_until_ms, rules, next_uuid)).await
    }

    async fn claim_orphans(
        &self,
        node: &str,
        own_too: bool,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Vec<ClaimedCall>> {
        within(self.0.claim_orphans(node, own_too, now_ms, lease_until_ms)).await
    }

    async fn mark_answered(&self, node: &str, calls: &[AnsweredCall]) -> Result<Vec<i64>> {
        within(self.0.mark_answered(node, calls)).await
    }

    async fn renew_leases(
        &self,
        node: &str,
        leases: &[(i64, i64)],
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Vec<i64>> {
        within(self.0.renew_leases(node, leases, now_ms, lease_until_ms)).await
    }

    async fn stop_requested(&self, node: &str) -> Result<Vec<i64>> {
        within(self.0.stop_requested(node)).await
    }

    async fn finish_attempts(&self, attempts: &[FinishedAttempt]) -> Result<Vec<Option<TaskStatus>>> {
        within(self.0.finish_attempts(attempts)).await
    }

    async fn note_transfer(&self, node: &str, transfer: &TransferNote) -> Result<bool> {
        within(self.0.note_transfer(node, transfer)).await
    }

    async fn next_due_ms(&self, campaigns: &[String]) -> Result<Option<i64>> {
        within(self.0.next_due_ms(campaigns)).await
    }

    async fn save_campaign(&self, name: &str, settings: &str, now_ms: i64) -> Result<CampaignRow> {
        within(self.0.save_campaign(name, settings, now_ms)).await
    }

    async fn campaigns(&self) -> Result<Vec<CampaignRow>> {
        within(self.0.campaigns()).await
    }

    async fn campaign_counts(&self) -> Result<Vec<CampaignCount>> {
        within(self.0.campaign_counts()).await
    }

    async fn campaign_calls(&self, from_ms: i64, until_ms: i64) -> Result<Vec<CampaignCalls>> {
        within(self.0.campaign_calls(from_ms, until_ms)).await
    }

    async fn pause_campaign(&self, name: &str, paused: bool, now_ms: i64) -> Result<bool> {
        within(self.0.pause_campaign(name, paused, now_ms)).await
    }

    async fn stop_campaign(&self, name: &str, now_ms: i64) -> Result<Option<StopOutcome>> {
        within(self.0.stop_campaign(name, now_ms)).await
    }

    async fn gauges(&self) -> Result<StoreGauges> {
        within(self.0.gauges()).await
    }

    fn watch_changes(&self, created: Arc<Notify>, stopped: Arc<Notify>) {
        self.0.watch_changes(created, stopped)
    }

    async fn max_call_uuid_between(&self, from: &str, to: &str) -> Result<Option<String>> {
        within(self.0.max_call_uuid_between(from, to)).await
    }
}
