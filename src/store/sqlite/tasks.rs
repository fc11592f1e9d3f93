//! Tasks on SQLite: createTasks, calltask/list, stopTasks.

use std::collections::HashMap;

use super::{SqliteStore, campaigns, outbox, readers};
use crate::domain::{NewTask, TaskFilter};
use crate::store::counters::TaskTables;
use crate::store::outbox::NewEvent;
use crate::store::rows::{OPEN, TASK_COLUMNS};
use crate::store::sql::{Dialect, json};
use crate::store::{Paged, Result, StopOutcome, TaskRow, tasks};

/// The tables a recount of `task_days` reads its hours from and writes its days to.
pub(super) const COUNTER_TABLES: TaskTables = ("task_hours", "task_days");

pub(super) async fn create(s: &SqliteStore, new: &[NewTask], now_ms: i64) -> Result<Vec<i64>> {
    let ticket_nos: Vec<&str> = new.iter().map(|t| t.ticket_no.as_str()).collect();
    let mut tx = s.writer.begin().await?;
    // Looked up by ticket: the `+` keeps the planner off the status index, which would
    // walk every waiting task (bench/RESULTS.md).
    let mut ids: HashMap<String, i64> = sqlx::query_as(&format!(
        "SELECT ticket_no, batch_id FROM tasks
         WHERE +status IN {OPEN} AND ticket_no IN (SELECT value FROM json_each(?))"
    ))
    .bind(json(&ticket_nos))
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .collect();
    let to_create: Vec<[&str; 6]> = tasks::to_create(new, &ids)
        .into_iter()
        .map(|t| {
            [
                t.ticket_no.as_str(),
                t.phone.as_str(),
                &t.username,
                &t.ticket_type,
                &t.ticket_content,
                &t.batch_name,
            ]
        })
        .collect();
    if !to_create.is_empty() {
        let names: Vec<&str> = to_create.iter().map(|t| t[5]).collect();
        campaigns::ensure(&mut tx, &names, now_ms).await?;
        // In one statement (a statement per ticket costs a round trip to the connection's
        // thread each), numbered in input order.
        let created: Vec<(String, i64, String)> = sqlx::query_as(
            "INSERT INTO tasks (ticket_no, phone, username, ticket_type, ticket_content, batch_name, created_ms,
                 next_attempt_ms)
             SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, ?2, ?2
             FROM json_each(?1) ORDER BY key
             RETURNING ticket_no, batch_id, batch_name",
        )
        .bind(json(&to_create))
        .bind(now_ms)
        .fetch_all(&mut *tx)
        .await?;
        // The request's tasks, all waiting, in their hour of `task_hours` and their day of
        // `task_days` (the trigger moves them between statuses from then on). `WHERE true`:
        // without it SQLite would read ON CONFLICT as a join constraint.
        for (table, start, start_ms) in [
            ("task_hours", "hour_ms", tasks::task_hour(now_ms)),
            ("task_days", "day_ms", s.days.start(now_ms)),
        ] {
            sqlx::query(&format!(
                "INSERT INTO {table} (batch_name, {start}, status, tasks, first_batch_id, last_batch_id)
                 SELECT value ->> 'batch_name', value ->> 'start_ms', 'pending', value ->> 'tasks',
                        value ->> 'first_batch_id', value ->> 'last_batch_id'
                 FROM json_each(?) WHERE true
                 ON CONFLICT (batch_name, {start}, status) DO UPDATE SET
                     tasks = tasks + excluded.tasks,
                     first_batch_id = MIN(first_batch_id, excluded.first_batch_id),
                     last_batch_id = MAX(last_batch_id, excluded.last_batch_id)"
            ))
            .bind(json(&tasks::created_counts(&created, start_ms)))
            .execute(&mut *tx)
            .await?;
        }
        ids.extend(created.into_iter().map(|(ticket_no, id, _)| (ticket_no, id)));
    }
    let ids = tasks::batch_ids(new, &ids)?;
    tx.commit().await?;
    Ok(ids)
}

pub(super) async fn list(s: &SqliteStore, f: &TaskFilter) -> Result<Paged<TaskRow>> {
    let bounded = tasks::read_is_bounded(f);
    let (f, days) = (f.clone(), s.days);
    let read = move |conn: &rusqlite::Connection| {
        readers::snapshot(conn, |conn| {
            let counter_row = |r: &rusqlite::Row<'_>| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
            };
            let (seek, window) = match tasks::counters(Dialect::Sqlite, days, &f) {
                Some(q) => {
                    let (window, walk) = tasks::read_counters(&f, &readers::query(conn, &q, counter_row)?);
                    let seek = match walk {
                        tasks::Walk::Seek(seek) => seek,
                        tasks::Walk::Day(day) => {
                            let hours = tasks::day_hours(Dialect::Sqlite, &f, day.day_ms);
                            tasks::walk_day(&f, day, &readers::query(conn, &hours, counter_row)?)
                        }
                    };
                    (seek, Some(window))
                }
                None => (None, None),
            };
            let total = match window.and_then(|w| w.total) {
                Some(total) => total,
                None => readers::query_one(conn, &tasks::count(Dialect::Sqlite, &f))?,
            };
            let rows = match tasks::page(Dialect::Sqlite, &f, seek, window) {
                Some(q) => readers::query(conn, &q, readers::task)?,
                None => Vec::new(),
            };
            Ok(Paged { total, rows })
        })
    };
    if bounded { s.readers.read(read) } else { s.readers.read_blocking(read).await }
}

pub(super) async fn stop(
    s: &SqliteStore,
    batch_ids: &[i64],
    ticket_nos: &[String],
    now_ms: i64,
) -> Result<StopOutcome> {
    let ids = json(batch_ids);
    let tickets = json(ticket_nos);
    // One id list, so that the primary key and the ticket index find the rows (an OR
    // of the two would scan every waiting task).
    let named = "batch_id IN (SELECT value FROM json_each(?1)
                              UNION SELECT batch_id FROM tasks WHERE ticket_no IN (SELECT value FROM json_each(?2)))";
    let mut tx = s.writer.begin().await?;
    let stopped: Vec<TaskRow> = sqlx::query_as(&format!(
        "UPDATE tasks SET status = 'stopped', stopped_ms = ?3
         WHERE {named} AND status IN ('pending', 'retry_wait') RETURNING {TASK_COLUMNS}"
    ))
    .bind(&ids)
    .bind(&tickets)
    .bind(now_ms)
    .fetch_all(&mut *tx)
    .await?;
    outbox::emit(s, &mut tx, &NewEvent::tasks_ended(&stopped, now_ms)).await?;
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
        s.events.events_written();
    }
    Ok(StopOutcome { stopped: stopped.len() as u64, hanging_up })
}
