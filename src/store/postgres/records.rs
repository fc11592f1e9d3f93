//! Call records on PostgreSQL, their counters, and the do-not-call list.

use std::collections::HashSet;

use sqlx::PgConnection;

use super::{PgStore, RECORD_TYPES, arguments, has_nul};
use crate::domain::{CallType, Page, RecordFilter};
use crate::store::counters::{self, CounterDays, CounterDeltas, counter_deltas};
use crate::store::outbox::NewEvent;
use crate::store::records::{Part, SeekStep, Start};
use crate::store::rows::RECORD_COLUMNS;
use crate::store::sql::{Dialect, json};
use crate::store::{CallRecord, DncEntry, HourStat, Paged, Result, records};

/// A row of a page with the list's total beside it.
#[derive(sqlx::FromRow)]
struct Totalled<T> {
    #[sqlx(flatten)]
    row: T,
    total: i64,
}

/// The days of the database's counters (see `counters::settle_days`).
pub(super) async fn counter_days(pool: &sqlx::PgPool, wanted: CounterDays) -> Result<CounterDays> {
    let mut tx = pool.begin().await?;
    sqlx::query("LOCK TABLE counter_days IN EXCLUSIVE MODE").execute(&mut *tx).await?;
    let kept = sqlx::query_scalar("SELECT offset_ms FROM counter_days").fetch_optional(&mut *tx).await?;
    let (days, statements) = counters::settle_days(kept, wanted, super::tasks::COUNTER_TABLES);
    for statement in statements {
        sqlx::query(&statement).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(days)
}

pub(super) async fn list(s: &PgStore, f: &RecordFilter) -> Result<Paged<CallRecord>> {
    if has_nul(&f.uuid) || has_nul(&f.telephone) || has_nul(&f.extnum) || has_nul(&f.batch_name) {
        return Ok(Paged { total: 0, rows: Vec::new() });
    }
    let mut conn = s.readers.get().await?;
    let seek_parts = records::seek_parts(Dialect::Postgres, s.days, f);
    // A page with rows and no seek is one statement, its total on its rows. More statements
    // (a deep page's seek, a page past the end and its total) run in one snapshot, so that
    // they agree while calls are written; its two round trips are paid only then.
    if seek_parts.is_none() {
        let rows = page(&mut conn, s.days, f, Start::default()).await?;
        if let Some(total) = rows.first().map(|row| row.total) {
            conn.done();
            return Ok(Paged { total, rows: rows.into_iter().map(|r| r.row).collect() });
        }
    }
    let mut tx = conn.snapshot().await?;
    let start = match seek_parts {
        Some(q) => {
            let rows: Vec<Part> = sqlx::query_as_with(&q.text, arguments(&q)).fetch_all(&mut *tx).await?;
            match records::seek_step(Dialect::Postgres, s.days, f, records::parts(rows.into_iter())) {
                SeekStep::Done(start) => start,
                SeekStep::Within(q, within) => {
                    let rows: Vec<Part> =
                        sqlx::query_as_with(&q.text, arguments(&q)).fetch_all(&mut *tx).await?;
                    within.start(records::parts(rows.into_iter()))
                }
            }
        }
        None => Start::default(),
    };
    let rows = page(&mut tx, s.days, f, start).await?;
    let total = match rows.first() {
        Some(row) => row.total,
        None => {
            let q = records::total(Dialect::Postgres, s.days, f);
            sqlx::query_scalar_with(&q.text, arguments(&q)).fetch_one(&mut *tx).await?
        }
    };
    tx.commit().await?;
    conn.done();
    Ok(Paged { total, rows: rows.into_iter().map(|r| r.row).collect() })
}

/// records/list's page, each row with the list's total.
async fn page(
    conn: &mut PgConnection,
    days: CounterDays,
    f: &RecordFilter,
    start: Start,
) -> Result<Vec<Totalled<CallRecord>>> {
    let q = records::page(Dialect::Postgres, days, f, start);
    Ok(sqlx::query_as_with(&q.text, arguments(&q)).fetch_all(conn).await?)
}

pub(super) async fn call_type_of(s: &PgStore, uuid: &str) -> Result<Option<CallType>> {
    if uuid.contains('\0') {
        return Ok(None);
    }
    let mut conn = s.readers.get().await?;
    let code: Option<String> = sqlx::query_scalar("SELECT call_type FROM call_records WHERE uuid = $1")
        .bind(uuid)
        .fetch_optional(&mut *conn)
        .await?;
    conn.done();
    Ok(code.and_then(|c| c.parse().ok()))
}

pub(super) async fn get(s: &PgStore, uuid: &str) -> Result<Option<CallRecord>> {
    if uuid.contains('\0') {
        return Ok(None);
    }
    let mut conn = s.readers.get().await?;
    let row = sqlx::query_as(&format!("SELECT {RECORD_COLUMNS} FROM call_records WHERE uuid = $1"))
        .bind(uuid)
        .fetch_optional(&mut *conn)
        .await?;
    conn.done();
    Ok(row)
}

/// Stores `new` records (skipping uuids already stored) with their counters; with
/// `call_ended`, also each new record's `call.ended` event (calls with no task).
pub(super) async fn import(s: &PgStore, new: &[CallRecord], call_ended: bool) -> Result<u64> {
    let mut tx = s.pool.begin().await?;
    let inserted: Vec<String> = sqlx::query_scalar(&format!(
        "INSERT INTO call_records ({RECORD_COLUMNS})
         SELECT {RECORD_COLUMNS} FROM json_to_recordset($1::json) AS r ({RECORD_TYPES})
         ON CONFLICT (uuid) DO NOTHING
         RETURNING uuid"
    ))
    .bind(json(new))
    .fetch_all(&mut *tx)
    .await?;
    let inserted: HashSet<String> = inserted.into_iter().collect();
    apply_stats(&mut tx, &counter_deltas(s.days, [], new.iter().filter(|r| inserted.contains(&r.uuid))))
        .await?;
    let events: Vec<NewEvent> = new
        .iter()
        .filter(|r| call_ended && inserted.contains(&r.uuid))
        .map(|r| NewEvent::call_ended(&r.uuid, r.ended_ms))
        .collect();
    super::outbox::emit(s, &mut tx, &events).await?;
    tx.commit().await?;
    if !events.is_empty() {
        s.events.events_written();
    }
    Ok(inserted.len() as u64)
}

/// Keeps `record_stats`, `record_talk`, `record_slots` and `extension_days` exact, in the
/// caller's transaction. The rows are changed in key order, so that nodes writing at once never
/// deadlock.
pub(super) async fn apply_stats(tx: &mut PgConnection, all: &CounterDeltas) -> Result<()> {
    if all.is_empty() {
        return Ok(());
    }
    let deltas = &all.stats;
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
        "INSERT INTO record_talk (call_type, batch_name, span_ms, level, bucket, start_ms, calls)
         SELECT call_type, batch_name, span_ms, level, bucket, start_ms, calls
         FROM json_to_recordset($1::json)
              AS d (call_type text, batch_name text, span_ms bigint, level int, bucket bigint, start_ms bigint,
                    calls bigint)
         ORDER BY call_type, batch_name, span_ms, level, bucket, start_ms
         ON CONFLICT (call_type, batch_name, span_ms, level, bucket, start_ms)
         DO UPDATE SET calls = record_talk.calls + EXCLUDED.calls",
    )
    .bind(json(&all.talk))
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO record_slots (call_type, batch_name, slot_ms, time_len, calls)
         SELECT call_type, batch_name, slot_ms, time_len, calls
         FROM json_to_recordset($1::json)
              AS d (call_type text, batch_name text, slot_ms bigint, time_len bigint, calls bigint)
         ORDER BY call_type, batch_name, slot_ms, time_len
         ON CONFLICT (call_type, batch_name, slot_ms, time_len) DO UPDATE SET calls = record_slots.calls + EXCLUDED.calls",
    )
    .bind(json(&all.slots))
    .execute(&mut *tx)
    .await?;
    if !all.extensions.is_empty() {
        sqlx::query(
            "INSERT INTO extension_days (call_type, extnum, day_ms, calls)
             SELECT call_type, extnum, day_ms, calls
             FROM json_to_recordset($1::json) AS d (call_type text, extnum text, day_ms bigint, calls bigint)
             ORDER BY call_type, extnum, day_ms
             ON CONFLICT (call_type, extnum, day_ms) DO UPDATE SET calls = extension_days.calls + EXCLUDED.calls",
        )
        .bind(json(&all.extensions))
        .execute(tx)
        .await?;
    }
    Ok(())
}

pub(super) async fn hourly_stats(
    s: &PgStore,
    call_type: CallType,
    from_ms: i64,
    until_ms: i64,
) -> Result<Vec<HourStat>> {
    let mut conn = s.readers.get().await?;
    let rows = sqlx::query_as(
        "SELECT hour_ms, outcome, calls, talk_secs FROM record_stats
         WHERE call_type = $1 AND hour_ms >= $2 AND hour_ms < $3 AND calls <> 0 ORDER BY hour_ms, outcome",
    )
    .bind(call_type.code())
    .bind(from_ms)
    .bind(until_ms)
    .fetch_all(&mut *conn)
    .await?;
    conn.done();
    Ok(rows)
}

pub(super) async fn dnc_add(s: &PgStore, phones: &[String], reason: &str, now_ms: i64) -> Result<u64> {
    Ok(sqlx::query(
        "INSERT INTO dnc_numbers (phone, reason, created_ms) SELECT p, $2, $3 FROM UNNEST($1::text[]) AS p
         ON CONFLICT (phone) DO NOTHING",
    )
    .bind(phones)
    .bind(reason)
    .bind(now_ms)
    .execute(&s.pool)
    .await?
    .rows_affected())
}

pub(super) async fn dnc_remove(s: &PgStore, phones: &[String]) -> Result<u64> {
    Ok(sqlx::query("DELETE FROM dnc_numbers WHERE phone = ANY($1)")
        .bind(phones)
        .execute(&s.pool)
        .await?
        .rows_affected())
}

pub(super) async fn dnc_list(s: &PgStore, phone: Option<&str>, page: Page) -> Result<Paged<DncEntry>> {
    let mut conn = s.readers.get().await?;
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
    let rows =
        rows.into_iter().map(|(phone, reason, created_ms)| DncEntry { phone, reason, created_ms }).collect();
    Ok(Paged { total, rows })
}
