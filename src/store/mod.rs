//! The repository: every read and write of tasks and call records goes through `Store`.
//! SQLite is the embedded default; PostgreSQL serves several nodes on one database.

mod deadline;
mod postgres;
mod rows;
mod seed;
mod settings;
mod sql;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Notify;

use serde::{Deserialize, Serialize};

use sql::{Dialect, Sql};

use crate::domain::{CallType, HangupCause, NewTask, Page, RecordFilter, TaskFilter, TaskStatus, Turn};

pub use postgres::PgStore;
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

/// A task as calltask/list shows it. Serialized as a webhook event's snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRow {
    pub batch_id: i64,
    pub task_type: i64,
    pub created_ms: i64,
    pub stopped_ms: Option<i64>,
    pub connected: bool,
    pub ticket_no: String,
    pub phone: String,
    pub username: String,
    pub ticket_type: String,
    pub ticket_content: String,
    pub status: TaskStatus,
    pub call_count: i64,
    pub last_hangup_cause: Option<String>,
}

/// An ended call as records/list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    pub uuid: String,
    pub call_type: CallType,
    pub batch_id: Option<i64>,
    pub telephone: String,
    pub extnum: Option<String>,
    pub callout_ms: i64,
    pub answered_ms: Option<i64>,
    pub ended_ms: i64,
    pub time_len: i64,
    pub hangup_cause: String,
    /// Relative to `recordings.dir`; empty when there is no recording here.
    pub wav_path: String,
    /// A recording kept elsewhere (imported calls); used when not empty.
    pub wav_url: String,
    /// The dialogue as stored JSON (`[{role, content}]`), passed through untouched.
    pub dialogue_json: String,
    /// The outcome of an answered AI call; empty otherwise.
    pub intent: String,
}

/// The width of a `record_stats` bucket.
pub const HOUR_MS: i64 = 3_600_000;

/// The width of a `record_days` bucket (UTC days).
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// The whole buckets of `width` inside `[from, until)` (open ends unbounded) as
/// `[lo, hi)`, if any.
fn whole_buckets(from: Option<i64>, until: Option<i64>, width: i64) -> Option<(i64, i64)> {
    let lo = from.map_or(i64::MIN, |f| f.div_euclid(width) * width + if f % width == 0 { 0 } else { width });
    let hi = until.map_or(i64::MAX, |u| u.div_euclid(width) * width);
    (lo < hi).then_some((lo, hi))
}

/// An empty `[lo, hi)`: a part with nothing to add.
const NOTHING: (i64, i64) = (0, 0);

/// How a records/list total of one call type over `[from, until)` is summed: whole days
/// from `record_days`, the whole hours around them from `record_stats`, and only the rows
/// of the partial hours at the edges counted one by one. Each part is a `[lo, hi)`,
/// empty ones `(0, 0)`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TotalPlan {
    pub days: (i64, i64),
    pub hours: [(i64, i64); 2],
    pub rows: [(i64, i64); 2],
}

impl TotalPlan {
    /// The plan's non-empty parts as `(SELECT <aggregate> FROM <table> WHERE call_type = ?
    /// AND <column> >= lo AND <column> < hi)`: the aggregate and table, the column, the
    /// range. Portable SQL; each backend binds them. Empty parts are left out of the
    /// statement rather than bound empty: PostgreSQL's generic plan still runs each one
    /// (bench/RESULTS.md).
    pub(crate) fn parts(&self) -> impl Iterator<Item = (&'static str, &'static str, (i64, i64))> {
        const DAYS: &str = "CAST(COALESCE(SUM(calls), 0) AS BIGINT) FROM record_days";
        const HOURS: &str = "CAST(COALESCE(SUM(calls), 0) AS BIGINT) FROM record_stats";
        const ROWS: &str = "COUNT(*) FROM call_records";
        [
            (DAYS, "day_ms", self.days),
            (HOURS, "hour_ms", self.hours[0]),
            (HOURS, "hour_ms", self.hours[1]),
            (ROWS, "callout_ms", self.rows[0]),
            (ROWS, "callout_ms", self.rows[1]),
        ]
        .into_iter()
        .filter(|(_, _, (lo, hi))| lo < hi)
    }
}

pub(crate) fn total_plan(from: Option<i64>, until: Option<i64>) -> TotalPlan {
    let span = |lo: i64, hi: i64| if lo < hi { (lo, hi) } else { NOTHING };
    let Some((lo_h, hi_h)) = whole_buckets(from, until, HOUR_MS) else {
        // No whole hour inside: both ends are set, and every row is counted.
        let rows = span(from.unwrap_or(0), until.unwrap_or(0));
        return TotalPlan { days: NOTHING, hours: [NOTHING; 2], rows: [rows, NOTHING] };
    };
    let rows = [from.map_or(NOTHING, |f| span(f, lo_h)), until.map_or(NOTHING, |u| span(hi_h, u))];
    // Open ends stay open (and unrounded, so nothing overflows).
    let open = |ms: i64, end: i64| (ms != end).then_some(ms);
    match whole_buckets(open(lo_h, i64::MIN), open(hi_h, i64::MAX), DAY_MS) {
        Some((lo_d, hi_d)) => {
            TotalPlan { days: (lo_d, hi_d), hours: [span(lo_h, lo_d), span(hi_d, hi_h)], rows }
        }
        None => TotalPlan { days: NOTHING, hours: [(lo_h, hi_h), NOTHING], rows },
    }
}

/// records/list pages that skip at least this many rows seek by the hour counters.
const SEEK_OFFSET: i64 = 1000;

/// records/list's query: the page's records, each with the list's total beside it (the
/// database computes it once), so that a request is one query and one round trip. With a
/// `Seek`, the page is read below its bound, after its rows to skip there.
pub(crate) fn records_page(dialect: Dialect, f: &RecordFilter, seek: Option<Seek>) -> Sql {
    let mut q = Sql::new(dialect, format!("SELECT {}, ", rows::RECORD_COLUMNS));
    push_record_total(&mut q, f);
    let offset = seek.map_or(f.page.offset(), |s| s.offset);
    // A page that skips rows takes its uuids from the index alone, then their rows: the
    // rows it skips cost an index step each, not a fetch of the whole record each
    // (bench/RESULTS.md).
    let deep = offset > 0;
    q.push(if deep {
        " AS total FROM call_records WHERE uuid IN (SELECT uuid FROM call_records"
    } else {
        " AS total FROM call_records"
    });
    // The seek's bound replaces the range's top (it is never above it): as a second
    // upper bound, the planner would walk the index from the first and filter.
    let until = seek.map(|s| s.until_ms).or(f.callout_until_ms);
    push_record_filter(&mut q, &RecordFilter { callout_until_ms: until, ..f.clone() });
    q.push(" ORDER BY callout_ms DESC, uuid DESC");
    push_page(&mut q, f.page.size, offset);
    if deep {
        q.push(") ORDER BY callout_ms DESC, uuid DESC");
    }
    q
}

/// records/list's total alone: for a page past the end (a page that has rows carries it).
pub(crate) fn records_total(dialect: Dialect, f: &RecordFilter) -> Sql {
    let mut q = Sql::new(dialect, "SELECT ");
    push_record_total(&mut q, f);
    q
}

/// Whether records/list's query reads a number of rows bounded by its page: its total
/// sums counters and its deep pages seek by them, or it finds the few rows of an exact
/// uuid, telephone or extension and skips few of them. Other pages count or skip rows in
/// proportion to the table.
pub(crate) fn records_read_is_bounded(f: &RecordFilter) -> bool {
    countable_by_buckets(f) || (exact_lookup(f) && f.page.offset() <= BOUNDED_OFFSET)
}

/// The most rows a bounded read skips (page 1,000 of 10; each an index step).
const BOUNDED_OFFSET: i64 = 10_000;

/// Where a deep page starts: below `until_ms`, after `offset` rows there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Seek {
    pub until_ms: i64,
    pub offset: i64,
}

/// For a deep page of a filter of call type and time alone: the calls of each whole hour
/// of its range, newest first (`hour_ms`, `calls`), each row also carrying `above`, the
/// rows above the newest whole hour (the partial hour at the top of the range). The page
/// then skips whole hours by their counters instead of row by row (page 1,000 of 10 at 10M
/// records: 10,000 index steps become three hours' counters and a few hundred steps).
pub(crate) fn records_seek_hours(dialect: Dialect, f: &RecordFilter) -> Option<Sql> {
    if !countable_by_buckets(f) || f.page.offset() < SEEK_OFFSET {
        return None;
    }
    let (lo, hi) = whole_buckets(f.callout_from_ms, f.callout_until_ms, HOUR_MS)?;
    let mut q = Sql::new(
        dialect,
        "SELECT hour_ms, CAST(SUM(calls) AS BIGINT), (SELECT COUNT(*) FROM call_records WHERE call_type = ",
    );
    q.bind(f.call_type.code()).push(" AND callout_ms >= ").bind(hi);
    q.push(" AND callout_ms < ").bind(f.callout_until_ms.unwrap_or(hi));
    q.push(") FROM record_stats WHERE call_type = ").bind(f.call_type.code());
    q.push(" AND hour_ms >= ").bind(lo).push(" AND hour_ms < ").bind(hi);
    q.push(" GROUP BY hour_ms ORDER BY hour_ms DESC");
    Some(q)
}

/// The seek of `records_seek_hours`' rows: (hour_ms, calls, above).
pub(crate) fn seek_by_hours(f: &RecordFilter, hours: &[(i64, i64, i64)]) -> Option<Seek> {
    let above = hours.first().map_or(0, |h| h.2);
    seek(f.page.offset(), above, hours.iter().map(|&(hour_ms, calls, _)| (hour_ms, calls)))
}

/// Where a page that skips `offset` rows starts, given the rows `above` the newest whole
/// hour and the whole hours' calls, newest first: below the last hour it skips whole, if
/// any.
pub(crate) fn seek(offset: i64, above: i64, hours: impl IntoIterator<Item = (i64, i64)>) -> Option<Seek> {
    let mut skipped = above;
    let mut seek = None;
    for (hour_ms, calls) in hours {
        if skipped + calls > offset {
            break;
        }
        skipped += calls;
        seek = Some(Seek { until_ms: hour_ms, offset: offset - skipped });
    }
    seek
}

/// records/list's total as a scalar expression: for a filter of call type and time
/// alone, summed from the counters (see `total_plan`); for other filters a plain COUNT.
fn push_record_total(q: &mut Sql, f: &RecordFilter) {
    if !countable_by_buckets(f) {
        q.push("(SELECT COUNT(*) FROM call_records");
        push_record_filter(q, f);
        q.push(")");
        return;
    }
    q.push("(0");
    for (aggregate, column, (lo, hi)) in total_plan(f.callout_from_ms, f.callout_until_ms).parts() {
        q.push(&format!(" + (SELECT {aggregate} WHERE call_type = ")).bind(f.call_type.code());
        q.push(&format!(" AND {column} >= ")).bind(lo);
        q.push(&format!(" AND {column} < ")).bind(hi).push(")");
    }
    q.push(")");
}

fn push_record_filter(q: &mut Sql, f: &RecordFilter) {
    // With an exact uuid, telephone or extension, that column's index finds the few rows.
    // On SQLite the `+` keeps the planner (which has no statistics) from walking the
    // call-type index instead, because that one avoids a sort: 0.5 s a query at a million
    // records.
    let hint = exact_lookup(f) && q.dialect == Dialect::Sqlite;
    q.push(if hint { " WHERE +call_type = " } else { " WHERE call_type = " }).bind(f.call_type.code());
    for (column, value) in [("uuid", &f.uuid), ("telephone", &f.telephone), ("extnum", &f.extnum)] {
        if let Some(v) = value {
            q.push(&format!(" AND {column} = ")).bind(v.as_str());
        }
    }
    for (condition, value) in [
        (" AND callout_ms >= ", f.callout_from_ms),
        (" AND callout_ms < ", f.callout_until_ms),
        (" AND time_len >= ", f.time_len_min),
        (" AND time_len <= ", f.time_len_max),
    ] {
        if let Some(v) = value {
            q.push(condition).bind(v);
        }
    }
}

/// ` LIMIT n` and, past the first page, ` OFFSET ?`. The page size is in the text, not
/// bound: PostgreSQL plans each statement once (generic plans), and a LIMIT it cannot see
/// it takes for a tenth of the rows, a plan many times slower (bench/RESULTS.md). Sizes
/// are few; offsets would be many statements.
fn push_page(q: &mut Sql, size: u32, offset: i64) {
    q.push(&format!(" LIMIT {size}"));
    if offset > 0 {
        q.push(" OFFSET ").bind(offset);
    }
}

/// calltask/list's page and its total. A filter of status alone, or none, sums the
/// counters of `task_counts` (kept by triggers on tasks); others count the rows.
pub(crate) fn tasks_page(dialect: Dialect, f: &TaskFilter) -> (Sql, Sql) {
    let mut count;
    if countable_by_status(f) {
        count = Sql::new(dialect, "SELECT CAST(COALESCE(SUM(tasks), 0) AS BIGINT) FROM task_counts");
        if let Some(s) = f.status {
            count.push(" WHERE status = ").bind(s.db_name());
        }
    } else {
        count = Sql::new(dialect, "SELECT COUNT(*) FROM tasks");
        push_task_filter(&mut count, f);
    }
    let mut q = Sql::new(dialect, format!("SELECT {} FROM tasks", rows::TASK_COLUMNS));
    push_task_filter(&mut q, f);
    q.push(" ORDER BY batch_id DESC");
    push_page(&mut q, f.page.size, f.page.offset());
    (q, count)
}

fn push_task_filter(q: &mut Sql, f: &TaskFilter) {
    q.push(" WHERE 1 = 1");
    for (condition, value) in [
        (" AND batch_id = ", f.batch_id),
        (" AND created_ms >= ", f.created_from_ms),
        (" AND created_ms < ", f.created_until_ms),
    ] {
        if let Some(v) = value {
            q.push(condition).bind(v);
        }
    }
    for (condition, value) in [(" AND ticket_no = ", &f.ticket_no), (" AND phone = ", &f.phone)] {
        if let Some(v) = value {
            q.push(condition).bind(v.as_str());
        }
    }
    if let Some(s) = f.status {
        q.push(" AND status = ").bind(s.db_name());
    }
}

/// Whether a calltask/list filter's total can come from `task_counts`: nothing but the
/// status filters it. (Every field is named, so that a new one must be decided here.)
fn countable_by_status(f: &TaskFilter) -> bool {
    let TaskFilter { batch_id, created_from_ms, created_until_ms, ticket_no, phone, status: _, page: _ } = f;
    batch_id.is_none()
        && created_from_ms.is_none()
        && created_until_ms.is_none()
        && ticket_no.is_none()
        && phone.is_none()
}

/// Whether a records/list filter's total can come from the counters: only the call type
/// and the time range filter it.
fn countable_by_buckets(f: &RecordFilter) -> bool {
    !exact_lookup(f) && f.time_len_min.is_none() && f.time_len_max.is_none()
}

/// Whether a records/list filter names an exact uuid, telephone or extension.
fn exact_lookup(f: &RecordFilter) -> bool {
    f.uuid.is_some() || f.telephone.is_some() || f.extnum.is_some()
}

/// An hour of `record_stats`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourStat {
    pub hour_ms: i64,
    pub outcome: String,
    pub calls: i64,
    pub talk_secs: i64,
}

impl CallRecord {
    /// Its `record_stats` bucket: (hour, outcome class).
    pub fn stats_key(&self) -> (i64, &'static str) {
        let cause = self.hangup_cause.split(':').next().unwrap_or_default();
        (
            self.callout_ms.div_euclid(HOUR_MS) * HOUR_MS,
            crate::domain::outcome_class(cause, self.answered_ms.is_some()),
        )
    }

    /// `timeLen`: whole seconds from calloutTime to callEndTime as the API shows them,
    /// for an answered call; 0 for one never answered.
    pub fn time_len_of(callout_ms: i64, answered_ms: Option<i64>, ended_ms: i64) -> i64 {
        match answered_ms {
            Some(_) => (ended_ms.div_euclid(1000) - callout_ms.div_euclid(1000)).max(0),
            None => 0,
        }
    }
}

/// A number on the do-not-call list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DncEntry {
    pub phone: String,
    pub reason: String,
    pub created_ms: i64,
}

/// What the dialer must respect when it claims, beyond due time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimRules {
    /// Most calls one number may get per day (0 = no cap); a task over it waits for
    /// `today_until_ms` without spending an attempt.
    pub per_number_daily_cap: u32,
    /// Today in the configured zone: `[from, until)`, epoch ms.
    pub today_from_ms: i64,
    pub today_until_ms: i64,
}

/// Kinds of webhook events.
pub const CALL_ENDED: &str = "call.ended";
pub const TASK_ENDED: &str = "task.ended";

/// A webhook event waiting in the outbox, leased to one deliverer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    pub id: i64,
    pub event_id: String,
    pub event_type: String,
    pub task: TaskRow,
    pub record_uuid: Option<String>,
    pub created_ms: i64,
    pub attempts: i64,
}

/// What became of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventOutcome {
    /// The receiver answered 2xx: the event is done.
    Delivered,
    /// Try again at this time.
    RetryAt { next_attempt_ms: i64, error: String },
    /// Older than `webhook.max_age_secs`: given up.
    Expired,
}

/// How a store is opened.
#[derive(Clone, Default)]
pub struct StoreOptions {
    /// Write webhook events to the outbox (only when a webhook is configured).
    pub emit_events: bool,
    /// Notified after a transaction that wrote events, to wake the deliverer.
    pub events_written: Arc<Notify>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paged<T> {
    pub total: i64,
    pub rows: Vec<T>,
}

/// Database numbers for /metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreGauges {
    /// Tasks 待呼叫 or 等待重呼.
    pub tasks_waiting: i64,
    /// Webhook events not yet delivered.
    pub webhook_backlog: i64,
    /// Calls in progress on all nodes.
    pub calls_in_progress: i64,
    /// Connections open in the pools, and of those idle.
    pub pool_open: u32,
    pub pool_idle: u32,
}

/// What stopTasks did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StopOutcome {
    /// Waiting tasks that became 已停止.
    pub stopped: u64,
    /// Tasks with a call in progress, asked to hang up.
    pub hanging_up: u64,
}

/// A task claimed for one call attempt, with the attempt's uuid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedCall {
    pub batch_id: i64,
    pub ticket_no: String,
    pub phone: String,
    pub username: String,
    pub ticket_type: String,
    pub ticket_content: String,
    /// Attempts so far, this one included.
    pub attempt: i64,
    pub call_uuid: String,
    pub call_started_ms: i64,
    /// For a call taken over from a dead node: when it was answered, if it was.
    pub call_answered_ms: Option<i64>,
    /// For a call taken over from a dead node: its last heartbeat.
    pub heartbeat_ms: Option<i64>,
    /// The lease's fencing token: every write about this attempt holds only while the
    /// task still carries it (another claim bumps it).
    pub lease_gen: i64,
}

/// Where the task goes after an attempt. A stop requested meanwhile wins over it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    /// 已完成.
    Complete,
    /// 等待重呼 until this time (epoch ms).
    RetryAt(i64),
    /// 已停止.
    Stop,
}

/// An attempt that has ended: its record and what becomes of its task.
#[derive(Debug, Clone)]
pub struct FinishedAttempt {
    pub batch_id: i64,
    pub node: String,
    /// The claim's fencing token (`ClaimedCall::lease_gen`).
    pub lease_gen: i64,
    pub uuid: String,
    pub telephone: String,
    pub callout_ms: i64,
    pub answered_ms: Option<i64>,
    pub ended_ms: i64,
    pub hangup_cause: HangupCause,
    pub wav_path: String,
    pub dialogue: Vec<Turn>,
    /// The outcome of an answered call; empty otherwise.
    pub intent: String,
    pub next: NextStep,
}

impl FinishedAttempt {
    /// The record the attempt leaves.
    pub(crate) fn record(&self) -> CallRecord {
        CallRecord {
            uuid: self.uuid.clone(),
            call_type: CallType::AiOutbound,
            batch_id: Some(self.batch_id),
            telephone: self.telephone.clone(),
            extnum: None,
            callout_ms: self.callout_ms,
            answered_ms: self.answered_ms,
            ended_ms: self.ended_ms,
            time_len: CallRecord::time_len_of(self.callout_ms, self.answered_ms, self.ended_ms),
            hangup_cause: self.hangup_cause.to_string(),
            wav_path: self.wav_path.clone(),
            wav_url: String::new(),
            dialogue_json: serde_json::to_string(&self.dialogue).expect("dialogue serializes"),
            intent: self.intent.clone(),
        }
    }

    /// The task's status after the attempt (unless a stop was asked for meanwhile) and
    /// its `next_attempt_ms`.
    pub(crate) fn next_status(&self) -> (TaskStatus, i64) {
        match self.next {
            NextStep::Complete => (TaskStatus::Completed, self.ended_ms),
            NextStep::RetryAt(ms) => (TaskStatus::RetryWait, ms),
            NextStep::Stop => (TaskStatus::Stopped, self.ended_ms),
        }
    }
}

/// A webhook event as the outbox stores it, written with the change it reports.
#[derive(Serialize)]
pub(crate) struct NewEvent<'a> {
    event_id: String,
    event_type: &'static str,
    task_json: String,
    record_uuid: Option<&'a str>,
    at_ms: i64,
}

impl<'a> NewEvent<'a> {
    fn new(
        event_type: &'static str,
        task: &TaskRow,
        record_uuid: Option<&'a str>,
        at_ms: i64,
    ) -> NewEvent<'a> {
        NewEvent {
            event_id: uuid::Uuid::new_v4().to_string(),
            event_type,
            task_json: serde_json::to_string(task).expect("task serializes"),
            record_uuid,
            at_ms,
        }
    }

    /// The task ended (stopped, blocked, or after its last attempt).
    pub(crate) fn task_ended(task: &TaskRow, at_ms: i64) -> NewEvent<'static> {
        NewEvent::new(TASK_ENDED, task, None, at_ms)
    }
}

/// Matches the tasks that finished attempts moved on (as the UPDATE returned them, in any
/// order) to the attempts: each attempt's new task status (`None`: its lease was lost),
/// in order, and the events they report (the call ended; the task too, if final).
pub(crate) fn attempts_moved<'a>(
    attempts: &'a [FinishedAttempt],
    tasks: &[TaskRow],
) -> (Vec<Option<TaskStatus>>, Vec<NewEvent<'a>>) {
    let by_id: std::collections::HashMap<i64, &TaskRow> = tasks.iter().map(|t| (t.batch_id, t)).collect();
    let mut statuses = Vec::with_capacity(attempts.len());
    let mut events = Vec::new();
    for a in attempts {
        let task = by_id.get(&a.batch_id).copied();
        if let Some(task) = task {
            events.push(NewEvent::new(CALL_ENDED, task, Some(&a.uuid), a.ended_ms));
            if task.status.is_final() {
                events.push(NewEvent::task_ended(task, a.ended_ms));
            }
        }
        statuses.push(task.map(|t| t.status));
    }
    (statuses, events)
}

/// A call in progress that was answered, noted while it lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnsweredCall {
    pub batch_id: i64,
    /// The claim's fencing token (`ClaimedCall::lease_gen`).
    pub lease_gen: i64,
    pub answered_ms: i64,
}

/// A change to one `record_stats` row.
#[derive(Debug, PartialEq, Eq, Serialize)]
pub(crate) struct StatsDelta {
    pub call_type: &'static str,
    pub hour_ms: i64,
    pub outcome: &'static str,
    pub calls: i64,
    pub talk_secs: i64,
}

/// What replacing the records `removed` by `added` does to `record_stats`: one change
/// per row touched, none for rows left as they were, in key order (so that writers on
/// several nodes lock the rows in the same order and never deadlock).
pub(crate) fn stats_deltas<'a>(
    removed: impl IntoIterator<Item = &'a CallRecord>,
    added: impl IntoIterator<Item = &'a CallRecord>,
) -> Vec<StatsDelta> {
    let mut tally = StatsTally::default();
    removed.into_iter().for_each(|r| tally.add(r, -1));
    added.into_iter().for_each(|r| tally.add(r, 1));
    tally.deltas()
}

/// Changes to `record_stats`, summed per row.
#[derive(Default)]
pub(crate) struct StatsTally(std::collections::BTreeMap<(&'static str, i64, &'static str), (i64, i64)>);

impl StatsTally {
    /// Counts `record` in (`sign` 1) or out (-1).
    pub(crate) fn add(&mut self, record: &CallRecord, sign: i64) {
        let (hour_ms, outcome) = record.stats_key();
        let row = self.0.entry((record.call_type.code(), hour_ms, outcome)).or_default();
        row.0 += sign;
        row.1 += sign * record.time_len;
    }

    /// The rows that change, in key order.
    pub(crate) fn deltas(self) -> Vec<StatsDelta> {
        self.0
            .into_iter()
            .filter(|(_, change)| *change != (0, 0))
            .map(|((call_type, hour_ms, outcome), (calls, talk_secs))| StatsDelta {
                call_type,
                hour_ms,
                outcome,
                calls,
                talk_secs,
            })
            .collect()
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

    /// Claims up to `limit` due tasks for `node` with a lease until `lease_until_ms`,
    /// counting the attempt and giving it a uuid from `next_uuid`. On the way, a task
    /// for a do-not-call number ends as 已拦截, and one whose number reached its daily
    /// cap waits for tomorrow.
    async fn claim_due(
        &self,
        node: &str,
        limit: u32,
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

    /// When the next waiting task is due, if any.
    async fn next_due_ms(&self) -> Result<Option<i64>>;

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
    fn a_deep_page_seeks_below_the_whole_hours_it_skips() {
        let hours = [(3_000, 5), (2_000, 5), (1_000, 5)];
        // 2 rows above the hours, then 5 in the newest: skipping 11 passes them and 4 more.
        assert_eq!(seek(11, 2, hours), Some(Seek { until_ms: 3_000, offset: 4 }));
        assert_eq!(seek(12, 2, hours), Some(Seek { until_ms: 2_000, offset: 0 }));
        // Not even the newest hour is skipped whole: no seek.
        assert_eq!(seek(6, 2, hours), None);
        // Past the end: below the oldest hour, with what is left to skip.
        assert_eq!(seek(100, 2, hours), Some(Seek { until_ms: 1_000, offset: 83 }));
        assert_eq!(seek(100, 0, []), None);
    }

    #[test]
    fn passwords_in_database_urls_are_not_shown() {
        assert_eq!(redact_password("postgres://cc:s3cret@db:5432/cc"), "postgres://cc:***@db:5432/cc");
        assert_eq!(redact_password("postgres://cc@db/cc"), "postgres://cc@db/cc");
        assert_eq!(redact_password("sqlite://data/callcenter.db"), "sqlite://data/callcenter.db");
    }

    #[test]
    fn totals_sum_whole_days_then_whole_hours_and_count_only_the_rows_at_the_edges() {
        let (h, d) = (HOUR_MS, DAY_MS);
        // A local day in UTC+8: 16:00 to 16:00 UTC, less a second.
        let plan = total_plan(Some(d + 16 * h), Some(2 * d + 16 * h - 1000));
        assert_eq!(
            plan,
            TotalPlan {
                days: NOTHING,
                hours: [(d + 16 * h, 2 * d + 15 * h), NOTHING],
                rows: [NOTHING, (2 * d + 15 * h, 2 * d + 16 * h - 1000)]
            }
        );
        // A week from mid-hour to mid-hour.
        let plan = total_plan(Some(d + 30 * 60_000), Some(8 * d + h + 1));
        assert_eq!(plan.days, (2 * d, 8 * d));
        assert_eq!(plan.hours, [(d + h, 2 * d), (8 * d, 8 * d + h)]);
        assert_eq!(plan.rows, [(d + 30 * 60_000, d + h), (8 * d + h, 8 * d + h + 1)]);
        // No range: all days.
        let plan = total_plan(None, None);
        assert!(plan.days.0 < -1_000_000 * d && plan.days.1 > 1_000_000 * d);
        assert_eq!(plan.rows, [NOTHING; 2]);
        // Within one hour: rows only.
        assert_eq!(total_plan(Some(10), Some(h - 10)).rows, [(10, h - 10), NOTHING]);
    }

    fn record(uuid: &str, hour: i64, cause: &str, answered: bool, time_len: i64) -> CallRecord {
        CallRecord {
            uuid: uuid.into(),
            call_type: CallType::AiOutbound,
            batch_id: None,
            telephone: "13800000000".into(),
            extnum: None,
            callout_ms: hour * HOUR_MS + 1_000,
            answered_ms: answered.then_some(hour * HOUR_MS + 2_000),
            ended_ms: hour * HOUR_MS + 9_000,
            time_len,
            hangup_cause: cause.into(),
            wav_path: String::new(),
            wav_url: String::new(),
            dialogue_json: "[]".into(),
            intent: String::new(),
        }
    }

    #[test]
    fn stats_deltas_sum_per_row_in_key_order_and_leave_out_rows_unchanged() {
        let busy = record("a", 7, "USER_BUSY:486", false, 0);
        let answered = record("a", 7, "NORMAL_CLEARING:200", true, 8);
        let crash = record("b", 5, "CRASH:null", true, 5);
        let later = record("c", 3, "NORMAL_CLEARING:200", true, 7);
        let deltas = stats_deltas([&busy, &crash], [&answered, &crash, &later]);
        let row = |hour: i64, outcome, calls, talk_secs| StatsDelta {
            call_type: "02",
            hour_ms: hour * HOUR_MS,
            outcome,
            calls,
            talk_secs,
        };
        // crash out and back in: no change to its row, so no write of it.
        assert_eq!(deltas, vec![row(3, "answered", 1, 7), row(7, "answered", 1, 8), row(7, "busy", -1, 0)]);
    }
}
