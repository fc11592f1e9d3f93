//! Campaigns on PostgreSQL: their rows, counts, pause and stop. A change every dialer
//! must see at once (a pause, a resume, new settings) is NOTIFYed in its transaction,
//! as stops are; each node's claims also read the pause itself, so none is missed.

use super::background::{CAMPAIGNS_CHANNEL, STOPPED_CHANNEL};
use super::{PgStore, outbox};
use crate::store::campaigns::CampaignHourDelta;
use crate::store::outbox::NewEvent;
use crate::store::rows::TASK_COLUMNS;
use crate::store::sql::json;
use crate::store::{CampaignCalls, CampaignCount, CampaignRow, Result, StopOutcome, TaskRow};

const CAMPAIGN_COLUMNS: &str = "name, settings, paused, created_ms, updated_ms";

async fn notify(tx: &mut sqlx::PgConnection, channel: &str, payload: &str) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, $2)").bind(channel).bind(payload).execute(tx).await?;
    Ok(())
}

pub(super) async fn save(s: &PgStore, name: &str, settings: &str, now_ms: i64) -> Result<CampaignRow> {
    let mut tx = s.pool.begin().await?;
    let row: CampaignRow = sqlx::query_as(&format!(
        "INSERT INTO campaigns (name, settings, created_ms, updated_ms) VALUES ($1, $2, $3, $3)
         ON CONFLICT (name) DO UPDATE SET settings = EXCLUDED.settings, updated_ms = EXCLUDED.updated_ms
         RETURNING {CAMPAIGN_COLUMNS}"
    ))
    .bind(name)
    .bind(settings)
    .bind(now_ms)
    .fetch_one(&mut *tx)
    .await?;
    notify(&mut tx, CAMPAIGNS_CHANNEL, name).await?;
    tx.commit().await?;
    Ok(row)
}

pub(super) async fn all(s: &PgStore) -> Result<Vec<CampaignRow>> {
    Ok(sqlx::query_as(&format!("SELECT {CAMPAIGN_COLUMNS} FROM campaigns ORDER BY name COLLATE \"C\""))
        .fetch_all(&s.pool)
        .await?)
}

pub(super) async fn counts(s: &PgStore) -> Result<Vec<CampaignCount>> {
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT batch_name, status, CAST(SUM(tasks) AS BIGINT) FROM task_counts
         GROUP BY batch_name, status HAVING SUM(tasks) <> 0",
    )
    .fetch_all(&s.pool)
    .await?;
    crate::store::campaigns::counts_of(rows)
}

pub(super) async fn calls(s: &PgStore, from_ms: i64, until_ms: i64) -> Result<Vec<CampaignCalls>> {
    Ok(sqlx::query_as(
        "SELECT batch_name AS name, outcome, CAST(SUM(calls) AS BIGINT) AS calls FROM campaign_hours
         WHERE hour_ms >= $1 AND hour_ms < $2 GROUP BY 1, 2 HAVING SUM(calls) <> 0",
    )
    .bind(from_ms)
    .bind(until_ms)
    .fetch_all(&s.pool)
    .await?)
}

/// Adds calls to `campaign_hours`, in the caller's transaction (the records' write), rows
/// in key order as `record_stats`' are.
pub(super) async fn add_hours(tx: &mut sqlx::PgConnection, deltas: &[CampaignHourDelta]) -> Result<()> {
    if deltas.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO campaign_hours (batch_name, hour_ms, outcome, calls)
         SELECT batch_name, hour_ms, outcome, calls
         FROM json_to_recordset($1::json) AS d (batch_name text, hour_ms bigint, outcome text, calls bigint)
         ORDER BY batch_name, hour_ms, outcome
         ON CONFLICT (batch_name, hour_ms, outcome) DO UPDATE SET calls = campaign_hours.calls + EXCLUDED.calls",
    )
    .bind(json(deltas))
    .execute(tx)
    .await?;
    Ok(())
}

pub(super) async fn pause(s: &PgStore, name: &str, paused: bool, now_ms: i64) -> Result<bool> {
    let mut tx = s.pool.begin().await?;
    let changed = sqlx::query("UPDATE campaigns SET paused = $1, updated_ms = $2 WHERE name = $3")
        .bind(paused)
        .bind(now_ms)
        .bind(name)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    notify(&mut tx, CAMPAIGNS_CHANNEL, name).await?;
    tx.commit().await?;
    Ok(changed > 0)
}

pub(super) async fn stop(s: &PgStore, name: &str, now_ms: i64) -> Result<Option<StopOutcome>> {
    let mut tx = s.pool.begin().await?;
    let known: Option<String> = sqlx::query_scalar("SELECT name FROM campaigns WHERE name = $1")
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
    if known.is_none() {
        return Ok(None);
    }
    // The waiting tasks by the campaign's due index; calls in progress by the index of
    // calls in progress (few), not by the campaign's tasks (many).
    let stopped: Vec<TaskRow> = sqlx::query_as(&format!(
        "UPDATE tasks SET status = 'stopped', stopped_ms = $2
         WHERE batch_name = $1 AND status IN ('pending', 'retry_wait') RETURNING {TASK_COLUMNS}"
    ))
    .bind(name)
    .bind(now_ms)
    .fetch_all(&mut *tx)
    .await?;
    outbox::emit(s, &mut tx, &NewEvent::tasks_ended(&stopped, now_ms)).await?;
    let hanging_up: Vec<i64> = sqlx::query_scalar(
        "UPDATE tasks SET stop_requested = TRUE
         WHERE batch_id IN (SELECT batch_id FROM tasks WHERE status = 'calling' AND batch_name = $1)
           AND status = 'calling' AND NOT stop_requested
         RETURNING batch_id",
    )
    .bind(name)
    .fetch_all(&mut *tx)
    .await?;
    if !hanging_up.is_empty() {
        notify(&mut tx, STOPPED_CHANNEL, &hanging_up.len().to_string()).await?;
    }
    tx.commit().await?;
    if !stopped.is_empty() {
        s.events.events_written();
    }
    Ok(Some(StopOutcome { stopped: stopped.len() as u64, hanging_up: hanging_up.len() as u64 }))
}

pub(super) async fn next_due_ms(s: &PgStore, campaigns: &[String]) -> Result<Option<i64>> {
    // Each campaign's first entry in its due index.
    Ok(sqlx::query_scalar(
        "SELECT MIN(first.next_attempt_ms) FROM UNNEST($1::text[]) AS c (name)
         CROSS JOIN LATERAL (
             SELECT next_attempt_ms FROM tasks
             WHERE batch_name = c.name AND status IN ('pending', 'retry_wait')
             ORDER BY next_attempt_ms LIMIT 1) AS first",
    )
    .bind(campaigns)
    .fetch_one(&s.pool)
    .await?)
}
