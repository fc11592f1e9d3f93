//! `callcenter seed` on PostgreSQL.

use super::PgStore;
use super::tasks::COUNTER_TABLES;
use crate::domain::OUTCOME_OF_CAUSE;
use crate::store::Result;
use crate::store::counters::{
    CounterDays, recount_extensions, recount_slots, recount_task_days, respread_talk,
};
use crate::store::seed;

/// Recounts `task_hours` from the tasks, after the seed's load: the rows of every task
/// (`counters::EVERY_CAMPAIGN`) and of each campaign (then `task_days` from them).
const RECOUNT_TASK_HOURS: [&str; 3] = [
    "DELETE FROM task_hour_changes",
    "DELETE FROM task_hours_folded",
    "INSERT INTO task_hours_folded (batch_name, hour_ms, status, tasks, first_batch_id, last_batch_id)
     SELECT scope.batch_name, (created_ms / 3600000) * 3600000, status, COUNT(*), MIN(batch_id), MAX(batch_id)
     FROM tasks CROSS JOIN LATERAL (VALUES (''), (tasks.batch_name)) AS scope (batch_name)
     GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
];

/// Recounts `record_stats`, `record_talk`, `record_slots`, `extension_days` and
/// `campaign_hours` from the rows after the seed's load, by `domain::OUTCOME_OF_CAUSE`.
/// Written in key order, so that a call type's hours lie together in the table: a day's
/// total then reads a few pages, against some forty in the order of a hash aggregate.
/// `record_talk`: the calls of each talk time by hour (level 0), of every call and each
/// campaign, then spread over the levels and days of `counters::TalkTally`.
fn recount(days: CounterDays) -> Vec<String> {
    let classes: String = OUTCOME_OF_CAUSE
        .iter()
        .map(|(cause, class)| format!("WHEN hangup_cause LIKE '{cause}:%' THEN '{class}' "))
        .collect();
    let outcome = format!("CASE WHEN answered_ms IS NOT NULL THEN 'answered' {classes}ELSE 'failed' END");
    let mut statements = vec![
        "DELETE FROM record_stats".into(),
        format!(
            "INSERT INTO record_stats (call_type, hour_ms, outcome, calls, talk_secs)
             SELECT call_type, (callout_ms / 3600000) * 3600000,
                    {outcome}, COUNT(*), SUM(time_len)
             FROM call_records GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
        ),
        "DELETE FROM record_talk".into(),
        "INSERT INTO record_talk (call_type, batch_name, span_ms, level, bucket, start_ms, calls)
         SELECT call_type, scope.batch_name, 3600000, 0, time_len, (callout_ms / 3600000) * 3600000, COUNT(*)
         FROM call_records CROSS JOIN LATERAL (VALUES (''), (call_records.batch_name)) AS scope (batch_name)
         WHERE scope.batch_name IS NOT NULL
         GROUP BY 1, 2, 5, 6 ORDER BY 1, 2, 5, 6"
            .into(),
        "DELETE FROM campaign_hours".into(),
        format!(
            "INSERT INTO campaign_hours (batch_name, hour_ms, outcome, calls)
             SELECT batch_name, (callout_ms / 3600000) * 3600000, {outcome}, COUNT(*)
             FROM call_records WHERE batch_name IS NOT NULL GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
        ),
    ];
    statements.extend(respread_talk(days));
    statements.extend(recount_extensions(days));
    statements.extend(recount_slots());
    statements
}

/// The rows `seed::SeedPlan` makes, made here in SQL inside the server: an
/// `INSERT … SELECT` keeps them off the wire and skips uuids already present, which a
/// `COPY` cannot. Inserting `SeedPlan`'s own rows, a batch a statement, was slower on
/// two shared cores (bench/RESULTS.md).
pub(super) async fn load(
    s: &PgStore,
    records: u64,
    tasks: u64,
    now_ms: i64,
    utc_offset_secs: i32,
) -> Result<()> {
    let start = now_ms - seed::SPAN_MS;
    let mut tx = s.pool.begin().await?;
    // Building the secondary indexes once, over the loaded data, is several times
    // faster than keeping them up to date row by row.
    let indexes: Vec<(String, String)> = sqlx::query_as(
        "SELECT indexname::text, indexdef FROM pg_indexes
         WHERE schemaname = current_schema() AND tablename IN ('call_records', 'tasks')
           AND indexname NOT IN ('call_records_pkey', 'tasks_pkey')",
    )
    .fetch_all(&mut *tx)
    .await?;
    for (name, _) in &indexes {
        sqlx::query(&format!("DROP INDEX {name}")).execute(&mut *tx).await?;
    }
    if records > 0 {
        let step = (seed::SPAN_MS / records as i64).max(1);
        // Row i falls in [start + i*step, start + (i+1)*step): times rise with i, so
        // within a second the rows are consecutive and their counters distinct.
        sqlx::query(
            "WITH hashed AS (SELECT i, (i * 2654435761 + 40503) % 4294967296 AS h FROM generate_series(0::bigint, $1 - 1) AS i),
             base AS (
                 SELECT i, $2 + i * $3 + h % $3 AS t, h % 10 AS kind, h / 10 % 100 AS outcome,
                        5 + h / 1000 % 175 AS talk, 2 + h / 175000 % 20 AS ring, h / 7 AS pick
                 FROM hashed),
             calls AS (
                 SELECT *, CASE WHEN kind < 7 THEN '02' WHEN kind < 9 THEN '01' ELSE '03' END AS call_type,
                        outcome < 65 AS answered,
                        to_char(to_timestamp(t / 1000) AT TIME ZONE 'UTC' + make_interval(secs => $4), 'YYMMDDHH24MISS')
                            || '99' || lpad((10001 + i % 89999)::text, 5, '0') AS uuid,
                        to_char(to_timestamp(t / 1000) AT TIME ZONE 'UTC' + make_interval(secs => $4), 'YYYY/MM/DD/HH24/') AS dir
                 FROM base)
             INSERT INTO call_records (uuid, call_type, batch_id, telephone, extnum, callout_ms, answered_ms, ended_ms,
                                       time_len, hangup_cause, wav_path, wav_url, dialogue, intent, batch_name)
             SELECT uuid, call_type, NULL,
                    '1' || (3 + pick % 7) || lpad((pick % 1000000000)::text, 9, '0'),
                    CASE WHEN call_type = '02' THEN NULL ELSE '8' || lpad((pick % 1000)::text, 3, '0') END,
                    t,
                    CASE WHEN answered THEN t + ring * 1000 END,
                    t + ring * 1000 + CASE WHEN answered THEN talk * 1000 ELSE 0 END,
                    CASE WHEN answered THEN ring + talk ELSE 0 END,
                    CASE WHEN answered THEN 'NORMAL_CLEARING:sip:200'
                         WHEN outcome < 75 THEN 'USER_BUSY:sip:486'
                         WHEN outcome < 90 THEN 'NO_ANSWER:sip:480'
                         WHEN outcome < 95 THEN 'NORMAL_TEMPORARY_FAILURE:sip:503'
                         WHEN outcome < 98 THEN 'UNALLOCATED_NUMBER:sip:404'
                         ELSE 'MANAGER_REQUEST:null' END,
                    CASE WHEN answered AND call_type = '02' THEN 'ai_call/' || dir || uuid || '.wav' ELSE '' END,
                    '',
                    CASE WHEN answered AND call_type = '02'
                         THEN CASE pick % 3 WHEN 0 THEN $5 WHEN 1 THEN $6 ELSE $7 END ELSE '[]' END,
                    CASE WHEN answered AND call_type = '02'
                         THEN CASE pick % 3 WHEN 0 THEN $8 WHEN 1 THEN $9 ELSE $10 END ELSE '' END,
                    CASE WHEN call_type = '02' THEN $11 END
             FROM calls
             ON CONFLICT (uuid) DO NOTHING",
        )
        .bind(records as i64)
        .bind(start)
        .bind(step)
        .bind(f64::from(utc_offset_secs))
        .bind(seed::DIALOGUES[0].0)
        .bind(seed::DIALOGUES[1].0)
        .bind(seed::DIALOGUES[2].0)
        .bind(seed::DIALOGUES[0].1)
        .bind(seed::DIALOGUES[1].1)
        .bind(seed::DIALOGUES[2].1)
        .bind(seed::SEED_CAMPAIGN)
        .execute(&mut *tx)
        .await?;
        for sql in recount(s.days) {
            sqlx::query(&sql).execute(&mut *tx).await?;
        }
    }
    if tasks > 0 {
        let step = (seed::SPAN_MS / tasks as i64).max(1);
        sqlx::query(
            "WITH base AS (SELECT i, $2 + i * $3 AS t, (i * 2654435761 + 40503) % 4294967296 / 7 AS pick
                           FROM generate_series(0::bigint, $1 - 1) AS i)
             INSERT INTO tasks (ticket_no, phone, username, ticket_type, ticket_content, status, created_ms,
                                stopped_ms, connected, call_count, last_hangup_cause, next_attempt_ms, batch_name)
             SELECT 'SEED-' || t || '-' || i, '1' || (3 + pick % 7) || lpad((pick % 1000000000)::text, 9, '0'),
                    '客户' || (pick % 10000), '活动通知', '尊敬的客户，提醒您参加本周末的线下优惠活动。',
                    CASE WHEN pick % 20 = 0 THEN 'stopped' ELSE 'completed' END, t, t + 600000,
                    pick % 3 <> 0, 1 + pick % 3,
                    CASE WHEN pick % 3 <> 0 THEN 'NORMAL_CLEARING:sip:200' ELSE 'NO_ANSWER:sip:480' END, t, $4
             FROM base",
        )
        .bind(tasks as i64)
        .bind(start)
        .bind(step)
        .bind(seed::SEED_CAMPAIGN)
        .execute(&mut *tx)
        .await?;
        for sql in RECOUNT_TASK_HOURS {
            sqlx::query(sql).execute(&mut *tx).await?;
        }
        for sql in recount_task_days(s.days, COUNTER_TABLES) {
            sqlx::query(&sql).execute(&mut *tx).await?;
        }
    }
    for (_, sql) in &indexes {
        sqlx::query(sql).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}
