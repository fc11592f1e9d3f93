//! Call records on SQLite, their counters, and the do-not-call list.

use std::collections::HashSet;

use rusqlite::{OptionalExtension, params};
use sqlx::SqliteConnection;

use super::{SqliteStore, readers};
use crate::domain::{CallType, Page, RecordFilter};
use crate::store::counters::{self, CounterDays, CounterDeltas, counter_deltas};
use crate::store::outbox::NewEvent;
use crate::store::records::{Part, SeekStep, Start};
use crate::store::rows::RECORD_COLUMNS;
use crate::store::sql::{Dialect, json};
use crate::store::{CallRecord, DncEntry, HourStat, Paged, Result, records};

/// `value ->> 'a', value ->> 'b'` for the columns `a, b`: a `json_each` row's fields.
pub(super) fn json_fields(columns: &str) -> String {
    let fields: Vec<String> = columns.split(',').map(|c| format!("value ->> '{}'", c.trim())).collect();
    fields.join(", ")
}

/// Adds a JSON list of `StatsDelta`s to `record_stats`. `WHERE true`: without it SQLite
/// would read ON CONFLICT as a join constraint.
pub(super) const ADD_STATS: &str = "INSERT INTO record_stats (call_type, hour_ms, outcome, calls, talk_secs)
     SELECT value ->> 'call_type', value ->> 'hour_ms', value ->> 'outcome', value ->> 'calls', value ->> 'talk_secs'
     FROM json_each(?) WHERE true
     ON CONFLICT (call_type, hour_ms, outcome)
     DO UPDATE SET calls = record_stats.calls + excluded.calls, talk_secs = record_stats.talk_secs + excluded.talk_secs";

/// Adds a JSON list of `TalkDelta`s to `record_talk`.
pub(super) const ADD_TALK: &str = "INSERT INTO record_talk (call_type, batch_name, span_ms, level, bucket, start_ms, calls)
     SELECT value ->> 'call_type', value ->> 'batch_name', value ->> 'span_ms', value ->> 'level', value ->> 'bucket',
            value ->> 'start_ms', value ->> 'calls'
     FROM json_each(?) WHERE true
     ON CONFLICT (call_type, batch_name, span_ms, level, bucket, start_ms)
     DO UPDATE SET calls = record_talk.calls + excluded.calls";

/// Adds a JSON list of `SlotDelta`s to `record_slots`.
const ADD_SLOTS: &str = "INSERT INTO record_slots (call_type, batch_name, slot_ms, time_len, calls)
     SELECT value ->> 'call_type', value ->> 'batch_name', value ->> 'slot_ms', value ->> 'time_len', value ->> 'calls'
     FROM json_each(?) WHERE true
     ON CONFLICT (call_type, batch_name, slot_ms, time_len) DO UPDATE SET calls = record_slots.calls + excluded.calls";

/// Adds a JSON list of `ExtensionDelta`s to `extension_days`.
const ADD_EXTENSIONS: &str = "INSERT INTO extension_days (call_type, extnum, day_ms, calls)
     SELECT value ->> 'call_type', value ->> 'extnum', value ->> 'day_ms', value ->> 'calls'
     FROM json_each(?) WHERE true
     ON CONFLICT (call_type, extnum, day_ms) DO UPDATE SET calls = extension_days.calls + excluded.calls";

/// Keeps `record_stats`, `record_talk`, `record_slots` and `extension_days` exact, in the
/// caller's transaction.
pub(super) async fn apply_stats(tx: &mut SqliteConnection, deltas: &CounterDeltas) -> Result<()> {
    if deltas.is_empty() {
        return Ok(());
    }
    sqlx::query(ADD_STATS).bind(json(&deltas.stats)).execute(&mut *tx).await?;
    sqlx::query(ADD_TALK).bind(json(&deltas.talk)).execute(&mut *tx).await?;
    sqlx::query(ADD_SLOTS).bind(json(&deltas.slots)).execute(&mut *tx).await?;
    if !deltas.extensions.is_empty() {
        sqlx::query(ADD_EXTENSIONS).bind(json(&deltas.extensions)).execute(tx).await?;
    }
    Ok(())
}

/// The days of the database's counters (see `counters::settle_days`).
pub(super) async fn counter_days(writer: &sqlx::SqlitePool, wanted: CounterDays) -> Result<CounterDays> {
    let mut tx = writer.begin().await?;
    let kept = sqlx::query_scalar("SELECT offset_ms FROM counter_days").fetch_optional(&mut *tx).await?;
    let (days, statements) = counters::settle_days(kept, wanted, super::tasks::COUNTER_TABLES);
    for statement in statements {
        sqlx::query(&statement).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(days)
}

pub(super) async fn list(s: &SqliteStore, f: &RecordFilter) -> Result<Paged<CallRecord>> {
    let (f, days) = (f.clone(), s.days);
    let bounded = records::read_is_bounded(&f);
    let read = move |conn: &rusqlite::Connection| {
        readers::snapshot(conn, |conn| {
            // The seek's rows are read only as far as its walk goes.
            let part =
                |r: &rusqlite::Row<'_>| -> rusqlite::Result<Part> { Ok((r.get(0)?, r.get(1)?, r.get(2)?)) };
            let start = match records::seek_parts(Dialect::Sqlite, days, &f) {
                Some(q) => match readers::query_lazily(conn, &q, part, |rows| {
                    records::seek_step(Dialect::Sqlite, days, &f, records::parts(rows))
                })? {
                    SeekStep::Done(start) => start,
                    SeekStep::Within(q, within) => {
                        readers::query_lazily(conn, &q, part, |rows| within.start(records::parts(rows)))?
                    }
                },
                None => Start::default(),
            };
            let page = records::page(Dialect::Sqlite, days, &f, start);
            let rows = readers::query(conn, &page, |row| {
                Ok((readers::record(row)?, row.get(readers::RECORD_WIDTH)?))
            })?;
            let total = match rows.first() {
                Some((_, total)) => *total,
                None => readers::query_one(conn, &records::total(Dialect::Sqlite, days, &f))?,
            };
            Ok(Paged { total, rows: rows.into_iter().map(|(r, _)| r).collect() })
        })
    };
    if bounded { s.readers.read(read) } else { s.readers.read_blocking(read).await }
}

pub(super) async fn call_type_of(s: &SqliteStore, uuid: &str) -> Result<Option<CallType>> {
    let code: Option<String> = s.readers.read(|conn| {
        conn.prepare_cached("SELECT call_type FROM call_records WHERE uuid = ?")?
            .query_row([uuid], |row| row.get(0))
            .optional()
    })?;
    Ok(code.and_then(|c| c.parse().ok()))
}

pub(super) async fn get(s: &SqliteStore, uuid: &str) -> Result<Option<CallRecord>> {
    s.readers.read(|conn| {
        conn.prepare_cached(&format!("SELECT {RECORD_COLUMNS} FROM call_records WHERE uuid = ?"))?
            .query_row([uuid], readers::record)
            .optional()
    })
}

/// Stores `new` records (skipping uuids already stored) with their counters; with
/// `call_ended`, also each new record's `call.ended` event (calls with no task).
pub(super) async fn import(s: &SqliteStore, new: &[CallRecord], call_ended: bool) -> Result<u64> {
    let mut tx = s.writer.begin().await?;
    // `WHERE true`: without it SQLite would read ON CONFLICT as a join constraint.
    let inserted: Vec<String> = sqlx::query_scalar(&format!(
        "INSERT INTO call_records ({RECORD_COLUMNS}) SELECT {} FROM json_each(?) WHERE true
         ON CONFLICT (uuid) DO NOTHING
         RETURNING uuid",
        json_fields(RECORD_COLUMNS)
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

pub(super) async fn hourly_stats(
    s: &SqliteStore,
    call_type: CallType,
    from_ms: i64,
    until_ms: i64,
) -> Result<Vec<HourStat>> {
    // A range of any length: a read in proportion to it.
    s.readers
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

pub(super) async fn dnc_add(s: &SqliteStore, phones: &[String], reason: &str, now_ms: i64) -> Result<u64> {
    let mut tx = s.writer.begin().await?;
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

pub(super) async fn dnc_remove(s: &SqliteStore, phones: &[String]) -> Result<u64> {
    Ok(sqlx::query("DELETE FROM dnc_numbers WHERE phone IN (SELECT value FROM json_each(?))")
        .bind(json(phones))
        .execute(&s.writer)
        .await?
        .rows_affected())
}

pub(super) async fn dnc_list(s: &SqliteStore, phone: Option<&str>, page: Page) -> Result<Paged<DncEntry>> {
    let phone = phone.map(str::to_string);
    let (size, offset) = (page.size as i64, page.offset());
    // The total counts the list: a read in proportion to it.
    s.readers
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
