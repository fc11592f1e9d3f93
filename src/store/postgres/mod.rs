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
//! through: the next claim takes it back (while its lease holds), so its task does not
//! sit 呼叫中 with no call until the lease runs out.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{Arguments, Connection, PgPool};
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use super::rows::{
    CLAIMED_COLUMNS, ClaimedDb, OPEN, RECORD_COLUMNS, RecordDb, RecordJson, TASK_COLUMNS, TaskDb, TaskMove,
    Totalled,
};
use super::seed;
use super::sql::{Arg, Dialect, Sql};
use super::{
    AnsweredCall, CallRecord, ClaimRules, ClaimedCall, DncEntry, EventOutcome, FinishedAttempt, HourStat,
    NewEvent, OutboxEvent, Paged, Result, StatsDelta, StopOutcome, Store, StoreError, StoreGauges,
    StoreOptions, TaskRow, attempts_moved, records_page, records_seek_hours, records_total, seek_by_hours,
    stats_deltas, tasks_page,
};
use crate::domain::{CallType, NewTask, Page, RecordFilter, TaskFilter, TaskStatus};
use readers::Readers;

mod readers;

/// Connections per node for queries (the listener has its own). The dialer's writes are
/// short transactions, so a few connections serve hundreds of concurrent calls.
const MAX_CONNECTIONS: u32 = 10;
/// How long a query waits for a connection, connecting included, before it fails: when
/// the database is away, the API answers 500 after this rather than hang.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// A pooled connection idle this long is pinged before its next use.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);
/// How often a node folds the changes of task counts into the counters.
const FOLD_TASK_COUNTS_EVERY: Duration = Duration::from_secs(1);
/// Backoff between attempts to bring the listener back.
const RELISTEN_MIN: Duration = Duration::from_millis(250);
const RELISTEN_MAX: Duration = Duration::from_secs(5);

/// Recounts `record_stats` and `record_days` from the rows after the seed's load (the
/// same mapping as `domain::outcome_class`). Written in key order, so that a call type's
/// hours lie together in the table: a day's total then reads a few pages, against some
/// forty in the order of a hash aggregate.
const RECOUNT: [&str; 4] = [
    "DELETE FROM record_stats",
    "INSERT INTO record_stats (call_type, hour_ms, outcome, calls, talk_secs)
     SELECT call_type, (callout_ms / 3600000) * 3600000,
            CASE
                WHEN answered_ms IS NOT NULL THEN 'answered'
                WHEN hangup_cause LIKE 'USER_BUSY:%' THEN 'busy'
                WHEN hangup_cause LIKE 'NO_ANSWER:%' OR hangup_cause LIKE 'NO_USER_RESPONSE:%'
                     OR hangup_cause LIKE 'ORIGINATOR_CANCEL:%' THEN 'no_answer'
                WHEN hangup_cause LIKE 'UNALLOCATED_NUMBER:%' OR hangup_cause LIKE 'NUMBER_CHANGED:%'
                     OR hangup_cause LIKE 'INVALID_NUMBER_FORMAT:%' THEN 'unallocated'
                WHEN hangup_cause LIKE 'CALL_REJECTED:%' THEN 'rejected'
                WHEN hangup_cause LIKE 'MANAGER_REQUEST:%' THEN 'stopped'
                WHEN hangup_cause LIKE 'SYSTEM_SHUTDOWN:%' OR hangup_cause LIKE 'CRASH:%' THEN 'interrupted'
                ELSE 'failed'
            END,
            COUNT(*), SUM(time_len)
     FROM call_records GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
    "DELETE FROM record_days",
    "INSERT INTO record_days (call_type, day_ms, calls)
     SELECT call_type, (hour_ms / 86400000) * 86400000, SUM(calls) FROM record_stats GROUP BY 1, 2 ORDER BY 1, 2",
];

/// The types of `RECORD_COLUMNS`, for reading records from a bound JSON list.
const RECORD_TYPES: &str = "uuid text, call_type text, batch_id bigint, telephone text, extnum text, \
     callout_ms bigint, answered_ms bigint, ended_ms bigint, time_len bigint, hangup_cause text, wav_path text, \
     wav_url text, dialogue text, intent text";

/// A bound list of rows, read with `json_to_recordset`: one statement for a whole batch.
fn json<T: serde::Serialize + ?Sized>(rows: &T) -> String {
    serde_json::to_string(rows).expect("rows serialize")
}

/// NOTIFY channels: tasks were created (dialers look for due work), calls in progress
/// were asked to stop (the node making the call hangs it up).
pub const CREATED_CHANNEL: &str = "callcenter_tasks_created";
pub const STOPPED_CHANNEL: &str = "callcenter_tasks_stopped";

/// The advisory lock key that serialises `create_tasks` across nodes ("callcent").
const CREATE_LOCK: i64 = 0x6361_6c6c_6365_6e74;

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
    /// Claims whose COMMIT got no answer (the connection dropped): they may have gone
    /// through, leaving tasks 呼叫中 with no call until their lease runs out.
    unsure: Mutex<Vec<UnsureClaim>>,
}

/// A claim that may or may not have been committed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct UnsureClaim {
    batch_id: i64,
    call_uuid: String,
    lease_until_ms: i64,
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
        let fold = tokio::spawn(fold_task_counts_forever(pool.clone()));
        Ok(PgStore {
            pool,
            readers: Readers::new(options.clone(), MAX_CONNECTIONS),
            options,
            background: Mutex::new(vec![fold.abort_handle()]),
            events,
            unsure: Mutex::new(Vec::new()),
        })
    }

    /// Writes webhook events into the outbox, in the caller's transaction.
    async fn emit(&self, tx: &mut sqlx::PgConnection, events: &[NewEvent<'_>]) -> Result<()> {
        if !self.events.emit_events || events.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO webhook_outbox (event_id, event_type, task_json, record_uuid, created_ms, next_attempt_ms)
             SELECT event_id, event_type, task_json, record_uuid, at_ms, at_ms
             FROM json_to_recordset($1::json)
                  AS e (event_id text, event_type text, task_json text, record_uuid text, at_ms bigint)",
        )
        .bind(json(events))
        .execute(tx)
        .await?;
        Ok(())
    }

    /// records/list's total when its page is empty (a page that has rows carries it).
    async fn count_records(&self, f: &RecordFilter) -> Result<i64> {
        let q = records_total(Dialect::Postgres, f);
        let mut conn = self.readers.get().await?;
        let total = sqlx::query_scalar_with(&q.text, arguments(&q)).fetch_one(&mut *conn).await?;
        conn.done();
        Ok(total)
    }

    /// Keeps `record_stats` and `record_days` exact, in the caller's transaction. The rows
    /// are changed in key order, so that nodes writing at once never deadlock.
    async fn apply_stats(tx: &mut sqlx::PgConnection, deltas: &[StatsDelta]) -> Result<()> {
        if deltas.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO record_stats (call_type, hour_ms, outcome, calls, talk_secs)
             SELECT call_type, hour_ms, outcome, calls, talk_secs
             FROM json_to_recordset($1::json)
                  AS d (call_type text, hour_ms bigint, outcome text, calls bigint, talk_secs bigint)
             ORDER BY call_type, hour_ms, outcome
             ON CONFLICT (call_type, hour_ms, outcome)
             DO UPDATE SET calls = record_stats.calls + EXCLUDED.calls, talk_secs = record_stats.talk_secs + EXCLUDED.talk_secs",
        )
        .bind(json(deltas))
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO record_days (call_type, day_ms, calls)
             SELECT call_type, hour_ms / 86400000 * 86400000, SUM(calls)
             FROM json_to_recordset($1::json) AS d (call_type text, hour_ms bigint, calls bigint)
             GROUP BY 1, 2 ORDER BY 1, 2
             ON CONFLICT (call_type, day_ms) DO UPDATE SET calls = record_days.calls + EXCLUDED.calls",
        )
        .bind(json(deltas))
        .execute(tx)
        .await?;
        Ok(())
    }

    /// After a claim committed: the unsure claims it looked at are settled.
    fn settle_unsure(&self, settled: &[UnsureClaim]) {
        if !settled.is_empty() {
            self.unsure.lock().unwrap_or_else(|e| e.into_inner()).retain(|c| !settled.contains(c));
        }
    }

    fn events_written(&self) {
        if self.events.emit_events {
            self.events.events_written.notify_one();
        }
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

#[async_trait]
impl Store for PgStore {
    async fn create_tasks(&self, tasks: &[NewTask], now_ms: i64) -> Result<Vec<i64>> {
        let ticket_nos: Vec<&str> = tasks.iter().map(|t| t.ticket_no.as_str()).collect();
        let mut tx = self.pool.begin().await?;
        // One creator at a time across nodes: the lookup below then cannot race another
        // node's insert of the same ticket, and no sequence value is burnt by a conflict.
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(CREATE_LOCK).execute(&mut *tx).await?;
        // Tickets with an unfinished task keep it (a retried request must not ring twice).
        // By ticket first (MATERIALIZED keeps the planner from starting at the status index:
        // with statistics from a quiet hour, when nothing was waiting, it would walk every
        // waiting task for each request: 1.5 s with 200,000 waiting).
        let mut ids: HashMap<String, i64> = sqlx::query_as(&format!(
            "WITH named AS MATERIALIZED (SELECT ticket_no, batch_id, status FROM tasks WHERE ticket_no = ANY($1))
             SELECT ticket_no, batch_id FROM named WHERE status IN {OPEN}"
        ))
        .bind(&ticket_nos)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();
        let mut new: Vec<&NewTask> = Vec::with_capacity(tasks.len());
        let mut queued = std::collections::HashSet::new();
        for t in tasks {
            if !ids.contains_key(&t.ticket_no) && queued.insert(t.ticket_no.as_str()) {
                new.push(t);
            }
        }
        if !new.is_empty() {
            let column = |f: fn(&NewTask) -> &str| new.iter().map(|t| f(t)).collect::<Vec<&str>>();
            // Rows are inserted (and numbered) in input order.
            let inserted: Vec<(String, i64)> = sqlx::query_as(
                "INSERT INTO tasks (ticket_no, phone, username, ticket_type, ticket_content, created_ms, next_attempt_ms)
                 SELECT t.ticket_no, t.phone, t.username, t.ticket_type, t.ticket_content, $6, $6
                 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
                     WITH ORDINALITY AS t (ticket_no, phone, username, ticket_type, ticket_content, ord)
                 ORDER BY t.ord
                 RETURNING ticket_no, batch_id",
            )
            .bind(column(|t| &t.ticket_no))
            .bind(column(|t| t.phone.as_str()))
            .bind(column(|t| &t.username))
            .bind(column(|t| &t.ticket_type))
            .bind(column(|t| &t.ticket_content))
            .bind(now_ms)
            .fetch_all(&mut *tx)
            .await?;
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CREATED_CHANNEL)
                .bind(inserted.len().to_string())
                .execute(&mut *tx)
                .await?;
            ids.extend(inserted);
        }
        tx.commit().await?;
        tasks
            .iter()
            .map(|t| {
                ids.get(&t.ticket_no)
                    .copied()
                    .ok_or_else(|| StoreError::Corrupt(format!("ticket `{}` got no task", t.ticket_no)))
            })
            .collect()
    }

    async fn list_tasks(&self, f: &TaskFilter) -> Result<Paged<TaskRow>> {
        if has_nul(&f.ticket_no) || has_nul(&f.phone) {
            return Ok(Paged { total: 0, rows: Vec::new() });
        }
        let (q, count) = tasks_page(Dialect::Postgres, f);
        let mut conn = self.readers.get().await?;
        let total: i64 =
            sqlx::query_scalar_with(&count.text, arguments(&count)).fetch_one(&mut *conn).await?;
        let rows: Vec<TaskDb> = sqlx::query_as_with(&q.text, arguments(&q)).fetch_all(&mut *conn).await?;
        conn.done();
        Ok(Paged { total, rows: rows.into_iter().map(TaskRow::try_from).collect::<Result<_>>()? })
    }

    async fn list_records(&self, f: &RecordFilter) -> Result<Paged<CallRecord>> {
        if has_nul(&f.uuid) || has_nul(&f.telephone) || has_nul(&f.extnum) {
            return Ok(Paged { total: 0, rows: Vec::new() });
        }
        let mut conn = self.readers.get().await?;
        let seek = match records_seek_hours(Dialect::Postgres, f) {
            Some(q) => {
                seek_by_hours(f, &sqlx::query_as_with(&q.text, arguments(&q)).fetch_all(&mut *conn).await?)
            }
            None => None,
        };
        let q = records_page(Dialect::Postgres, f, seek);
        let rows: Vec<Totalled<RecordDb>> =
            sqlx::query_as_with(&q.text, arguments(&q)).fetch_all(&mut *conn).await?;
        conn.done();
        let total = match rows.first() {
            Some(row) => row.total,
            None => self.count_records(f).await?,
        };
        Ok(Paged {
            total,
            rows: rows.into_iter().map(|r| CallRecord::try_from(r.row)).collect::<Result<_>>()?,
        })
    }

    async fn call_type_of(&self, uuid: &str) -> Result<Option<CallType>> {
        if uuid.contains('\0') {
            return Ok(None);
        }
        let mut conn = self.readers.get().await?;
        let code: Option<String> = sqlx::query_scalar("SELECT call_type FROM call_records WHERE uuid = $1")
            .bind(uuid)
            .fetch_optional(&mut *conn)
            .await?;
        conn.done();
        Ok(code.and_then(|c| c.parse().ok()))
    }

    async fn stop_tasks(&self, batch_ids: &[i64], ticket_nos: &[String], now_ms: i64) -> Result<StopOutcome> {
        let ticket_nos: Vec<&str> =
            ticket_nos.iter().map(String::as_str).filter(|t| !t.contains('\0')).collect();
        let mut tx = self.pool.begin().await?;
        // Planned for the lists it is given: a generic plan (the pool's default) does not
        // know how many tasks they name, and walked every waiting task, matching each
        // against the whole list (bench/RESULTS.md).
        sqlx::query("SET LOCAL plan_cache_mode = force_custom_plan").execute(&mut *tx).await?;
        // One statement: waiting tasks end as stopped, calls in progress are flagged for
        // the node making them. (SET expressions see the row as it was.)
        let changed: Vec<TaskDb> = sqlx::query_as(&format!(
            "UPDATE tasks SET
                 status = CASE WHEN status = 'calling' THEN status ELSE 'stopped' END,
                 stopped_ms = CASE WHEN status = 'calling' THEN stopped_ms ELSE $3 END,
                 stop_requested = stop_requested OR status = 'calling'
             WHERE (batch_id = ANY($1) OR ticket_no = ANY($2))
               AND (status IN ('pending', 'retry_wait') OR (status = 'calling' AND NOT stop_requested))
             RETURNING {TASK_COLUMNS}"
        ))
        .bind(batch_ids)
        .bind(&ticket_nos)
        .bind(now_ms)
        .fetch_all(&mut *tx)
        .await?;
        let hanging_up = changed.iter().filter(|t| t.status == "calling").count() as u64;
        let stopped = changed.len() as u64 - hanging_up;
        let ended = changed
            .into_iter()
            .filter(|t| t.status == "stopped")
            .map(TaskRow::try_from)
            .collect::<Result<Vec<_>>>()?;
        let events: Vec<_> = ended.iter().map(|task| NewEvent::task_ended(task, now_ms)).collect();
        self.emit(&mut tx, &events).await?;
        if hanging_up > 0 {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(STOPPED_CHANNEL)
                .bind(hanging_up.to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        if stopped > 0 {
            self.events_written();
        }
        Ok(StopOutcome { stopped, hanging_up })
    }

    async fn claim_due(
        &self,
        node: &str,
        limit: u32,
        now_ms: i64,
        lease_until_ms: i64,
        rules: &ClaimRules,
        next_uuid: &(dyn Fn() -> String + Send + Sync),
    ) -> Result<Vec<ClaimedCall>> {
        let unsure: Vec<UnsureClaim> = {
            let mut unsure = self.unsure.lock().unwrap_or_else(|e| e.into_inner());
            unsure.retain(|c| c.lease_until_ms > now_ms);
            unsure.clone()
        };
        let mut tx = self.pool.begin().await?;
        if !unsure.is_empty() {
            // Claims that went through though their COMMIT was never answered: no call was
            // placed for them, so they go back to waiting (and may be claimed again below).
            // Only while their own lease holds: after, they are orphans, taken over as such.
            let undone = sqlx::query(
                "UPDATE tasks SET status = CASE WHEN call_count > 1 THEN 'retry_wait' ELSE 'pending' END,
                     call_count = call_count - 1, locked_by = NULL, locked_until_ms = NULL, heartbeat_ms = NULL,
                     call_uuid = NULL, call_started_ms = NULL, call_answered_ms = NULL
                 FROM UNNEST($1::bigint[], $2::text[], $3::bigint[]) AS u (id, uuid, lease_until)
                 WHERE batch_id = u.id AND call_uuid = u.uuid AND locked_until_ms = u.lease_until
                   AND status = 'calling' AND locked_by = $4 AND locked_until_ms > $5 AND NOT stop_requested",
            )
            .bind(unsure.iter().map(|c| c.batch_id).collect::<Vec<_>>())
            .bind(unsure.iter().map(|c| c.call_uuid.as_str()).collect::<Vec<_>>())
            .bind(unsure.iter().map(|c| c.lease_until_ms).collect::<Vec<_>>())
            .bind(node)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if undone > 0 {
                tracing::warn!(undone, "took back claims whose commit went unanswered");
            }
        }
        // Rows another node is claiming right now are skipped, not waited for.
        let candidates: Vec<(i64, String, bool)> = sqlx::query_as(
            "SELECT batch_id, phone, EXISTS (SELECT 1 FROM dnc_numbers d WHERE d.phone = tasks.phone)
             FROM tasks
             WHERE status IN ('pending', 'retry_wait') AND next_attempt_ms <= $1
             ORDER BY next_attempt_ms, batch_id
             LIMIT $2
             FOR UPDATE SKIP LOCKED",
        )
        .bind(now_ms)
        .bind(limit as i64)
        .fetch_all(&mut *tx)
        .await?;
        let mut due = Vec::with_capacity(candidates.len());
        // Calls this claim gives each number, which the counts below cannot see yet.
        let mut claimed_phones: HashMap<String, i64> = HashMap::new();
        let mut blocked = Vec::new();
        for (batch_id, phone, do_not_call) in candidates {
            if do_not_call {
                let task: TaskDb = sqlx::query_as(&format!(
                    "UPDATE tasks SET status = 'blocked', stopped_ms = $1 WHERE batch_id = $2 RETURNING {TASK_COLUMNS}"
                ))
                .bind(now_ms)
                .bind(batch_id)
                .fetch_one(&mut *tx)
                .await?;
                blocked.push(TaskRow::try_from(task)?);
                continue;
            }
            if rules.per_number_daily_cap > 0 {
                // Another node counting this number waits for our commit, and then sees
                // our claims as calls in progress.
                sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                    .bind(&phone)
                    .execute(&mut *tx)
                    .await?;
                let calls_today: i64 = sqlx::query_scalar(
                    "SELECT (SELECT COUNT(*) FROM call_records WHERE telephone = $1 AND callout_ms >= $2 AND callout_ms < $3)
                          + (SELECT COUNT(*) FROM tasks WHERE phone = $1 AND status = 'calling')",
                )
                .bind(&phone)
                .bind(rules.today_from_ms)
                .bind(rules.today_until_ms)
                .fetch_one(&mut *tx)
                .await?;
                let in_this_claim = claimed_phones.entry(phone).or_insert(0);
                if calls_today + *in_this_claim >= i64::from(rules.per_number_daily_cap) {
                    sqlx::query("UPDATE tasks SET next_attempt_ms = $1 WHERE batch_id = $2")
                        .bind(rules.today_until_ms)
                        .bind(batch_id)
                        .execute(&mut *tx)
                        .await?;
                    continue;
                }
                *in_this_claim += 1;
            }
            due.push(batch_id);
        }
        let events: Vec<_> = blocked.iter().map(|task| NewEvent::task_ended(task, now_ms)).collect();
        self.emit(&mut tx, &events).await?;
        if due.is_empty() {
            tx.commit().await?;
            self.settle_unsure(&unsure);
            if !blocked.is_empty() {
                self.events_written();
            }
            return Ok(Vec::new());
        }
        let uuids: Vec<String> = due.iter().map(|_| next_uuid()).collect();
        let rows: Vec<ClaimedDb> = sqlx::query_as(&format!(
            "UPDATE tasks SET status = 'calling', call_count = call_count + 1, locked_by = $1,
                 locked_until_ms = $2, heartbeat_ms = $3, call_uuid = c.claim_uuid, call_started_ms = $3,
                 call_answered_ms = NULL, lease_gen = lease_gen + 1
             FROM UNNEST($4::bigint[], $5::text[]) AS c (claim_id, claim_uuid)
             WHERE batch_id = c.claim_id AND status IN ('pending', 'retry_wait')
             RETURNING {CLAIMED_COLUMNS}"
        ))
        .bind(node)
        .bind(lease_until_ms)
        .bind(now_ms)
        .bind(&due)
        .bind(&uuids)
        .fetch_all(&mut *tx)
        .await?;
        if let Err(e) = tx.commit().await {
            let claims = rows.iter().map(|r| UnsureClaim {
                batch_id: r.batch_id,
                call_uuid: r.call_uuid.clone(),
                lease_until_ms,
            });
            self.unsure.lock().unwrap_or_else(|e| e.into_inner()).extend(claims);
            return Err(e.into());
        }
        self.settle_unsure(&unsure);
        if !blocked.is_empty() {
            self.events_written();
        }
        // In the order they fell due.
        let position: HashMap<i64, usize> = due.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        let mut claimed: Vec<ClaimedCall> = rows.into_iter().map(ClaimedCall::from).collect();
        claimed.sort_by_key(|c| position.get(&c.batch_id).copied());
        Ok(claimed)
    }

    async fn claim_orphans(
        &self,
        node: &str,
        own_too: bool,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Vec<ClaimedCall>> {
        let rows: Vec<ClaimedDb> = sqlx::query_as(&format!(
            "UPDATE tasks SET locked_by = $1, locked_until_ms = $2, lease_gen = lease_gen + 1
             WHERE batch_id IN (
                 SELECT batch_id FROM tasks
                 WHERE status = 'calling' AND (locked_until_ms < $3 OR ($4 AND locked_by = $1))
                 FOR UPDATE SKIP LOCKED)
             RETURNING {CLAIMED_COLUMNS}"
        ))
        .bind(node)
        .bind(lease_until_ms)
        .bind(now_ms)
        .bind(own_too)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(ClaimedCall::from).collect())
    }

    async fn mark_answered(&self, node: &str, calls: &[AnsweredCall]) -> Result<Vec<i64>> {
        Ok(sqlx::query_scalar(
            "UPDATE tasks SET call_answered_ms = a.answered_ms
             FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[]) AS a (answered_id, answered_gen, answered_ms)
             WHERE batch_id = a.answered_id AND lease_gen = a.answered_gen AND locked_by = $4
               AND status = 'calling'
             RETURNING batch_id",
        )
        .bind(calls.iter().map(|c| c.batch_id).collect::<Vec<_>>())
        .bind(calls.iter().map(|c| c.lease_gen).collect::<Vec<_>>())
        .bind(calls.iter().map(|c| c.answered_ms).collect::<Vec<_>>())
        .bind(node)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn renew_leases(
        &self,
        node: &str,
        leases: &[(i64, i64)],
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Vec<i64>> {
        Ok(sqlx::query_scalar(
            "UPDATE tasks SET locked_until_ms = GREATEST(locked_until_ms, $1), heartbeat_ms = GREATEST(heartbeat_ms, $2)
             FROM UNNEST($4::bigint[], $5::bigint[]) AS l (lease_id, gen)
             WHERE batch_id = l.lease_id AND lease_gen = l.gen AND locked_by = $3 AND status = 'calling'
             RETURNING batch_id",
        )
        .bind(lease_until_ms)
        .bind(now_ms)
        .bind(node)
        .bind(leases.iter().map(|l| l.0).collect::<Vec<_>>())
        .bind(leases.iter().map(|l| l.1).collect::<Vec<_>>())
        .fetch_all(&self.pool)
        .await?)
    }

    async fn stop_requested(&self, node: &str) -> Result<Vec<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT batch_id FROM tasks WHERE locked_by = $1 AND status = 'calling' AND stop_requested",
        )
        .bind(node)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn finish_attempts(&self, attempts: &[FinishedAttempt]) -> Result<Vec<Option<TaskStatus>>> {
        let mut tx = self.pool.begin().await?;
        // The fence first: an attempt whose lease another claim has taken (its generation
        // bumped) moves nothing, and then leaves no record, counts or events either.
        let moves: Vec<TaskMove> = attempts.iter().map(TaskMove::from).collect();
        let tasks: Vec<TaskDb> = sqlx::query_as(&format!(
            "UPDATE tasks SET
                 status = CASE WHEN stop_requested THEN 'stopped' ELSE m.next_status END,
                 stopped_ms = CASE WHEN stop_requested OR m.next_status <> 'retry_wait' THEN m.ended_ms END,
                 connected = connected OR m.answered,
                 last_hangup_cause = m.cause,
                 next_attempt_ms = m.next_ms,
                 locked_by = NULL, locked_until_ms = NULL, heartbeat_ms = NULL,
                 call_uuid = NULL, call_started_ms = NULL, call_answered_ms = NULL
             FROM json_to_recordset($1::json) AS m (id bigint, node text, lease_gen bigint, uuid text,
                  next_status text, ended_ms bigint, answered boolean, cause text, next_ms bigint)
             WHERE batch_id = m.id AND locked_by = m.node AND tasks.lease_gen = m.lease_gen
               AND status = 'calling' AND call_uuid = m.uuid
             RETURNING {TASK_COLUMNS}"
        ))
        .bind(json(&moves))
        .fetch_all(&mut *tx)
        .await?;
        let tasks = tasks.into_iter().map(TaskRow::try_from).collect::<Result<Vec<_>>>()?;
        let moved: HashSet<i64> = tasks.iter().map(|t| t.batch_id).collect();
        let records: Vec<CallRecord> =
            attempts.iter().filter(|a| moved.contains(&a.batch_id)).map(FinishedAttempt::record).collect();
        let uuids: Vec<&str> = records.iter().map(|r| r.uuid.as_str()).collect();
        // A record of the same uuid can stand only if this very write went through before
        // (a batch retried after its commit's answer was lost): replaced, counts adjusted.
        let before: Vec<RecordDb> =
            sqlx::query_as(&format!("SELECT {RECORD_COLUMNS} FROM call_records WHERE uuid = ANY($1)"))
                .bind(&uuids)
                .fetch_all(&mut *tx)
                .await?;
        let before = before.into_iter().map(CallRecord::try_from).collect::<Result<Vec<_>>>()?;
        sqlx::query(&format!(
            "INSERT INTO call_records ({RECORD_COLUMNS})
             SELECT {RECORD_COLUMNS} FROM json_to_recordset($1::json) AS r ({RECORD_TYPES})
             ON CONFLICT (uuid) DO UPDATE SET answered_ms = EXCLUDED.answered_ms, ended_ms = EXCLUDED.ended_ms,
                 time_len = EXCLUDED.time_len, hangup_cause = EXCLUDED.hangup_cause,
                 wav_path = EXCLUDED.wav_path, dialogue = EXCLUDED.dialogue, intent = EXCLUDED.intent"
        ))
        .bind(json(&records.iter().map(RecordJson::from).collect::<Vec<_>>()))
        .execute(&mut *tx)
        .await?;
        let (statuses, events) = attempts_moved(attempts, &tasks);
        self.emit(&mut tx, &events).await?;
        // The counts last: every call of the hour updates the same `record_stats` rows, so
        // their locks serialise all finishing calls until they commit; taken last, they are
        // held for one statement and the commit rather than for the whole transaction.
        Self::apply_stats(&mut tx, &stats_deltas(&before, &records)).await?;
        tx.commit().await?;
        self.events_written();
        Ok(statuses)
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

    async fn record(&self, uuid: &str) -> Result<Option<CallRecord>> {
        if uuid.contains('\0') {
            return Ok(None);
        }
        let mut conn = self.readers.get().await?;
        let row: Option<RecordDb> =
            sqlx::query_as(&format!("SELECT {RECORD_COLUMNS} FROM call_records WHERE uuid = $1"))
                .bind(uuid)
                .fetch_optional(&mut *conn)
                .await?;
        conn.done();
        row.map(CallRecord::try_from).transpose()
    }

    async fn import_records(&self, records: &[CallRecord]) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        let inserted: Vec<String> = sqlx::query_scalar(&format!(
            "INSERT INTO call_records ({RECORD_COLUMNS})
             SELECT {RECORD_COLUMNS} FROM json_to_recordset($1::json) AS r ({RECORD_TYPES})
             ON CONFLICT (uuid) DO NOTHING
             RETURNING uuid"
        ))
        .bind(json(&records.iter().map(RecordJson::from).collect::<Vec<_>>()))
        .fetch_all(&mut *tx)
        .await?;
        let inserted: HashSet<String> = inserted.into_iter().collect();
        Self::apply_stats(&mut tx, &stats_deltas([], records.iter().filter(|r| inserted.contains(&r.uuid))))
            .await?;
        tx.commit().await?;
        Ok(inserted.len() as u64)
    }

    async fn dnc_add(&self, phones: &[String], reason: &str, now_ms: i64) -> Result<u64> {
        Ok(sqlx::query(
            "INSERT INTO dnc_numbers (phone, reason, created_ms) SELECT p, $2, $3 FROM UNNEST($1::text[]) AS p
             ON CONFLICT (phone) DO NOTHING",
        )
        .bind(phones)
        .bind(reason)
        .bind(now_ms)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    async fn dnc_remove(&self, phones: &[String]) -> Result<u64> {
        Ok(sqlx::query("DELETE FROM dnc_numbers WHERE phone = ANY($1)")
            .bind(phones)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    async fn dnc_list(&self, phone: Option<&str>, page: Page) -> Result<Paged<DncEntry>> {
        let mut conn = self.readers.get().await?;
        let total: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM dnc_numbers WHERE $1::text IS NULL OR phone = $1")
                .bind(phone)
                .fetch_one(&mut *conn)
                .await?;
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT phone, reason, created_ms FROM dnc_numbers WHERE $1::text IS NULL OR phone = $1
             ORDER BY created_ms DESC, phone LIMIT $2 OFFSET $3",
        )
        .bind(phone)
        .bind(page.size as i64)
        .bind(page.offset())
        .fetch_all(&mut *conn)
        .await?;
        conn.done();
        let rows = rows
            .into_iter()
            .map(|(phone, reason, created_ms)| DncEntry { phone, reason, created_ms })
            .collect();
        Ok(Paged { total, rows })
    }

    async fn hourly_stats(&self, call_type: CallType, from_ms: i64, until_ms: i64) -> Result<Vec<HourStat>> {
        let mut conn = self.readers.get().await?;
        let rows: Vec<(i64, String, i64, i64)> = sqlx::query_as(
            "SELECT hour_ms, outcome, calls, talk_secs FROM record_stats
             WHERE call_type = $1 AND hour_ms >= $2 AND hour_ms < $3 AND calls <> 0 ORDER BY hour_ms, outcome",
        )
        .bind(call_type.code())
        .bind(from_ms)
        .bind(until_ms)
        .fetch_all(&mut *conn)
        .await?;
        conn.done();
        Ok(rows
            .into_iter()
            .map(|(hour_ms, outcome, calls, talk_secs)| HourStat { hour_ms, outcome, calls, talk_secs })
            .collect())
    }

    /// The rows `seed::SeedPlan` makes, made here in SQL inside the server: an
    /// `INSERT … SELECT` keeps them off the wire and skips uuids already present, which a
    /// `COPY` cannot.
    async fn seed(&self, records: u64, tasks: u64, now_ms: i64, utc_offset_secs: i32) -> Result<()> {
        let start = now_ms - seed::SPAN_MS;
        let mut tx = self.pool.begin().await?;
        // Building the secondary indexes once, over the loaded data, is several times
        // faster than keeping them up to date row by row.
        let indexes: Vec<(String, String)> = sqlx::query_as(
            "SELECT indexname::text, indexdef FROM pg_indexes
             WHERE schemaname = current_schema() AND tablename IN ('call_records', 'tasks')
               AND indexname NOT IN ('call_records_pkey', 'tasks_pkey')",
        )
        .fetch_all(&mut *tx)
        .await?;
        for (name, _) in &indexes {
            sqlx::query(&format!("DROP INDEX {name}")).execute(&mut *tx).await?;
        }
        if records > 0 {
            let step = (seed::SPAN_MS / records as i64).max(1);
            // Row i falls in [start + i*step, start + (i+1)*step): times rise with i, so
            // within a second the rows are consecutive and their counters distinct.
            sqlx::query(
                "WITH hashed AS (SELECT i, (i * 2654435761 + 40503) % 4294967296 AS h FROM generate_series(0::bigint, $1 - 1) AS i),
                 base AS (
                     SELECT i, $2 + i * $3 + h % $3 AS t, h % 10 AS kind, h / 10 % 100 AS outcome,
                            5 + h / 1000 % 175 AS talk, 2 + h / 175000 % 20 AS ring, h / 7 AS pick
                     FROM hashed),
                 calls AS (
                     SELECT *, CASE WHEN kind < 7 THEN '02' WHEN kind < 9 THEN '01' ELSE '03' END AS call_type,
                            outcome < 65 AS answered,
                            to_char(to_timestamp(t / 1000) AT TIME ZONE 'UTC' + make_interval(secs => $4), 'YYMMDDHH24MISS')
                                || '99' || lpad((10001 + i % 89999)::text, 5, '0') AS uuid,
                            to_char(to_timestamp(t / 1000) AT TIME ZONE 'UTC' + make_interval(secs => $4), 'YYYY/MM/DD/HH24/') AS dir
                     FROM base)
                 INSERT INTO call_records (uuid, call_type, batch_id, telephone, extnum, callout_ms, answered_ms, ended_ms,
                                           time_len, hangup_cause, wav_path, wav_url, dialogue, intent)
                 SELECT uuid, call_type, NULL,
                        '1' || (3 + pick % 7) || lpad((pick % 1000000000)::text, 9, '0'),
                        CASE WHEN call_type = '02' THEN NULL ELSE '8' || lpad((pick % 1000)::text, 3, '0') END,
                        t,
                        CASE WHEN answered THEN t + ring * 1000 END,
                        t + ring * 1000 + CASE WHEN answered THEN talk * 1000 ELSE 0 END,
                        CASE WHEN answered THEN ring + talk ELSE 0 END,
                        CASE WHEN answered THEN 'NORMAL_CLEARING:sip:200'
                             WHEN outcome < 75 THEN 'USER_BUSY:sip:486'
                             WHEN outcome < 90 THEN 'NO_ANSWER:sip:480'
                             WHEN outcome < 95 THEN 'NORMAL_TEMPORARY_FAILURE:sip:503'
                             WHEN outcome < 98 THEN 'UNALLOCATED_NUMBER:sip:404'
                             ELSE 'MANAGER_REQUEST:null' END,
                        CASE WHEN answered AND call_type = '02' THEN 'ai_call/' || dir || uuid || '.wav' ELSE '' END,
                        '',
                        CASE WHEN answered AND call_type = '02'
                             THEN CASE pick % 3 WHEN 0 THEN $5 WHEN 1 THEN $6 ELSE $7 END ELSE '[]' END,
                        CASE WHEN answered AND call_type = '02'
                             THEN CASE pick % 3 WHEN 0 THEN $8 WHEN 1 THEN $9 ELSE $10 END ELSE '' END
                 FROM calls
                 ON CONFLICT (uuid) DO NOTHING",
            )
            .bind(records as i64)
            .bind(start)
            .bind(step)
            .bind(f64::from(utc_offset_secs))
            .bind(seed::DIALOGUES[0].0)
            .bind(seed::DIALOGUES[1].0)
            .bind(seed::DIALOGUES[2].0)
            .bind(seed::DIALOGUES[0].1)
            .bind(seed::DIALOGUES[1].1)
            .bind(seed::DIALOGUES[2].1)
            .execute(&mut *tx)
            .await?;
            for sql in RECOUNT {
                sqlx::query(sql).execute(&mut *tx).await?;
            }
        }
        if tasks > 0 {
            let step = (seed::SPAN_MS / tasks as i64).max(1);
            sqlx::query(
                "WITH base AS (SELECT i, $2 + i * $3 AS t, (i * 2654435761 + 40503) % 4294967296 / 7 AS pick
                               FROM generate_series(0::bigint, $1 - 1) AS i)
                 INSERT INTO tasks (ticket_no, phone, username, ticket_type, ticket_content, status, created_ms,
                                    stopped_ms, connected, call_count, last_hangup_cause, next_attempt_ms)
                 SELECT 'SEED-' || t || '-' || i, '1' || (3 + pick % 7) || lpad((pick % 1000000000)::text, 9, '0'),
                        '客户' || (pick % 10000), '活动通知', '尊敬的客户，提醒您参加本周末的线下优惠活动。',
                        CASE WHEN pick % 20 = 0 THEN 'stopped' ELSE 'completed' END, t, t + 600000,
                        pick % 3 <> 0, 1 + pick % 3,
                        CASE WHEN pick % 3 <> 0 THEN 'NORMAL_CLEARING:sip:200' ELSE 'NO_ANSWER:sip:480' END, t
                 FROM base",
            )
            .bind(tasks as i64)
            .bind(start)
            .bind(step)
            .execute(&mut *tx)
            .await?;
        }
        for (_, sql) in &indexes {
            sqlx::query(sql).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn claim_events(&self, now_ms: i64, lease_until_ms: i64, limit: u32) -> Result<Vec<OutboxEvent>> {
        let rows: Vec<(i64, String, String, String, Option<String>, i64, i64)> = sqlx::query_as(
            "UPDATE webhook_outbox SET locked_until_ms = $1
             WHERE id IN (SELECT id FROM webhook_outbox
                          WHERE next_attempt_ms <= $2 AND (locked_until_ms IS NULL OR locked_until_ms < $2)
                          ORDER BY next_attempt_ms, id LIMIT $3 FOR UPDATE SKIP LOCKED)
             RETURNING id, event_id, event_type, task_json, record_uuid, created_ms, attempts",
        )
        .bind(lease_until_ms)
        .bind(now_ms)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(id, event_id, event_type, task_json, record_uuid, created_ms, attempts)| {
                let task = serde_json::from_str(&task_json)
                    .map_err(|e| StoreError::Corrupt(format!("webhook event {event_id}: {e}")))?;
                Ok(OutboxEvent { id, event_id, event_type, task, record_uuid, created_ms, attempts })
            })
            .collect()
    }

    async fn settle_event(&self, id: i64, outcome: &EventOutcome) -> Result<()> {
        let q = match outcome {
            EventOutcome::Delivered | EventOutcome::Expired => {
                sqlx::query("DELETE FROM webhook_outbox WHERE id = $1").bind(id)
            }
            EventOutcome::RetryAt { next_attempt_ms, error } => sqlx::query(
                "UPDATE webhook_outbox SET attempts = attempts + 1, next_attempt_ms = $2, last_error = $3,
                     locked_until_ms = NULL WHERE id = $1",
            )
            .bind(id)
            .bind(*next_attempt_ms)
            .bind(error.replace('\0', "")),
        };
        q.execute(&self.pool).await?;
        Ok(())
    }

    async fn next_due_ms(&self) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT MIN(next_attempt_ms) FROM tasks WHERE status IN ('pending', 'retry_wait')",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    fn watch_changes(&self, created: Arc<Notify>, stopped: Arc<Notify>) {
        let task = tokio::spawn(listen_forever(self.options.clone(), created, stopped));
        self.background.lock().unwrap_or_else(|e| e.into_inner()).push(task.abort_handle());
    }

    async fn max_call_uuid_between(&self, from: &str, to: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT MAX(u) FROM (
                 SELECT MAX(uuid) AS u FROM call_records WHERE uuid BETWEEN $1 AND $2
                 UNION ALL
                 SELECT MAX(call_uuid) FROM tasks WHERE status = 'calling' AND call_uuid BETWEEN $1 AND $2
             ) AS m",
        )
        .bind(from)
        .bind(to)
        .fetch_one(&self.pool)
        .await?)
    }
}

/// Folds the changes of task counts that statements appended (see the migration
/// `0006_task_counts.sql`) into the counters, every `FOLD_TASK_COUNTS_EVERY`, so that a
/// count sums a few rows. Nodes may fold at the same time: a change row is deleted, and
/// so added, once. A failure (the database away) waits for the next turn.
async fn fold_task_counts_forever(pool: PgPool) {
    let mut every = tokio::time::interval(FOLD_TASK_COUNTS_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let folded = sqlx::query(
            "WITH changes AS (DELETE FROM task_count_changes RETURNING status, tasks)
             INSERT INTO task_counts_folded (status, tasks)
             SELECT status, SUM(tasks) FROM changes GROUP BY status ORDER BY status
             ON CONFLICT (status) DO UPDATE SET tasks = task_counts_folded.tasks + EXCLUDED.tasks",
        )
        .execute(&pool)
        .await;
        if let Err(e) = folded {
            tracing::debug!(error = %e, "could not fold task counts yet");
        }
    }
}

/// LISTENs on both channels on a connection of its own and passes notifications on,
/// reconnecting with a backoff whenever the connection or the database goes away. After a
/// reconnection both `Notify`s fire, since notifications sent meanwhile were lost.
async fn listen_forever(options: PgConnectOptions, created: Arc<Notify>, stopped: Arc<Notify>) {
    let mut backoff = RELISTEN_MIN;
    let mut lost = false;
    loop {
        // A pool of one of its own, new each time, so that a dead connection never lingers.
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options.clone());
        let connecting = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen_all([CREATED_CHANNEL, STOPPED_CHANNEL]).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let error = match connecting.await {
            Ok(mut listener) => {
                if lost {
                    tracing::info!("listening for task changes again");
                    created.notify_one();
                    stopped.notify_one();
                    lost = false;
                }
                backoff = RELISTEN_MIN;
                loop {
                    match listener.try_recv().await {
                        Ok(Some(n)) if n.channel() == CREATED_CHANNEL => created.notify_one(),
                        Ok(Some(n)) if n.channel() == STOPPED_CHANNEL => stopped.notify_one(),
                        Ok(Some(_)) => {}
                        // The connection dropped and was re-established at once.
                        Ok(None) => {
                            created.notify_one();
                            stopped.notify_one();
                        }
                        Err(e) => break e,
                    }
                }
            }
            Err(e) => e,
        };
        if !lost {
            tracing::warn!(error = %error, "lost the database listener; polling until it is back");
            lost = true;
        } else {
            tracing::debug!(error = %error, "the database listener cannot reconnect yet");
        }
        drop(pool);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(RELISTEN_MAX);
    }
}
