//! The dialer's statements on PostgreSQL: claims (skipping rows another node is claiming),
//! leases, and finished attempts.
//!
//! A claim whose COMMIT got no answer (the connection dropped) may have gone through,
//! leaving its tasks 呼叫中 with no call until the lease runs out; the node's next claim
//! takes them back while their lease holds.

use std::collections::HashMap;

use sqlx::PgConnection;

use super::{PgStore, RECORD_TYPES, outbox, records};
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

/// A claim that may or may not have been committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct UnsureClaim {
    batch_id: i64,
    call_uuid: String,
    lease_until_ms: i64,
}

impl ClaimSql for PgConnection {
    async fn block(&mut self, batch_id: i64, now_ms: i64) -> Result<Option<TaskRow>> {
        Ok(sqlx::query_as(&format!(
            "UPDATE tasks SET status = 'blocked', stopped_ms = $1 WHERE batch_id = $2 RETURNING {TASK_COLUMNS}"
        ))
        .bind(now_ms)
        .bind(batch_id)
        .fetch_optional(self)
        .await?)
    }

    async fn calls_today(&mut self, phone: &str, rules: &ClaimRules) -> Result<i64> {
        // Another node counting this number waits for our commit, and then sees our
        // claims as calls in progress.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))").bind(phone).execute(&mut *self).await?;
        Ok(sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM call_records WHERE telephone = $1 AND callout_ms >= $2 AND callout_ms < $3)
                  + (SELECT COUNT(*) FROM tasks WHERE phone = $1 AND status = 'calling')",
        )
        .bind(phone)
        .bind(rules.today_from_ms)
        .bind(rules.today_until_ms)
        .fetch_one(self)
        .await?)
    }

    async fn postpone(&mut self, batch_id: i64, until_ms: i64) -> Result<()> {
        sqlx::query("UPDATE tasks SET next_attempt_ms = $1 WHERE batch_id = $2")
            .bind(until_ms)
            .bind(batch_id)
            .execute(self)
            .await?;
        Ok(())
    }
}

#[allow(clippy::too_many_arguments)] // the trait's, and the store's own
pub(super) async fn claim_due(
    s: &PgStore,
    node: &str,
    limit: u32,
    shares: &[CampaignShare],
    now_ms: i64,
    lease_until_ms: i64,
    rules: &ClaimRules,
    next_uuid: &(dyn Fn() -> String + Send + Sync),
) -> Result<Vec<ClaimedCall>> {
    let unsure: Vec<UnsureClaim> = {
        let mut unsure = s.unsure.lock().unwrap_or_else(|e| e.into_inner());
        unsure.retain(|c| c.lease_until_ms > now_ms);
        unsure.clone()
    };
    let mut tx = s.pool.begin().await?;
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
    // Each campaign's due tasks by its index, as many as the claim could take of it; rows
    // another node is claiming right now are skipped, not waited for. A paused campaign
    // gives none.
    let found: Vec<CampaignDue> = sqlx::query_as(
        "SELECT t.batch_id, t.phone, EXISTS (SELECT 1 FROM dnc_numbers d WHERE d.phone = t.phone),
                t.batch_name, t.next_attempt_ms
         FROM UNNEST($1::text[], $2::bigint[]) AS c (name, most)
         JOIN campaigns k ON k.name = c.name AND NOT k.paused
         CROSS JOIN LATERAL (
             SELECT batch_id, phone, batch_name, next_attempt_ms FROM tasks
             WHERE batch_name = c.name AND status IN ('pending', 'retry_wait') AND next_attempt_ms <= $3
             ORDER BY next_attempt_ms, batch_id
             LIMIT c.most
             FOR UPDATE SKIP LOCKED) AS t",
    )
    .bind(shares.iter().map(|c| c.name.as_str()).collect::<Vec<_>>())
    .bind(shares.iter().map(|c| i64::from(c.limit.min(limit))).collect::<Vec<_>>())
    .bind(now_ms)
    .fetch_all(&mut *tx)
    .await?;
    let due = campaigns::share_out(found, shares, limit);
    let sifted = claims::sift(&mut *tx, due, rules, now_ms, next_uuid).await?;
    outbox::emit(s, &mut tx, &NewEvent::tasks_ended(&sifted.blocked, now_ms)).await?;
    let rows: Vec<ClaimedCall> = if sifted.claim.is_empty() {
        Vec::new()
    } else {
        sqlx::query_as(&format!(
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
        .bind(sifted.claim.iter().map(|c| c.0).collect::<Vec<_>>())
        .bind(sifted.claim.iter().map(|c| c.1.as_str()).collect::<Vec<_>>())
        .fetch_all(&mut *tx)
        .await?
    };
    if let Err(e) = tx.commit().await {
        let claims = rows.iter().map(|r| UnsureClaim {
            batch_id: r.batch_id,
            call_uuid: r.call_uuid.clone(),
            lease_until_ms,
        });
        s.unsure.lock().unwrap_or_else(|e| e.into_inner()).extend(claims);
        return Err(e.into());
    }
    // The unsure claims looked at above are settled.
    if !unsure.is_empty() {
        s.unsure.lock().unwrap_or_else(|e| e.into_inner()).retain(|c| !unsure.contains(c));
    }
    if !sifted.blocked.is_empty() {
        s.events.events_written();
    }
    Ok(claims::in_due_order(&sifted.claim, rows))
}

pub(super) async fn claim_orphans(
    s: &PgStore,
    node: &str,
    own_too: bool,
    now_ms: i64,
    lease_until_ms: i64,
) -> Result<Vec<ClaimedCall>> {
    Ok(sqlx::query_as(&format!(
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
    .fetch_all(&s.pool)
    .await?)
}

pub(super) async fn mark_answered(s: &PgStore, node: &str, calls: &[AnsweredCall]) -> Result<Vec<i64>> {
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
    .fetch_all(&s.pool)
    .await?)
}

pub(super) async fn renew_leases(
    s: &PgStore,
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
    .fetch_all(&s.pool)
    .await?)
}

pub(super) async fn stop_requested(s: &PgStore, node: &str) -> Result<Vec<i64>> {
    Ok(sqlx::query_scalar(
        "SELECT batch_id FROM tasks WHERE locked_by = $1 AND status = 'calling' AND stop_requested",
    )
    .bind(node)
    .fetch_all(&s.pool)
    .await?)
}

pub(super) async fn finish_attempts(
    s: &PgStore,
    attempts: &[FinishedAttempt],
) -> Result<Vec<Option<TaskStatus>>> {
    let mut tx = s.pool.begin().await?;
    // The fence first: an attempt whose lease another claim has taken (its generation
    // bumped) moves nothing, and then leaves no record, counts or events either.
    let moves: Vec<claims::TaskMove> = attempts.iter().map(claims::TaskMove::from).collect();
    let tasks: Vec<TaskRow> = sqlx::query_as(&format!(
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
    // Each record carries its task's campaign.
    let moved: HashMap<i64, &str> = tasks.iter().map(|t| (t.batch_id, t.batch_name.as_str())).collect();
    let records: Vec<CallRecord> = attempts
        .iter()
        .filter_map(|a| {
            let campaign = moved.get(&a.batch_id)?;
            Some(CallRecord { batch_name: Some(campaign.to_string()), ..a.record() })
        })
        .collect();
    let uuids: Vec<&str> = records.iter().map(|r| r.uuid.as_str()).collect();
    // A record of the same uuid can stand only if this very write went through before
    // (a batch retried after its commit's answer was lost): replaced, counts adjusted.
    let before: Vec<CallRecord> =
        sqlx::query_as(&format!("SELECT {RECORD_COLUMNS} FROM call_records WHERE uuid = ANY($1)"))
            .bind(&uuids)
            .fetch_all(&mut *tx)
            .await?;
    sqlx::query(&format!(
        "INSERT INTO call_records ({RECORD_COLUMNS})
         SELECT {RECORD_COLUMNS} FROM json_to_recordset($1::json) AS r ({RECORD_TYPES})
         ON CONFLICT (uuid) DO UPDATE SET answered_ms = EXCLUDED.answered_ms, ended_ms = EXCLUDED.ended_ms,
             time_len = EXCLUDED.time_len, hangup_cause = EXCLUDED.hangup_cause,
             wav_path = EXCLUDED.wav_path, dialogue = EXCLUDED.dialogue, intent = EXCLUDED.intent,
             turn_latency_ms = EXCLUDED.turn_latency_ms"
    ))
    .bind(json(&records))
    .execute(&mut *tx)
    .await?;
    let (statuses, events) = attempts_moved(attempts, &tasks);
    outbox::emit(s, &mut tx, &events).await?;
    // The counts last: every call of the hour updates the same `record_stats` rows, so
    // their locks serialise all finishing calls until they commit; taken last, they are
    // held for one statement and the commit rather than for the whole transaction.
    records::apply_stats(&mut tx, &counter_deltas(s.days, &before, &records)).await?;
    super::campaigns::add_hours(&mut tx, &campaigns::campaign_deltas(&before, &records)).await?;
    tx.commit().await?;
    s.events.events_written();
    Ok(statuses)
}

pub(super) async fn max_call_uuid_between(s: &PgStore, from: &str, to: &str) -> Result<Option<String>> {
    Ok(sqlx::query_scalar(
        "SELECT MAX(u) FROM (
             SELECT MAX(uuid) AS u FROM call_records WHERE uuid BETWEEN $1 AND $2
             UNION ALL
             SELECT MAX(call_uuid) FROM tasks WHERE status = 'calling' AND call_uuid BETWEEN $1 AND $2
         ) AS m",
    )
    .bind(from)
    .bind(to)
    .fetch_one(&s.pool)
    .await?)
}

pub(super) async fn note_transfer(s: &PgStore, node: &str, transfer: &TransferNote) -> Result<bool> {
    let mut tx = s.pool.begin().await?;
    let task: Option<TaskRow> = match transfer.claim {
        None => None,
        Some((batch_id, lease_gen)) => {
            let held = sqlx::query_as(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE batch_id = $1 AND lease_gen = $2 AND locked_by = $3 AND status = 'calling' FOR SHARE"))
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
