//! The SQLite store: one file in WAL mode, read-only connections for reads (see
//! `readers`) and a single writer connection (SQLite has one writer at a time anyway; one
//! connection means no lock upgrades and no SQLITE_BUSY between our own writes).

mod readers;
mod seed;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use serde::Serialize;

use super::rows::{
    CLAIMED_COLUMNS, ClaimedDb, OPEN, RECORD_COLUMNS, RecordDb, RecordJson, TASK_COLUMNS, TaskDb, TaskMove,
};
use super::seed::SeedPlan;
use super::sql::Dialect;
use super::{
    AnsweredCall, CallRecord, ClaimRules, ClaimedCall, DncEntry, EventOutcome, FinishedAttempt, HourStat,
    NewEvent, OutboxEvent, Paged, Result, StatsDelta, StopOutcome, Store, StoreError, StoreGauges,
    StoreOptions, TaskRow, attempts_moved, records_page, records_read_is_bounded, records_seek_hours,
    records_total, seek_by_hours, stats_deltas, tasks_page,
};
use crate::domain::{CallType, NewTask, Page, RecordFilter, TaskFilter, TaskStatus};
use readers::Readers;

/// A bound list of rows: statements read it with `json_each`, so that one statement
/// (prepared once, whatever the list's length) handles a whole batch.
fn json<T: Serialize + ?Sized>(rows: &T) -> String {
    serde_json::to_string(rows).expect("rows serialize")
}

/// `value ->> 'a', value ->> 'b'` for the columns `a, b`: a `json_each` row's fields.
fn json_fields(columns: &str) -> String {
    let fields: Vec<String> = columns.split(',').map(|c| format!("value ->> '{}'", c.trim())).collect();
    fields.join(", ")
}

/// Adds a JSON list of `StatsDelta`s to `record_stats`. `WHERE true`: without it SQLite
/// would read ON CONFLICT as a join constraint.
const ADD_STATS: &str = "INSERT INTO record_stats (call_type, hour_ms, outcome, calls, talk_secs)
     SELECT value ->> 'call_type', value ->> 'hour_ms', value ->> 'outcome', value ->> 'calls', value ->> 'talk_secs'
     FROM json_each(?) WHERE true
     ON CONFLICT (call_type, hour_ms, outcome)
     DO UPDATE SET calls = record_stats.calls + excluded.calls, talk_secs = record_stats.talk_secs + excluded.talk_secs";

/// Adds the same list to `record_days`.
const ADD_DAYS: &str = "INSERT INTO record_days (call_type, day_ms, calls)
     SELECT value ->> 'call_type', (value ->> 'hour_ms') / 86400000 * 86400000, SUM(value ->> 'calls')
     FROM json_each(?) WHERE true GROUP BY 1, 2
     ON CONFLICT (call_type, day_ms) DO UPDATE SET calls = record_days.calls + excluded.calls";

pub struct SqliteStore {
    /// The database file.
    path: PathBuf,
    readers: Arc<Readers>,
    writer: SqlitePool,
    options: StoreOptions,
}

impl SqliteStore {
    pub async fn connect(url: &str, options: StoreOptions) -> Result<SqliteStore> {
        let store_options = options;
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
        let path = options.get_filename().to_path_buf();
        Ok(SqliteStore { readers: Readers::new(path.clone()), path, writer, options: store_options })
    }

    /// Writes webhook events into the outbox, in the caller's transaction.
    async fn emit(&self, tx: &mut sqlx::SqliteConnection, events: &[NewEvent<'_>]) -> Result<()> {
        if !self.options.emit_events || events.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO webhook_outbox (event_id, event_type, task_json, record_uuid, created_ms, next_attempt_ms)
             SELECT value ->> 'event_id', value ->> 'event_type', value ->> 'task_json', value ->> 'record_uuid',
                    value ->> 'at_ms', value ->> 'at_ms'
             FROM json_each(?)",
        )
        .bind(json(events))
        .execute(tx)
        .await?;
        Ok(())
    }

    /// Keeps `record_stats` and `record_days` exact, in the caller's transaction.
    async fn apply_stats(tx: &mut sqlx::SqliteConnection, deltas: &[StatsDelta]) -> Result<()> {
        if deltas.is_empty() {
            return Ok(());
        }
        let deltas = json(deltas);
        sqlx::query(ADD_STATS).bind(&deltas).execute(&mut *tx).await?;
        sqlx::query(ADD_DAYS).bind(&deltas).execute(tx).await?;
        Ok(())
    }

    fn events_written(&self) {
        if self.options.emit_events {
            self.options.events_written.notify_one();
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_tasks(&self, tasks: &[NewTask], now_ms: i64) -> Result<Vec<i64>> {
        let ticket_nos: Vec<&str> = tasks.iter().map(|t| t.ticket_no.as_str()).collect();
        let mut tx = self.writer.begin().await?;
        // Tickets with an unfinished task keep it (a retried request must not ring twice).
        // Looked up by ticket: the `+` keeps the planner off the status index, which would
        // walk every waiting task (bench/RESULTS.md).
        let open: HashMap<String, i64> = sqlx::query_as(&format!(
            "SELECT ticket_no, batch_id FROM tasks
             WHERE +status IN {OPEN} AND ticket_no IN (SELECT value FROM json_each(?))"
        ))
        .bind(json(&ticket_nos))
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();
        // The new tickets in one statement (a statement per ticket costs a round trip to
        // the connection's thread each), numbered in input order.
        let mut queued = HashSet::new();
        let new: Vec<[&str; 5]> = tasks
            .iter()
            .filter(|t| !open.contains_key(&t.ticket_no) && queued.insert(t.ticket_no.as_str()))
            .map(|t| [t.ticket_no.as_str(), t.phone.as_str(), &t.username, &t.ticket_type, &t.ticket_content])
            .collect();
        let mut created: HashMap<String, i64> = HashMap::with_capacity(new.len());
        if !new.is_empty() {
            created = sqlx::query_as(
                "INSERT INTO tasks (ticket_no, phone, username, ticket_type, ticket_content, created_ms, next_attempt_ms)
                 SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, ?2, ?2
                 FROM json_each(?1) ORDER BY key
                 RETURNING ticket_no, batch_id",
            )
            .bind(json(&new))
            .bind(now_ms)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect();
        }
        let ids = tasks
            .iter()
            .map(|t| {
                open.get(&t.ticket_no)
                    .or_else(|| created.get(&t.ticket_no))
                    .copied()
                    .ok_or_else(|| StoreError::Corrupt(format!("ticket `{}` got no task", t.ticket_no)))
            })
            .collect::<Result<Vec<i64>>>()?;
        tx.commit().await?;
        Ok(ids)
    }

    async fn list_tasks(&self, f: &TaskFilter) -> Result<Paged<TaskRow>> {
        let (q, count) = tasks_page(Dialect::Sqlite, f);
        let (total, rows) = self
            .readers
            .read_blocking(move |conn| {
                Ok((readers::query_one(conn, &count)?, readers::query(conn, &q, readers::task)?))
            })
            .await?;
        Ok(Paged { total, rows: rows.into_iter().map(TaskRow::try_from).collect::<Result<_>>()? })
    }

    async fn list_records(&self, f: &RecordFilter) -> Result<Paged<CallRecord>> {
        let f = f.clone();
        let bounded = records_read_is_bounded(&f);
        let read = move |conn: &rusqlite::Connection| {
            let seek = match records_seek_hours(Dialect::Sqlite, &f) {
                Some(q) => {
                    seek_by_hours(&f, &readers::query(conn, &q, |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?)
                }
                None => None,
            };
            let page = records_page(Dialect::Sqlite, &f, seek);
            let rows = readers::query(conn, &page, |row| {
                Ok((readers::record(row)?, row.get(readers::RECORD_WIDTH)?))
            })?;
            let total = match rows.first() {
                Some((_, total)) => *total,
                None => readers::query_one(conn, &records_total(Dialect::Sqlite, &f))?,
            };
            Ok((total, rows))
        };
        let (total, rows) =
            if bounded { self.readers.read(read)? } else { self.readers.read_blocking(read).await? };
        Ok(Paged {
            total,
            rows: rows.into_iter().map(|(r, _)| CallRecord::try_from(r)).collect::<Result<_>>()?,
        })
    }

    async fn call_type_of(&self, uuid: &str) -> Result<Option<CallType>> {
        let code: Option<String> = self.readers.read(|conn| {
            conn.prepare_cached("SELECT call_type FROM call_records WHERE uuid = ?")?
                .query_row([uuid], |row| row.get(0))
                .optional()
        })?;
        Ok(code.and_then(|c| c.parse().ok()))
    }

    async fn stop_tasks(&self, batch_ids: &[i64], ticket_nos: &[String], now_ms: i64) -> Result<StopOutcome> {
        let ids = json(batch_ids);
        let tickets = json(ticket_nos);
        // One id list, so that the primary key and the ticket index find the rows (an OR
        // of the two would scan every waiting task).
        let named = "batch_id IN (SELECT value FROM json_each(?1)
                                  UNION SELECT batch_id FROM tasks WHERE ticket_no IN (SELECT value FROM json_each(?2)))";
        let mut tx = self.writer.begin().await?;
        let stopped: Vec<TaskDb> = sqlx::query_as(&format!(
            "UPDATE tasks SET status = 'stopped', stopped_ms = ?3
             WHERE {named} AND status IN ('pending', 'retry_wait') RETURNING {TASK_COLUMNS}"
        ))
        .bind(&ids)
        .bind(&tickets)
        .bind(now_ms)
        .fetch_all(&mut *tx)
        .await?;
        let stopped = stopped.into_iter().map(TaskRow::try_from).collect::<Result<Vec<_>>>()?;
        let events: Vec<_> = stopped.iter().map(|task| NewEvent::task_ended(task, now_ms)).collect();
        self.emit(&mut tx, &events).await?;
        let hanging_up = sqlx::query(&format!(
            "UPDATE tasks SET stop_requested = 1 WHERE {named} AND status = 'calling' AND stop_requested = 0"
        ))
        .bind(&ids)
        .bind(&tickets)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        if !stopped.is_empty() {
            self.events_written();
        }
        Ok(StopOutcome { stopped: stopped.len() as u64, hanging_up })
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
        let mut tx = self.writer.begin().await?;
        // INDEXED BY: left to itself (no statistics) the planner takes the status index,
        // reads every waiting task and sorts them, for each claim: quadratic in the backlog.
        let due: Vec<(i64, String, bool)> = sqlx::query_as(
            "SELECT batch_id, phone, EXISTS (SELECT 1 FROM dnc_numbers d WHERE d.phone = tasks.phone)
             FROM tasks INDEXED BY tasks_due WHERE status IN ('pending', 'retry_wait') AND next_attempt_ms <= ?
             ORDER BY next_attempt_ms, batch_id LIMIT ?",
        )
        .bind(now_ms)
        .bind(limit as i64)
        .fetch_all(&mut *tx)
        .await?;
        let mut claim = Vec::with_capacity(due.len());
        let mut blocked = Vec::new();
        // Calls this claim gives each number, which the counts below cannot see yet.
        let mut claimed_phones: HashMap<String, i64> = HashMap::new();
        for (batch_id, phone, do_not_call) in due {
            if do_not_call {
                let task: Option<TaskDb> = sqlx::query_as(&format!(
                    "UPDATE tasks SET status = 'blocked', stopped_ms = ?
                     WHERE batch_id = ? AND status IN ('pending', 'retry_wait') RETURNING {TASK_COLUMNS}"
                ))
                .bind(now_ms)
                .bind(batch_id)
                .fetch_optional(&mut *tx)
                .await?;
                blocked.extend(task.map(TaskRow::try_from).transpose()?);
                continue;
            }
            if rules.per_number_daily_cap > 0 {
                let calls_today: i64 = sqlx::query_scalar(
                    "SELECT (SELECT COUNT(*) FROM call_records WHERE telephone = ?1 AND callout_ms >= ?2 AND callout_ms < ?3)
                          + (SELECT COUNT(*) FROM tasks WHERE phone = ?1 AND status = 'calling')",
                )
                .bind(&phone)
                .bind(rules.today_from_ms)
                .bind(rules.today_until_ms)
                .fetch_one(&mut *tx)
                .await?;
                let in_this_claim = claimed_phones.entry(phone).or_insert(0);
                if calls_today + *in_this_claim >= i64::from(rules.per_number_daily_cap) {
                    sqlx::query("UPDATE tasks SET next_attempt_ms = ? WHERE batch_id = ?")
                        .bind(rules.today_until_ms)
                        .bind(batch_id)
                        .execute(&mut *tx)
                        .await?;
                    continue;
                }
                *in_this_claim += 1;
            }
            claim.push((batch_id, next_uuid()));
        }
        let events: Vec<_> = blocked.iter().map(|task| NewEvent::task_ended(task, now_ms)).collect();
        self.emit(&mut tx, &events).await?;
        // All the claims in one statement. The status guard makes them safe even against
        // another process on the file. NOT INDEXED (here and in the other `UPDATE tasks …
        // FROM json_each`): the list drives, each task found by its key; left to itself
        // the planner walks the status index and scans the list for every task.
        let claimed: Vec<ClaimedDb> = if claim.is_empty() {
            Vec::new()
        } else {
            sqlx::query_as(&format!(
                "UPDATE tasks NOT INDEXED SET status = 'calling', call_count = call_count + 1, locked_by = ?1,
                     locked_until_ms = ?2, heartbeat_ms = ?3, call_uuid = c.claim_uuid, call_started_ms = ?3,
                     call_answered_ms = NULL, lease_gen = lease_gen + 1
                 FROM (SELECT value ->> 0 AS claim_id, value ->> 1 AS claim_uuid FROM json_each(?4)) AS c
                 WHERE batch_id = c.claim_id AND status IN ('pending', 'retry_wait')
                 RETURNING {CLAIMED_COLUMNS}"
            ))
            .bind(node)
            .bind(lease_until_ms)
            .bind(now_ms)
            .bind(json(&claim))
            .fetch_all(&mut *tx)
            .await?
        };
        tx.commit().await?;
        if !blocked.is_empty() {
            self.events_written();
        }
        // In the order they fell due.
        let position: HashMap<i64, usize> = claim.iter().enumerate().map(|(i, (id, _))| (*id, i)).collect();
        let mut claimed: Vec<ClaimedCall> = claimed.into_iter().map(ClaimedCall::from).collect();
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
            "UPDATE tasks SET locked_by = ?1, locked_until_ms = ?2, lease_gen = lease_gen + 1
             WHERE status = 'calling' AND (locked_until_ms < ?3 OR (?4 AND locked_by = ?1))
             RETURNING {CLAIMED_COLUMNS}"
        ))
        .bind(node)
        .bind(lease_until_ms)
        .bind(now_ms)
        .bind(own_too)
        .fetch_all(&self.writer)
        .await?;
        Ok(rows.into_iter().map(ClaimedCall::from).collect())
    }

    async fn mark_answered(&self, node: &str, calls: &[AnsweredCall]) -> Result<Vec<i64>> {
        let answered: Vec<(i64, i64, i64)> =
            calls.iter().map(|c| (c.batch_id, c.lease_gen, c.answered_ms)).collect();
        Ok(sqlx::query_scalar(
            "UPDATE tasks NOT INDEXED SET call_answered_ms = a.answered_ms
             FROM (SELECT value ->> 0 AS answered_id, value ->> 1 AS answered_gen, value ->> 2 AS answered_ms
                   FROM json_each(?)) AS a
             WHERE batch_id = a.answered_id AND lease_gen = a.answered_gen AND locked_by = ?
               AND status = 'calling'
             RETURNING batch_id",
        )
        .bind(json(&answered))
        .bind(node)
        .fetch_all(&self.writer)
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
            "UPDATE tasks NOT INDEXED SET locked_until_ms = MAX(COALESCE(locked_until_ms, ?1), ?1),
                 heartbeat_ms = MAX(COALESCE(heartbeat_ms, ?2), ?2)
             FROM (SELECT value ->> 0 AS lease_id, value ->> 1 AS gen FROM json_each(?4)) AS l
             WHERE batch_id = l.lease_id AND lease_gen = l.gen AND locked_by = ?3 AND status = 'calling'
             RETURNING batch_id",
        )
        .bind(lease_until_ms)
        .bind(now_ms)
        .bind(node)
        .bind(json(leases))
        .fetch_all(&self.writer)
        .await?)
    }

    async fn stop_requested(&self, node: &str) -> Result<Vec<i64>> {
        self.readers.read(|conn| {
            conn.prepare_cached(
                "SELECT batch_id FROM tasks WHERE locked_by = ? AND status = 'calling' AND stop_requested = 1",
            )?
            .query_map([node], |row| row.get(0))?
            .collect()
        })
    }

    async fn finish_attempts(&self, attempts: &[FinishedAttempt]) -> Result<Vec<Option<TaskStatus>>> {
        let mut tx = self.writer.begin().await?;
        // The fence first: an attempt whose lease another claim has taken (its generation
        // bumped) moves nothing, and then leaves no record, counts or events either.
        let moves: Vec<TaskMove> = attempts.iter().map(TaskMove::from).collect();
        let tasks: Vec<TaskDb> = sqlx::query_as(&format!(
            "UPDATE tasks NOT INDEXED SET
                 status = CASE WHEN stop_requested = 1 THEN 'stopped' ELSE m.next_status END,
                 stopped_ms = CASE WHEN stop_requested = 1 OR m.next_status <> 'retry_wait' THEN m.ended_ms END,
                 connected = connected OR m.answered,
                 last_hangup_cause = m.cause,
                 next_attempt_ms = m.next_ms,
                 locked_by = NULL, locked_until_ms = NULL, heartbeat_ms = NULL,
                 call_uuid = NULL, call_started_ms = NULL, call_answered_ms = NULL
             FROM (SELECT value ->> 'id' AS id, value ->> 'node' AS node, value ->> 'lease_gen' AS gen,
                          value ->> 'uuid' AS uuid,
                          value ->> 'next_status' AS next_status, value ->> 'ended_ms' AS ended_ms,
                          value ->> 'answered' AS answered, value ->> 'cause' AS cause,
                          value ->> 'next_ms' AS next_ms
                   FROM json_each(?)) AS m
             WHERE batch_id = m.id AND locked_by = m.node AND lease_gen = m.gen AND status = 'calling'
               AND call_uuid = m.uuid
             RETURNING {TASK_COLUMNS}"
        ))
        .bind(json(&moves))
        .fetch_all(&mut *tx)
        .await?;
        let tasks = tasks.into_iter().map(TaskRow::try_from).collect::<Result<Vec<_>>>()?;
        let moved: HashSet<i64> = tasks.iter().map(|t| t.batch_id).collect();
        let records: Vec<CallRecord> =
            attempts.iter().filter(|a| moved.contains(&a.batch_id)).map(FinishedAttempt::record).collect();
        if !records.is_empty() {
            let uuids: Vec<&str> = records.iter().map(|r| r.uuid.as_str()).collect();
            // A record of the same uuid can stand only if this very write went through
            // before (a batch retried after its commit's answer was lost): replaced, counts
            // adjusted.
            let before: Vec<RecordDb> = sqlx::query_as(&format!(
                "SELECT {RECORD_COLUMNS} FROM call_records WHERE uuid IN (SELECT value FROM json_each(?))"
            ))
            .bind(json(&uuids))
            .fetch_all(&mut *tx)
            .await?;
            let before = before.into_iter().map(CallRecord::try_from).collect::<Result<Vec<_>>>()?;
            Self::apply_stats(&mut tx, &stats_deltas(&before, &records)).await?;
            // `WHERE true`: without it SQLite would read ON CONFLICT as a join constraint.
            sqlx::query(&format!(
                "INSERT INTO call_records ({RECORD_COLUMNS}) SELECT {} FROM json_each(?) WHERE true
                 ON CONFLICT (uuid) DO UPDATE SET answered_ms = excluded.answered_ms, ended_ms = excluded.ended_ms,
                     time_len = excluded.time_len, hangup_cause = excluded.hangup_cause,
                     wav_path = excluded.wav_path, dialogue = excluded.dialogue, intent = excluded.intent",
                json_fields(RECORD_COLUMNS)
            ))
            .bind(json(&records.iter().map(RecordJson::from).collect::<Vec<_>>()))
            .execute(&mut *tx)
            .await?;
        }
        let (statuses, events) = attempts_moved(attempts, &tasks);
        self.emit(&mut tx, &events).await?;
        tx.commit().await?;
        self.events_written();
        Ok(statuses)
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

    async fn record(&self, uuid: &str) -> Result<Option<CallRecord>> {
        let row = self.readers.read(|conn| {
            conn.prepare_cached(&format!("SELECT {RECORD_COLUMNS} FROM call_records WHERE uuid = ?"))?
                .query_row([uuid], readers::record)
                .optional()
        })?;
        row.map(CallRecord::try_from).transpose()
    }

    async fn import_records(&self, records: &[CallRecord]) -> Result<u64> {
        let mut tx = self.writer.begin().await?;
        // `WHERE true`: without it SQLite would read ON CONFLICT as a join constraint.
        let inserted: Vec<String> = sqlx::query_scalar(&format!(
            "INSERT INTO call_records ({RECORD_COLUMNS}) SELECT {} FROM json_each(?) WHERE true
             ON CONFLICT (uuid) DO NOTHING
             RETURNING uuid",
            json_fields(RECORD_COLUMNS)
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
        let mut tx = self.writer.begin().await?;
        let mut added = 0;
        for phone in phones {
            added += sqlx::query(
                "INSERT INTO dnc_numbers (phone, reason, created_ms) VALUES (?, ?, ?) ON CONFLICT (phone) DO NOTHING",
            )
            .bind(phone)
            .bind(reason)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        tx.commit().await?;
        Ok(added)
    }

    async fn dnc_remove(&self, phones: &[String]) -> Result<u64> {
        Ok(sqlx::query("DELETE FROM dnc_numbers WHERE phone IN (SELECT value FROM json_each(?))")
            .bind(json(phones))
            .execute(&self.writer)
            .await?
            .rows_affected())
    }

    async fn dnc_list(&self, phone: Option<&str>, page: Page) -> Result<Paged<DncEntry>> {
        let phone = phone.map(str::to_string);
        let (size, offset) = (page.size as i64, page.offset());
        // The total counts the list: a read in proportion to it.
        self.readers
            .read_blocking(move |conn| {
                let total = conn
                    .prepare_cached("SELECT COUNT(*) FROM dnc_numbers WHERE ?1 IS NULL OR phone = ?1")?
                    .query_row([&phone], |row| row.get(0))?;
                let rows = conn
                    .prepare_cached(
                        "SELECT phone, reason, created_ms FROM dnc_numbers WHERE ?1 IS NULL OR phone = ?1
                         ORDER BY created_ms DESC, phone LIMIT ?2 OFFSET ?3",
                    )?
                    .query_map(params![phone, size, offset], |row| {
                        Ok(DncEntry { phone: row.get(0)?, reason: row.get(1)?, created_ms: row.get(2)? })
                    })?
                    .collect::<rusqlite::Result<_>>()?;
                Ok(Paged { total, rows })
            })
            .await
    }

    async fn hourly_stats(&self, call_type: CallType, from_ms: i64, until_ms: i64) -> Result<Vec<HourStat>> {
        // A range of any length: a read in proportion to it.
        self.readers
            .read_blocking(move |conn| {
                conn.prepare_cached(
                    "SELECT hour_ms, outcome, calls, talk_secs FROM record_stats
                     WHERE call_type = ? AND hour_ms >= ? AND hour_ms < ? AND calls <> 0 ORDER BY hour_ms, outcome",
                )?
                .query_map(params![call_type.code(), from_ms, until_ms], |row| {
                    Ok(HourStat { hour_ms: row.get(0)?, outcome: row.get(1)?, calls: row.get(2)?, talk_secs: row.get(3)? })
                })?
                .collect()
            })
            .await
    }

    async fn seed(&self, records: u64, tasks: u64, now_ms: i64, utc_offset_secs: i32) -> Result<()> {
        let plan = SeedPlan::new(records, tasks, now_ms, utc_offset_secs);
        // A rollback journal for the load instead of the WAL: in the WAL every loaded page
        // would be written twice (into the WAL, then by the checkpoint into the database).
        // The journal keeps the load atomic and costs nothing for the pages past the
        // file's old end, which is where a load goes. Switched here, on the connection
        // that put the file in WAL mode, while it is the only one open.
        sqlx::query("PRAGMA journal_mode = DELETE").execute(&self.writer).await?;
        let path = self.path.clone();
        let loaded = tokio::task::spawn_blocking(move || seed::load(&path, plan))
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        sqlx::query("PRAGMA journal_mode = WAL").execute(&self.writer).await?;
        loaded
    }

    async fn claim_events(&self, now_ms: i64, lease_until_ms: i64, limit: u32) -> Result<Vec<OutboxEvent>> {
        let rows: Vec<(i64, String, String, String, Option<String>, i64, i64)> = sqlx::query_as(
            "UPDATE webhook_outbox SET locked_until_ms = ?1
             WHERE id IN (SELECT id FROM webhook_outbox
                          WHERE next_attempt_ms <= ?2 AND (locked_until_ms IS NULL OR locked_until_ms < ?2)
                          ORDER BY next_attempt_ms, id LIMIT ?3)
             RETURNING id, event_id, event_type, task_json, record_uuid, created_ms, attempts",
        )
        .bind(lease_until_ms)
        .bind(now_ms)
        .bind(limit as i64)
        .fetch_all(&self.writer)
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
                sqlx::query("DELETE FROM webhook_outbox WHERE id = ?").bind(id)
            }
            EventOutcome::RetryAt { next_attempt_ms, error } => sqlx::query(
                "UPDATE webhook_outbox SET attempts = attempts + 1, next_attempt_ms = ?, last_error = ?,
                     locked_until_ms = NULL WHERE id = ?",
            )
            .bind(*next_attempt_ms)
            .bind(error.clone())
            .bind(id),
        };
        q.execute(&self.writer).await?;
        Ok(())
    }

    async fn next_due_ms(&self) -> Result<Option<i64>> {
        self.readers.read(|conn| {
            // The due index's first entry; the status index would read every waiting task.
            conn.prepare_cached(
                "SELECT MIN(next_attempt_ms) FROM tasks INDEXED BY tasks_due WHERE status IN ('pending', 'retry_wait')",
            )?
            .query_row([], |row| row.get(0))
        })
    }

    async fn max_call_uuid_between(&self, from: &str, to: &str) -> Result<Option<String>> {
        self.readers.read(|conn| {
            conn.prepare_cached(
                "SELECT MAX(u) FROM (
                     SELECT MAX(uuid) AS u FROM call_records WHERE uuid BETWEEN ?1 AND ?2
                     UNION ALL
                     SELECT MAX(call_uuid) FROM tasks WHERE status = 'calling' AND call_uuid BETWEEN ?1 AND ?2)",
            )?
            .query_row([from, to], |row| row.get(0))
        })
    }
}
