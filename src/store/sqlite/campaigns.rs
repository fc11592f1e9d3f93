//! Campaigns on SQLite: their rows, counts, pause and stop, and the dialer's look at
//! each campaign's due tasks.

use sqlx::SqliteConnection;

use super::{SqliteStore, outbox};
use crate::domain::TaskStatus;
use crate::store::campaigns::CampaignHourDelta;
use crate::store::outbox::NewEvent;
use crate::store::rows::TASK_COLUMNS;
use crate::store::sql::json;
use crate::store::{CampaignCalls, CampaignCount, CampaignRow, Result, StopOutcome, TaskRow};

const CAMPAIGN_COLUMNS: &str = "name, settings, paused, created_ms, updated_ms";

/// One campaign's due tasks, in the order they fell due, for each of `n` campaigns
/// (bound: name, now, most): `(batch_id, phone, do-not-call, batch_name, next_attempt_ms)`.
/// INDEXED BY: without statistics the planner may take the status index and sort every
/// waiting task.
pub(super) fn due_by_campaign(n: usize) -> String {
    let one = "SELECT * FROM (SELECT batch_id, phone, EXISTS (SELECT 1 FROM dnc_numbers d WHERE d.phone = tasks.phone),
                   batch_name, next_attempt_ms
               FROM tasks INDEXED BY tasks_campaign_due
               WHERE batch_name = ? AND status IN ('pending', 'retry_wait') AND next_attempt_ms <= ?
               ORDER BY next_attempt_ms, batch_id LIMIT ?)";
    vec![one; n].join(" UNION ALL ")
}

/// Creates the campaigns named that do not exist yet, with the global settings, and
/// their counters, in the caller's transaction (createTasks').
pub(super) async fn ensure(tx: &mut SqliteConnection, names: &[&str], now_ms: i64) -> Result<()> {
    let created: Vec<String> = sqlx::query_scalar(
        "INSERT INTO campaigns (name, created_ms, updated_ms)
         SELECT DISTINCT value, ?2, ?2 FROM json_each(?1) WHERE true
         ON CONFLICT (name) DO NOTHING RETURNING name",
    )
    .bind(json(names))
    .bind(now_ms)
    .fetch_all(&mut *tx)
    .await?;
    add_counters(tx, &created).await
}

/// A row of `task_counts` for every status of each campaign: the triggers only update.
async fn add_counters(tx: &mut SqliteConnection, names: &[String]) -> Result<()> {
    if names.is_empty() {
        return Ok(());
    }
    let statuses: Vec<&str> = TaskStatus::ALL.iter().map(|s| s.db_name()).collect();
    sqlx::query(
        "INSERT INTO task_counts (batch_name, status, tasks)
         SELECT n.value, s.value, 0 FROM json_each(?1) AS n, json_each(?2) AS s WHERE true
         ON CONFLICT (batch_name, status) DO NOTHING",
    )
    .bind(json(names))
    .bind(json(&statuses))
    .execute(tx)
    .await?;
    Ok(())
}

pub(super) async fn save(s: &SqliteStore, name: &str, settings: &str, now_ms: i64) -> Result<CampaignRow> {
    let mut tx = s.writer.begin().await?;
    let row: CampaignRow = sqlx::query_as(&format!(
        "INSERT INTO campaigns (name, settings, created_ms, updated_ms) VALUES (?1, ?2, ?3, ?3)
         ON CONFLICT (name) DO UPDATE SET settings = excluded.settings, updated_ms = excluded.updated_ms
         RETURNING {CAMPAIGN_COLUMNS}"
    ))
    .bind(name)
    .bind(settings)
    .bind(now_ms)
    .fetch_one(&mut *tx)
    .await?;
    add_counters(&mut tx, &[name.to_string()]).await?;
    tx.commit().await?;
    Ok(row)
}

pub(super) async fn all(s: &SqliteStore) -> Result<Vec<CampaignRow>> {
    s.readers.read(|conn| {
        conn.prepare_cached(&format!("SELECT {CAMPAIGN_COLUMNS} FROM campaigns ORDER BY name"))?
            .query_map([], |row| {
                Ok(CampaignRow {
                    name: row.get(0)?,
                    settings: row.get(1)?,
                    paused: row.get(2)?,
                    created_ms: row.get(3)?,
                    updated_ms: row.get(4)?,
                })
            })?
            .collect()
    })
}

pub(super) async fn counts(s: &SqliteStore) -> Result<Vec<CampaignCount>> {
    let rows: Vec<(String, String, i64)> = s.readers.read(|conn| {
        conn.prepare_cached("SELECT batch_name, status, tasks FROM task_counts WHERE tasks <> 0")?
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
            .collect()
    })?;
    crate::store::campaigns::counts_of(rows)
}

pub(super) async fn calls(s: &SqliteStore, from_ms: i64, until_ms: i64) -> Result<Vec<CampaignCalls>> {
    s.readers.read(|conn| {
        conn.prepare_cached(
            "SELECT batch_name, outcome, SUM(calls) FROM campaign_hours
             WHERE hour_ms >= ? AND hour_ms < ? GROUP BY 1, 2 HAVING SUM(calls) <> 0",
        )?
        .query_map([from_ms, until_ms], |row| {
            Ok(CampaignCalls { name: row.get(0)?, outcome: row.get(1)?, calls: row.get(2)? })
        })?
        .collect()
    })
}

/// Adds calls to `campaign_hours`, in the caller's transaction (the records' write).
pub(super) async fn add_hours(tx: &mut SqliteConnection, deltas: &[CampaignHourDelta]) -> Result<()> {
    if deltas.is_empty() {
        return Ok(());
    }
    // `WHERE true`: without it SQLite would read ON CONFLICT as a join constraint.
    sqlx::query(
        "INSERT INTO campaign_hours (batch_name, hour_ms, outcome, calls)
         SELECT value ->> 'batch_name', value ->> 'hour_ms', value ->> 'outcome', value ->> 'calls'
         FROM json_each(?) WHERE true
         ON CONFLICT (batch_name, hour_ms, outcome) DO UPDATE SET calls = campaign_hours.calls + excluded.calls",
    )
    .bind(json(deltas))
    .execute(tx)
    .await?;
    Ok(())
}

pub(super) async fn pause(s: &SqliteStore, name: &str, paused: bool, now_ms: i64) -> Result<bool> {
    let changed = sqlx::query("UPDATE campaigns SET paused = ?, updated_ms = ? WHERE name = ?")
        .bind(paused)
        .bind(now_ms)
        .bind(name)
        .execute(&s.writer)
        .await?
        .rows_affected();
    Ok(changed > 0)
}

pub(super) async fn stop(s: &SqliteStore, name: &str, now_ms: i64) -> Result<Option<StopOutcome>> {
    let mut tx = s.writer.begin().await?;
    let known: Option<String> = sqlx::query_scalar("SELECT name FROM campaigns WHERE name = ?")
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
    if known.is_none() {
        return Ok(None);
    }
    // The waiting tasks by the campaign's due index; calls in progress by the index of
    // calls in progress (few), not by the campaign's tasks (many).
    let stopped: Vec<TaskRow> = sqlx::query_as(&format!(
        "UPDATE tasks INDEXED BY tasks_campaign_due SET status = 'stopped', stopped_ms = ?2
         WHERE batch_name = ?1 AND status IN ('pending', 'retry_wait') RETURNING {TASK_COLUMNS}"
    ))
    .bind(name)
    .bind(now_ms)
    .fetch_all(&mut *tx)
    .await?;
    outbox::emit(s, &mut tx, &NewEvent::tasks_ended(&stopped, now_ms)).await?;
    let hanging_up = sqlx::query(
        "UPDATE tasks INDEXED BY tasks_calling SET stop_requested = 1
         WHERE +batch_name = ? AND status = 'calling' AND stop_requested = 0",
    )
    .bind(name)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    if !stopped.is_empty() {
        s.events.events_written();
    }
    Ok(Some(StopOutcome { stopped: stopped.len() as u64, hanging_up }))
}

pub(super) async fn next_due_ms(s: &SqliteStore, campaigns: &[String]) -> Result<Option<i64>> {
    let names = json(campaigns);
    s.readers.read(|conn| {
        // Each campaign's first entry in its due index.
        conn.prepare_cached(
            "SELECT MIN((SELECT next_attempt_ms FROM tasks INDEXED BY tasks_campaign_due
                         WHERE batch_name = c.value AND status IN ('pending', 'retry_wait')
                         ORDER BY next_attempt_ms LIMIT 1))
             FROM json_each(?) AS c",
        )?
        .query_row([names], |row| row.get(0))
    })
}
