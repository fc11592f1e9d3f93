//! The work a PostgreSQL node does in the background: folding the changes of task counts
//! into the counters, and listening for other nodes' task changes.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::sync::Notify;

use super::ACQUIRE_TIMEOUT;
use crate::store::counters::CounterDays;

/// How often a node folds the changes of task counts into the counters.
const FOLD_TASK_COUNTS_EVERY: Duration = Duration::from_secs(1);
/// Backoff between attempts to bring the listener back.
const RELISTEN_MIN: Duration = Duration::from_millis(250);
const RELISTEN_MAX: Duration = Duration::from_secs(5);

/// NOTIFY channels: tasks were created (dialers look for due work), calls in progress
/// were asked to stop (the node making the call hangs it up), a campaign was saved,
/// paused or resumed (dialers read the campaigns again and look for due work: it wakes
/// them as a creation does).
pub(super) const CREATED_CHANNEL: &str = "callcenter_tasks_created";
pub(super) const STOPPED_CHANNEL: &str = "callcenter_tasks_stopped";
pub(super) const CAMPAIGNS_CHANNEL: &str = "callcenter_campaigns_changed";

/// Folds the changes of task counts that statements appended (see the migrations
/// `0006_task_counts.sql`, `0011_task_pages.sql`, `0013_campaign_counters.sql` and
/// `0015_task_days.sql`) into the counters, every `FOLD_TASK_COUNTS_EVERY`, so that a
/// count sums a few rows: an hour's changes into its hour and its day (`days`) in one
/// statement. Nodes may fold at the same time: a change row is deleted, and so added,
/// once. A failure (the database away) waits for the next turn.
pub(super) async fn fold_task_counts_forever(pool: PgPool, days: CounterDays) {
    let mut every = tokio::time::interval(FOLD_TASK_COUNTS_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let fold_hours_and_days = format!(
        "WITH changes AS (DELETE FROM task_hour_changes RETURNING *),
         hours AS (
             INSERT INTO task_hours_folded (batch_name, hour_ms, status, tasks, first_batch_id, last_batch_id)
             SELECT batch_name, hour_ms, status, SUM(tasks), MIN(first_batch_id), MAX(last_batch_id)
             FROM changes GROUP BY batch_name, hour_ms, status ORDER BY batch_name, hour_ms, status
             ON CONFLICT (batch_name, hour_ms, status) DO UPDATE SET
                 tasks = task_hours_folded.tasks + EXCLUDED.tasks,
                 first_batch_id = LEAST(task_hours_folded.first_batch_id, EXCLUDED.first_batch_id),
                 last_batch_id = GREATEST(task_hours_folded.last_batch_id, EXCLUDED.last_batch_id))
         INSERT INTO task_days_folded (batch_name, day_ms, status, tasks, first_batch_id, last_batch_id)
         SELECT batch_name, {day}, status, SUM(tasks), MIN(first_batch_id), MAX(last_batch_id)
         FROM changes GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
         ON CONFLICT (batch_name, day_ms, status) DO UPDATE SET
             tasks = task_days_folded.tasks + EXCLUDED.tasks,
             first_batch_id = LEAST(task_days_folded.first_batch_id, EXCLUDED.first_batch_id),
             last_batch_id = GREATEST(task_days_folded.last_batch_id, EXCLUDED.last_batch_id)",
        day = days.start_sql("hour_ms")
    );
    loop {
        every.tick().await;
        for fold in [
            "WITH changes AS (DELETE FROM task_count_changes RETURNING batch_name, status, tasks)
             INSERT INTO task_counts_folded (batch_name, status, tasks)
             SELECT batch_name, status, SUM(tasks) FROM changes GROUP BY batch_name, status ORDER BY batch_name, status
             ON CONFLICT (batch_name, status) DO UPDATE SET tasks = task_counts_folded.tasks + EXCLUDED.tasks",
            &fold_hours_and_days,
        ] {
            if let Err(e) = sqlx::query(fold).execute(&pool).await {
                tracing::debug!(error = %e, "could not fold task counts yet");
            }
        }
    }
}

/// LISTENs on both channels on a connection of its own and passes notifications on,
/// reconnecting with a backoff whenever the connection or the database goes away. After a
/// reconnection both `Notify`s fire, since notifications sent meanwhile were lost.
pub(super) async fn listen_forever(options: PgConnectOptions, created: Arc<Notify>, stopped: Arc<Notify>) {
    let mut backoff = RELISTEN_MIN;
    let mut lost = false;
    loop {
        // A pool of one of its own, new each time, so that a dead connection never lingers.
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options.clone());
        let connecting = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen_all([CREATED_CHANNEL, STOPPED_CHANNEL, CAMPAIGNS_CHANNEL]).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let error = match connecting.await {
            Ok(mut listener) => {
                if lost {
                    tracing::info!("listening for task changes again");
                    created.notify_one();
                    stopped.notify_one();
                    lost = false;
                }
                backoff = RELISTEN_MIN;
                loop {
                    match listener.try_recv().await {
                        Ok(Some(n)) if [CREATED_CHANNEL, CAMPAIGNS_CHANNEL].contains(&n.channel()) => {
                            created.notify_one()
                        }
                        Ok(Some(n)) if n.channel() == STOPPED_CHANNEL => stopped.notify_one(),
                        Ok(Some(_)) => {}
                        // The connection dropped and was re-established at once.
                        Ok(None) => {
                            created.notify_one();
                            stopped.notify_one();
                        }
                        Err(e) => break e,
                    }
                }
            }
            Err(e) => e,
        };
        if !lost {
            tracing::warn!(error = %error, "lost the database listener; polling until it is back");
            lost = true;
        } else {
            tracing::debug!(error = %error, "the database listener cannot reconnect yet");
        }
        drop(pool);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(RELISTEN_MAX);
    }
}
