//! Tasks on PostgreSQL: createTasks, calltask/list, stopTasks.

use std::collections::HashMap;

use super::background::{CREATED_CHANNEL, STOPPED_CHANNEL};
use super::{PgStore, arguments, has_nul, outbox};
use crate::domain::{NewTask, TaskFilter, TaskStatus};
use crate::store::counters::TaskTables;
use crate::store::outbox::NewEvent;
use crate::store::rows::{OPEN, TASK_COLUMNS};
use crate::store::sql::{Dialect, json};
use crate::store::tasks::CounterRow;
use crate::store::{Paged, Result, StopOutcome, TaskRow, tasks};

/// The advisory lock key that serialises `create_tasks` across nodes ("callcent").
const CREATE_LOCK: i64 = 0x6361_6c6c_6365_6e74;

/// The tables a recount of `task_days` reads its hours from and writes its days to.
pub(super) const COUNTER_TABLES: TaskTables = ("task_hours_folded", "task_days_folded");

pub(super) async fn create(s: &PgStore, new: &[NewTask], now_ms: i64) -> Result<Vec<i64>> {
    let ticket_nos: Vec<&str> = new.iter().map(|t| t.ticket_no.as_str()).collect();
    let mut tx = s.pool.begin().await?;
    // One creator at a time across nodes: the lookup below then cannot race another
    // node's insert of the same ticket, and no sequence value is burnt by a conflict.
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(CREATE_LOCK).execute(&mut *tx).await?;
    // By ticket first (MATERIALIZED keeps the planner from starting at the status index:
    // with statistics from a quiet hour, when nothing was waiting, it would walk every
    // waiting task for each request).
    let mut ids: HashMap<String, i64> = sqlx::query_as(&format!(
        "WITH named AS MATERIALIZED (SELECT ticket_no, batch_id, status FROM tasks WHERE ticket_no = ANY($1))
         SELECT ticket_no, batch_id FROM named WHERE status IN {OPEN}"
    ))
    .bind(&ticket_nos)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .collect();
    let to_create = tasks::to_create(new, &ids);
    if !to_create.is_empty() {
        let column = |f: fn(&NewTask) -> &str| to_create.iter().map(|t| f(t)).collect::<Vec<&str>>();
        // Campaigns named for the first time start with the global settings.
        sqlx::query(
            "INSERT INTO campaigns (name, created_ms, updated_ms) SELECT DISTINCT n, $2, $2 FROM UNNEST($1::text[]) AS n
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(column(|t| &t.batch_name))
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        // Rows are inserted (and numbered) in input order.
        let inserted: Vec<(String, i64, String)> = sqlx::query_as(
            "INSERT INTO tasks (ticket_no, phone, username, ticket_type, ticket_content, batch_name, created_ms,
                 next_attempt_ms)
             SELECT t.ticket_no, t.phone, t.username, t.ticket_type, t.ticket_content, t.batch_name, $6, $6
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $7::text[])
                 WITH ORDINALITY AS t (ticket_no, phone, username, ticket_type, ticket_content, batch_name, ord)
             ORDER BY t.ord
             RETURNING ticket_no, batch_id, batch_name",
        )
        .bind(column(|t| &t.ticket_no))
        .bind(column(|t| t.phone.as_str()))
        .bind(column(|t| &t.username))
        .bind(column(|t| &t.ticket_type))
        .bind(column(|t| &t.ticket_content))
        .bind(now_ms)
        .bind(column(|t| &t.batch_name))
        .fetch_all(&mut *tx)
        .await?;
        // The request's tasks, all waiting, in their hour of `task_hours` (appended, like
        // the triggers' moves between statuses, and folded later).
        sqlx::query(
            "INSERT INTO task_hour_changes (batch_name, hour_ms, status, tasks, first_batch_id, last_batch_id)
             SELECT batch_name, start_ms, 'pending', tasks, first_batch_id, last_batch_id
             FROM json_to_recordset($1::json) AS d (batch_name text, start_ms bigint, tasks bigint,
                                                   first_batch_id bigint, last_batch_id bigint)",
        )
        .bind(json(&tasks::created_counts(&inserted, tasks::task_hour(now_ms))))
        .execute(&mut *tx)
        .await?;
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CREATED_CHANNEL)
            .bind(inserted.len().to_string())
            .execute(&mut *tx)
            .await?;
        ids.extend(inserted.into_iter().map(|(ticket_no, id, _)| (ticket_no, id)));
    }
    tx.commit().await?;
    tasks::batch_ids(new, &ids)
}

pub(super) async fn list(s: &PgStore, f: &TaskFilter) -> Result<Paged<TaskRow>> {
    if has_nul(&f.ticket_no) || has_nul(&f.phone) || has_nul(&f.batch_name) {
        return Ok(Paged { total: 0, rows: Vec::new() });
    }
    let mut conn = s.readers.get().await?;
    let mut tx = conn.snapshot().await?;
    let (seek, window) = match tasks::counters(Dialect::Postgres, s.days, f) {
        Some(q) => {
            let rows: Vec<CounterRow> =
                sqlx::query_as_with(&q.text, arguments(&q)).fetch_all(&mut *tx).await?;
            let (window, walk) = tasks::read_counters(f, &rows);
            let seek = match walk {
                tasks::Walk::Seek(seek) => seek,
                tasks::Walk::Day(day) => {
                    let q = tasks::day_hours(Dialect::Postgres, f, day.day_ms);
                    let hours: Vec<CounterRow> =
                        sqlx::query_as_with(&q.text, arguments(&q)).fetch_all(&mut *tx).await?;
                    tasks::walk_day(f, day, &hours)
                }
            };
            (seek, Some(window))
        }
        None => (None, None),
    };
    let total: i64 = match window.and_then(|w| w.total) {
        Some(total) => total,
        None => {
            let count = tasks::count(Dialect::Postgres, f);
            sqlx::query_scalar_with(&count.text, arguments(&count)).fetch_one(&mut *tx).await?
        }
    };
    let rows: Vec<TaskRow> = match tasks::page(Dialect::Postgres, f, seek, window) {
        Some(q) => sqlx::query_as_with(&q.text, arguments(&q)).fetch_all(&mut *tx).await?,
        None => Vec::new(),
    };
    tx.commit().await?;
    conn.done();
    Ok(Paged { total, rows })
}

pub(super) async fn stop(
    s: &PgStore,
    batch_ids: &[i64],
    ticket_nos: &[String],
    now_ms: i64,
) -> Result<StopOutcome> {
    let ticket_nos: Vec<&str> = ticket_nos.iter().map(String::as_str).filter(|t| !t.contains('\0')).collect();
    let mut tx = s.pool.begin().await?;
    // Planned for the lists it is given: a generic plan (the pool's default) does not
    // know how many tasks they name, and walked every waiting task, matching each
    // against the whole list (bench/RESULTS.md).
    sqlx::query("SET LOCAL plan_cache_mode = force_custom_plan").execute(&mut *tx).await?;
    // One statement: waiting tasks end as stopped, calls in progress are flagged for
    // the node making them. (SET expressions see the row as it was.)
    let changed: Vec<TaskRow> = sqlx::query_as(&format!(
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
    let (hanging_up, stopped): (Vec<TaskRow>, Vec<TaskRow>) =
        changed.into_iter().partition(|t| t.status == TaskStatus::Calling);
    outbox::emit(s, &mut tx, &NewEvent::tasks_ended(&stopped, now_ms)).await?;
    if !hanging_up.is_empty() {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(STOPPED_CHANNEL)
            .bind(hanging_up.len().to_string())
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    if !stopped.is_empty() {
        s.events.events_written();
    }
    Ok(StopOutcome { stopped: stopped.len() as u64, hanging_up: hanging_up.len() as u64 })
}
