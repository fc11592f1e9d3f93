//! The dialer's statements on SQLite: claims, leases, and finished attempts.
//!
//! NOT INDEXED in each `UPDATE tasks … FROM json_each`: the list drives, each task found
//! by its key; left to itself the planner walks the status index and scans the list for
//! every task.

use std::collections::HashMap;

use sqlx::SqliteConnection;

use super::records::{apply_stats, json_fields};
use super::{SqliteStore, outbox};
use crate::domain::TaskStatus;
use crate::store::campaigns::{self, CampaignDue};
use crate::store::claims::{self, ClaimSql};
use crate::store::counters::counter_deltas;
use crate::store::outbox::{NewEvent, TransferNote, attempts_moved};
use crate::store::rows::{CLAIMED_COLUMNS, RECORD_COLUMNS, TASK_COLUMNS};
use crate::store::sql::json;
use crate::store::{
    AnsweredCall, CallRecord, CampaignShare, ClaimRules, ClaimedCall, FinishedAttempt, Result, TaskRow,
};

impl ClaimSql for SqliteConnection {
    async fn block(&mut self, batch_id: i64, now_ms: i64) -> Result<Option<TaskRow>> {
        Ok(sqlx::query_as(&format!(
            "UPDATE tasks SET status = 'blocked', stopped_ms = ?
             WHERE batch_id = ? AND status IN ('pending', 'retry_wait') RETURNING {TASK_COLUMNS}"
        ))
        .bind(now_ms)
        .bind(batch_id)
        .fetch_optional(self)
        .await?)
    }

    async fn calls_today(&mut self, phone: &str, rules: &ClaimRules) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM call_records WHERE telephone = ?1 AND callout_ms >= ?2 AND callout_ms < ?3)
                  + (SELECT COUNT(*) FROM tasks WHERE phone = ?1 AND status = 'calling')",
        )
        .bind(phone)
        .bind(rules.today_from_ms)
        .bind(rules.today_until_ms)
        .fetch_one(self)
        .await?)
    }

    async fn postpone(&mut self, batch_id: i64, until_ms: i64) -> Result<()> {
        sqlx::query("UPDATE tasks SET next_attempt_ms = ? WHERE batch_id = ?")
            .bind(until_ms)
            .bind(batch_id)
            .execute(self)
            .await?;
        Ok(())
    }
}

#[allow(clippy::too_many_arguments)] // the trait's, and the store's own
pub(super) async fn claim_due(
    s: &SqliteStore,
    node: &str,
    limit: u32,
    shares: &[CampaignShare],
    now_ms: i64,
    lease_until_ms: i64,
    rules: &ClaimRules,
    next_uuid: &(dyn Fn() -> String + Send + Sync),
) -> Result<Vec<ClaimedCall>> {
    let mut tx = s.writer.begin().await?;
    // Each campaign's due tasks by its index, as many as the claim could take of it. A
    // paused campaign gives none.
    let paused: Vec<String> =
        sqlx::query_scalar("SELECT name FROM campaigns WHERE paused = 1").fetch_all(&mut *tx).await?;
    let open: Vec<&CampaignShare> = shares.iter().filter(|c| !paused.contains(&c.name)).collect();
    let mut found: Vec<CampaignDue> = Vec::new();
    // In chunks: SQLite takes at most 500 terms in a compound SELECT.
    for chunk in open.chunks(100) {
        let sql = super::campaigns::due_by_campaign(chunk.len());
        let mut q = sqlx::query_as(&sql);
        for c in chunk {
            q = q.bind(c.name.as_str()).bind(now_ms).bind(i64::from(c.limit.min(limit)));
        }
        found.extend(q.fetch_all(&mut *tx).await?);
    }
    let due = campaigns::share_out(found, shares, limit);
    let sifted = claims::sift(&mut *tx, due, rules, now_ms, next_uuid).await?;
    outbox::emit(s, &mut tx, &NewEvent::tasks_ended(&sifted.blocked, now_ms)).await?;
    // All the claims in one statement. The status guard makes them safe even against
    // another process on the file.
    let claimed: Vec<ClaimedCall> = if sifted.claim.is_empty() {
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
        .bind(json(&sifted.claim))
        .fetch_all(&mut *tx)
        .await?
    };
    tx.commit().await?;
    if !sifted.blocked.is_empty() {
        s.events.events_written();
    }
    Ok(claims::in_due_order(&sifted.claim, claimed))
}

pub(super) async fn claim_orphans(
    s: &SqliteStore,
    node: &str,
    own_too: bool,
    now_ms: i64,
    lease_until_ms: i64,
) -> Result<Vec<ClaimedCall>> {
    Ok(sqlx::query_as(&format!(
        "UPDATE tasks SET locked_by = ?1, locked_until_ms = ?2, lease_gen = lease_gen + 1
         WHERE status = 'calling' AND (locked_until_ms < ?3 OR (?4 AND locked_by = ?1))
         RETURNING {CLAIMED_COLUMNS}"
    ))
    .bind(node)
    .bind(lease_until_ms)
    .bind(now_ms)
    .bind(own_too)
    .fetch_all(&s.writer)
    .await?)
}

pub(super) async fn mark_answered(s: &SqliteStore, node: &str, calls: &[AnsweredCall]) -> Result<Vec<i64>> {
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
    .fetch_all(&s.writer)
    .await?)
}

pub(super) async fn renew_leases(
    s: &SqliteStore,
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
    .fetch_all(&s.writer)
    .await?)
}

pub(super) async fn stop_requested(s: &SqliteStore, node: &str) -> Result<Vec<i64>> {
    s.readers.read(|conn| {
        conn.prepare_cached(
            "SELECT batch_id FROM tasks WHERE locked_by = ? AND status = 'calling' AND stop_requested = 1",
        )?
        .query_map([node], |row| row.get(0))?
        .collect()
    })
}

pub(super) async fn finish_attempts(
    s: &SqliteStore,
    attempts: &[FinishedAttempt],
) -> Result<Vec<Option<TaskStatus>>> {
    let mut tx = s.writer.begin().await?;
    // The fence first: an attempt whose lease another claim has taken (its generation
    // bumped) moves nothing, and then leaves no record, counts or events either.
    let moves: Vec<claims::TaskMove> = attempts.iter().map(claims::TaskMove::from).collect();
    let tasks: Vec<TaskRow> = sqlx::query_as(&format!(
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
    // Each record carries its task's campaign.
    let moved: HashMap<i64, &str> = tasks.iter().map(|t| (t.batch_id, t.batch_name.as_str())).collect();
    let records: Vec<CallRecord> = attempts
        .iter()
        .filter_map(|a| {
            let campaign = moved.get(&a.batch_id)?;
            Some(CallRecord { batch_name: Some(campaign.to_string()), ..a.record() })
        })
        .collect();
    if !records.is_empty() {
        let uuids: Vec<&str> = records.iter().map(|r| r.uuid.as_str()).collect();
        // A record of the same uuid can stand only if this very write went through
        // before (a batch retried after its commit's answer was lost): replaced, counts
        // adjusted.
        let before: Vec<CallRecord> = sqlx::query_as(&format!(
            "SELECT {RECORD_COLUMNS} FROM call_records WHERE uuid IN (SELECT value FROM json_each(?))"
        ))
        .bind(json(&uuids))
        .fetch_all(&mut *tx)
        .await?;
        apply_stats(&mut tx, &counter_deltas(s.days, &before, &records)).await?;
        super::campaigns::add_hours(&mut tx, &campaigns::campaign_deltas(&before, &records)).await?;
        // `WHERE true`: without it SQLite would read ON CONFLICT as a join constraint.
        sqlx::query(&format!(
            "INSERT INTO call_records ({RECORD_COLUMNS}) SELECT {} FROM json_each(?) WHERE true
             ON CONFLICT (uuid) DO UPDATE SET answered_ms = excluded.answered_ms, ended_ms = excluded.ended_ms,
                 time_len = excluded.time_len, hangup_cause = excluded.hangup_cause,
                 wav_path = excluded.wav_path, dialogue = excluded.dialogue, intent = excluded.intent,
                 turn_latency_ms = excluded.turn_latency_ms",
            json_fields(RECORD_COLUMNS)
        ))
        .bind(json(&records))
        .execute(&mut *tx)
        .await?;
    }
    let (statuses, events) = attempts_moved(attempts, &tasks);
    outbox::emit(s, &mut tx, &events).await?;
    tx.commit().await?;
    s.events.events_written();
    Ok(statuses)
}

pub(super) async fn max_call_uuid_between(s: &SqliteStore, from: &str, to: &str) -> Result<Option<String>> {
    s.readers.read(|conn| {
        conn.prepare_cached(
            "SELECT MAX(u) FROM (
                 SELECT MAX(uuid) AS u FROM call_records WHERE uuid BETWEEN ?1 AND ?2
                 UNION ALL
                 SELECT MAX(call_uuid) FROM tasks WHERE status = 'calling' AND call_uuid BETWEEN ?1 AND ?2)",
        )?
        .query_row([from, to], |row| row.get(0))
    })
}

pub(super) async fn note_transfer(s: &SqliteStore, node: &str, transfer: &TransferNote) -> Result<bool> {
    let mut tx = s.writer.begin().await?;
    let task: Option<TaskRow> = match transfer.claim {
        None => None,
        Some((batch_id, lease_gen)) => {
            let held = sqlx::query_as(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE batch_id = ? AND lease_gen = ? AND locked_by = ? AND status = 'calling'"))
                .bind(batch_id)
                .bind(lease_gen)
                .bind(node)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(task) = held else { return Ok(false) };
            Some(task)
        }
    };
    outbox::emit(s, &mut tx, &[NewEvent::transferred(task.as_ref(), transfer)]).await?;
    tx.commit().await?;
    s.events.events_written();
    Ok(true)
}
