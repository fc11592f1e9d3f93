//! `callcenter seed` on SQLite: one transaction on a connection of its own, the rows of
//! `seed::SeedPlan` made on one thread and inserted on another through a prepared
//! statement, the counters
//! summed as the rows go in (a recount afterwards would read the whole table again),
//! the secondary indexes dropped for the load and built once over the loaded rows
//! (several times faster than keeping them up to date row by row).

use std::path::Path;
use std::sync::mpsc;

use rusqlite::{Connection, params};

use super::SqliteStore;
use super::records::ADD_STATS;
use super::tasks::COUNTER_TABLES;
use crate::store::counters::{
    CounterDays, StatsTally, TalkTally, recount_extensions, recount_slots, recount_task_days,
};
use crate::store::seed::{SEED_CAMPAIGN, SeedPlan};
use crate::store::sql::json;
use crate::store::{CallRecord, Result};

/// Recounts `task_hours` from the tasks, after the seed's load: the rows of every task
/// (`counters::EVERY_CAMPAIGN`) and of each campaign (then `task_days` from them).
const RECOUNT_TASK_HOURS: [&str; 2] = [
    "DELETE FROM task_hours",
    "INSERT INTO task_hours (batch_name, hour_ms, status, tasks, first_batch_id, last_batch_id)
     SELECT '', (created_ms / 3600000) * 3600000, status, COUNT(*), MIN(batch_id), MAX(batch_id)
     FROM tasks GROUP BY 2, 3
     UNION ALL
     SELECT batch_name, (created_ms / 3600000) * 3600000, status, COUNT(*), MIN(batch_id), MAX(batch_id)
     FROM tasks GROUP BY 1, 2, 3",
];

/// Adds one `TalkDelta` to `record_talk`.
const ADD_TALK_ROW: &str =
    "INSERT INTO record_talk (call_type, batch_name, span_ms, level, bucket, start_ms, calls)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
     ON CONFLICT (call_type, batch_name, span_ms, level, bucket, start_ms)
     DO UPDATE SET calls = record_talk.calls + excluded.calls";

/// Adds the seeded AI calls (all in `seed::SEED_CAMPAIGN`) to `campaign_hours`, from the
/// `record_stats` changes of the load.
const ADD_CAMPAIGN_HOURS: &str = "INSERT INTO campaign_hours (batch_name, hour_ms, outcome, calls)
     SELECT ?2, value ->> 'hour_ms', value ->> 'outcome', value ->> 'calls'
     FROM json_each(?1) WHERE value ->> 'call_type' = '02'
     ON CONFLICT (batch_name, hour_ms, outcome) DO UPDATE SET calls = campaign_hours.calls + excluded.calls";

/// Rows handed from the making thread to the inserting one at a time.
const BATCH: u64 = 4096;

pub(super) async fn load(
    s: &SqliteStore,
    records: u64,
    tasks: u64,
    now_ms: i64,
    utc_offset_secs: i32,
) -> Result<()> {
    let plan = SeedPlan::new(records, tasks, now_ms, utc_offset_secs);
    // A rollback journal for the load instead of the WAL: in the WAL every loaded page
    // would be written twice (into the WAL, then by the checkpoint into the database).
    // The journal keeps the load atomic and costs nothing for the pages past the
    // file's old end, which is where a load goes. Switched here, on the connection
    // that put the file in WAL mode, while it is the only one open.
    sqlx::query("PRAGMA journal_mode = DELETE").execute(&s.writer).await?;
    let (path, days) = (s.path.clone(), s.days);
    let loaded = tokio::task::spawn_blocking(move || load_file(&path, plan, days))
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    sqlx::query("PRAGMA journal_mode = WAL").execute(&s.writer).await?;
    loaded
}

fn load_file(path: &Path, plan: SeedPlan, days: CounterDays) -> Result<()> {
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    // Helper threads for the sorts of the index builds, which sort runs of the page
    // cache's size in parallel (a little faster at 10M records: bench/RESULTS.md).
    conn.pragma_update(None, "cache_size", -16384)?;
    conn.pragma_update(None, "threads", 4)?;
    let tx = conn.transaction()?;
    let indexes: Vec<(String, String)> = tx
        .prepare(
            "SELECT name, sql FROM sqlite_master
             WHERE type = 'index' AND tbl_name IN ('call_records', 'tasks') AND sql IS NOT NULL",
        )?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (name, _) in &indexes {
        tx.execute(&format!("DROP INDEX {name}"), [])?;
    }
    let (stats, talk) = insert_records(&tx, plan, days)?;
    let deltas = json(&stats.deltas());
    tx.execute(ADD_STATS, [&deltas])?;
    tx.execute(ADD_CAMPAIGN_HOURS, params![&deltas, SEED_CAMPAIGN])?;
    // Row by row through a prepared statement: as one JSON list (a million entries at
    // 10M records) the parse cost a seed several seconds.
    let mut add_talk = tx.prepare(ADD_TALK_ROW)?;
    talk.each_delta(|d| {
        add_talk.execute(params![
            d.call_type,
            d.batch_name,
            d.span_ms,
            d.level,
            d.bucket,
            d.start_ms,
            d.calls
        ])?;
        Ok::<(), rusqlite::Error>(())
    })?;
    drop(add_talk);
    let mut insert = tx.prepare(
        "INSERT INTO tasks (ticket_no, phone, username, ticket_type, ticket_content, status, created_ms,
                            stopped_ms, connected, call_count, last_hangup_cause, next_attempt_ms, batch_name)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?7, ?12)",
    )?;
    for i in 0..plan.tasks {
        let t = plan.task(i);
        insert.execute(params![
            t.ticket_no,
            t.phone,
            t.username,
            t.ticket_type,
            t.ticket_content,
            t.status,
            t.created_ms,
            t.stopped_ms,
            t.connected,
            t.call_count,
            t.last_hangup_cause,
            SEED_CAMPAIGN
        ])?;
    }
    drop(insert);
    for sql in RECOUNT_TASK_HOURS {
        tx.execute(sql, [])?;
    }
    for sql in recount_task_days(days, COUNTER_TABLES) {
        tx.execute(&sql, [])?;
    }
    for (_, sql) in &indexes {
        tx.execute(sql, [])?;
    }
    // From the indexes of the extensions, call types and campaigns, once they are built (a
    // few seconds each at 10M records).
    for sql in recount_extensions(days).into_iter().chain(recount_slots()) {
        tx.execute(&sql, [])?;
    }
    tx.commit()?;
    Ok(())
}

/// Inserts the plan's records, made on a thread of their own, and counts the ones that
/// went in (a uuid already present keeps its row).
fn insert_records(tx: &Connection, plan: SeedPlan, days: CounterDays) -> Result<(StatsTally, TalkTally)> {
    let mut insert = tx.prepare(
        "INSERT INTO call_records (uuid, call_type, telephone, extnum, callout_ms, answered_ms, ended_ms,
                                   time_len, hangup_cause, wav_path, dialogue, intent, batch_name)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
         ON CONFLICT (uuid) DO NOTHING",
    )?;
    let mut tally = StatsTally::default();
    let mut talk = TalkTally::new(days);
    std::thread::scope(|scope| {
        let (batches, received) = mpsc::sync_channel::<Vec<CallRecord>>(4);
        scope.spawn(move || {
            for first in (0..plan.records).step_by(BATCH as usize) {
                let batch = (first..(first + BATCH).min(plan.records)).map(|i| plan.record(i)).collect();
                if batches.send(batch).is_err() {
                    return; // the insert failed
                }
            }
        });
        for batch in received {
            for r in &batch {
                let inserted = insert.execute(params![
                    r.uuid,
                    r.call_type.code(),
                    r.telephone,
                    r.extnum,
                    r.callout_ms,
                    r.answered_ms,
                    r.ended_ms,
                    r.time_len,
                    r.hangup_cause,
                    r.wav_path,
                    r.dialogue_json,
                    r.intent,
                    r.batch_name
                ])?;
                if inserted == 1 {
                    tally.add(r, 1);
                    talk.add(r, 1);
                }
            }
        }
        Ok((tally, talk))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use crate::store::counters::EVERY_CALL_LEVEL;

    #[tokio::test]
    async fn seeding_twice_adds_nothing_and_keeps_the_counters_exact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seed.db");
        let store =
            SqliteStore::connect(&format!("sqlite://{}", path.display()), Default::default()).await.unwrap();
        let now = 1_755_349_919_000;
        store.seed(3_000, 100, now, 8 * 3600).await.unwrap();
        store.seed(3_000, 100, now, 8 * 3600).await.unwrap();
        let conn = Connection::open(&path).unwrap();
        let count = |sql: &str| conn.query_row(sql, [], |row| row.get::<_, i64>(0)).unwrap();
        assert_eq!(count("SELECT COUNT(*) FROM call_records"), 3_000);
        assert_eq!(count("SELECT SUM(calls) FROM record_stats"), 3_000);
        let with_extensions = count("SELECT COUNT(*) FROM call_records WHERE extnum IS NOT NULL");
        assert!(with_extensions > 0);
        assert_eq!(count("SELECT SUM(calls) FROM extension_days"), with_extensions);
        let ai_calls = count("SELECT COUNT(*) FROM call_records WHERE call_type = '02'");
        assert_eq!(ai_calls, count("SELECT COUNT(*) FROM call_records WHERE batch_name = 'default'"));
        for level in 0..=EVERY_CALL_LEVEL {
            let talk = |campaign: &str| {
                count(&format!(
                    "SELECT SUM(calls) FROM record_talk WHERE level = {level} AND batch_name = '{campaign}'"
                ))
            };
            // An hour's, a day's and all time's rows of every call, and of the campaign's.
            assert_eq!(talk(""), 9_000);
            assert_eq!(talk("default"), 3 * ai_calls);
        }
        assert_eq!(count("SELECT SUM(calls) FROM campaign_hours WHERE batch_name = 'default'"), ai_calls);
        assert_eq!(
            count("SELECT SUM(talk_secs) FROM record_stats"),
            count("SELECT SUM(time_len) FROM call_records")
        );
        assert_eq!(
            count("SELECT COUNT(*) FROM tasks"),
            200,
            "tasks have no natural key: each seed adds its own"
        );
        assert_eq!(count("SELECT SUM(tasks) FROM task_hours WHERE batch_name = ''"), 200);
        assert_eq!(count("SELECT SUM(tasks) FROM task_hours WHERE batch_name = 'default'"), 200);
        // Each day of `task_days` is its hours' sum.
        assert_eq!(count("SELECT SUM(tasks) FROM task_days WHERE batch_name = 'default'"), 200);
        assert_eq!(
            count(
                "SELECT COUNT(*) FROM task_days d WHERE tasks <> (SELECT SUM(tasks) FROM task_hours h
                 WHERE h.batch_name = d.batch_name AND h.status = d.status
                   AND h.hour_ms >= d.day_ms AND h.hour_ms < d.day_ms + 86400000)"
            ),
            0
        );
        assert_eq!(count("SELECT SUM(tasks) FROM task_counts WHERE batch_name = 'default'"), 200);
        assert_eq!(
            count("SELECT COUNT(*) FROM sqlite_master WHERE name = 'records_by_phone'"),
            1,
            "indexes rebuilt"
        );
        assert_eq!(conn.query_row("PRAGMA journal_mode", [], |row| row.get::<_, String>(0)).unwrap(), "wal");
    }
}
