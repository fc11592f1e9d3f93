//! The webhook outbox on SQLite.

use sqlx::SqliteConnection;

use super::SqliteStore;
use crate::store::outbox::{NewEvent, OutboxRow};
use crate::store::sql::json;
use crate::store::{EventOutcome, OutboxEvent, Result};

/// Writes webhook events into the outbox, in the caller's transaction.
pub(super) async fn emit(s: &SqliteStore, tx: &mut SqliteConnection, events: &[NewEvent<'_>]) -> Result<()> {
    let Some(events) = s.events.to_emit(events) else { return Ok(()) };
    sqlx::query(
        "INSERT INTO webhook_outbox (event_id, event_type, task_json, record_uuid, detail_json, created_ms, next_attempt_ms)
         SELECT value ->> 'event_id', value ->> 'event_type', value ->> 'task_json', value ->> 'record_uuid',
                value ->> 'detail_json',
                value ->> 'at_ms', value ->> 'at_ms'
         FROM json_each(?)",
    )
    .bind(json(events))
    .execute(tx)
    .await?;
    Ok(())
}

pub(super) async fn claim(
    s: &SqliteStore,
    now_ms: i64,
    lease_until_ms: i64,
    limit: u32,
) -> Result<Vec<OutboxEvent>> {
    let rows: Vec<OutboxRow> = sqlx::query_as(
        "UPDATE webhook_outbox SET locked_until_ms = ?1
         WHERE id IN (SELECT id FROM webhook_outbox
                      WHERE next_attempt_ms <= ?2 AND (locked_until_ms IS NULL OR locked_until_ms < ?2)
                      ORDER BY next_attempt_ms, id LIMIT ?3)
         RETURNING id, event_id, event_type, task_json, record_uuid, detail_json, created_ms, attempts",
    )
    .bind(lease_until_ms)
    .bind(now_ms)
    .bind(limit as i64)
    .fetch_all(&s.writer)
    .await?;
    rows.into_iter().map(OutboxEvent::try_from).collect()
}

pub(super) async fn settle(s: &SqliteStore, id: i64, outcome: &EventOutcome) -> Result<()> {
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
    q.execute(&s.writer).await?;
    Ok(())
}
