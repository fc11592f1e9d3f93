//! `callcenter seed` on PostgreSQL: the rows of `seed::SeedPlan`, made on a thread of
//! their own and inserted a batch a statement in one transaction, the counters summed as
//! the rows go in, the secondary indexes dropped for the load and built once over the
//! loaded rows (several times faster than keeping them up to date row by row).

use sqlx::PgConnection;
use tokio::sync::mpsc;

use super::{PgStore, records};
use crate::store::counters::StatsTally;
use crate::store::seed::{SeedPlan, SeedTask};
use crate::store::sql::json;
use crate::store::{CallRecord, Result};

/// Rows a statement.
const BATCH: u64 = 10_000;

pub(super) async fn load(
    s: &PgStore,
    records: u64,
    tasks: u64,
    now_ms: i64,
    utc_offset_secs: i32,
) -> Result<()> {
    let plan = SeedPlan::new(records, tasks, now_ms, utc_offset_secs);
    let mut tx = s.pool.begin().await?;
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
    let tally = insert_records(&mut tx, plan).await?;
    records::apply_stats(&mut tx, &tally.deltas()).await?;
    for first in (0..plan.tasks).step_by(BATCH as usize) {
        let batch: Vec<SeedTask> = (first..(first + BATCH).min(plan.tasks)).map(|i| plan.task(i)).collect();
        sqlx::query(
            "INSERT INTO tasks (ticket_no, phone, username, ticket_type, ticket_content, status, created_ms,
                                stopped_ms, connected, call_count, last_hangup_cause, next_attempt_ms)
             SELECT ticket_no, phone, username, ticket_type, ticket_content, status, created_ms,
                    stopped_ms, connected, call_count, last_hangup_cause, created_ms
             FROM json_to_recordset($1::json) AS t (ticket_no text, phone text, username text, ticket_type text,
                  ticket_content text, status text, created_ms bigint, stopped_ms bigint, connected boolean,
                  call_count bigint, last_hangup_cause text)",
        )
        .bind(json(&batch))
        .execute(&mut *tx)
        .await?;
    }
    for (_, sql) in &indexes {
        sqlx::query(sql).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Inserts the plan's records, made on a thread of their own while the previous batch
/// goes in, and counts the ones that went in (a uuid already present keeps its row).
async fn insert_records(tx: &mut PgConnection, plan: SeedPlan) -> Result<StatsTally> {
    let (batches, mut received) = mpsc::channel::<Vec<CallRecord>>(2);
    let making = tokio::task::spawn_blocking(move || {
        for first in (0..plan.records).step_by(BATCH as usize) {
            let batch = (first..(first + BATCH).min(plan.records)).map(|i| plan.record(i)).collect();
            if batches.blocking_send(batch).is_err() {
                return; // the insert failed
            }
        }
    });
    let mut tally = StatsTally::default();
    while let Some(batch) = received.recv().await {
        let inserted = records::insert_new(tx, &batch).await?;
        batch.iter().filter(|r| inserted.contains(&r.uuid)).for_each(|r| tally.add(r, 1));
    }
    making.await.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    Ok(tally)
}
