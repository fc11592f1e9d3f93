//! The webhook outbox: events written in the transaction of the change they report, then
//! leased and settled by the deliverer. Each backend gives only its statements.

use std::collections::HashMap;

use serde::Serialize;

use super::claims::FinishedAttempt;
use super::{Result, StoreError, StoreOptions, TaskRow};
use crate::domain::TaskStatus;

/// Kinds of webhook events.
pub const CALL_ENDED: &str = "call.ended";
pub const TASK_ENDED: &str = "task.ended";
pub const CALL_TRANSFERRED: &str = "call.transferred";

/// A call handed to a person who answered, for the `call.transferred` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransferNote {
    /// The task's claim (batchId, lease generation): the event is written only while it
    /// holds. `None` for a call with no task (inbound), whose event carries no task.
    #[serde(skip)]
    pub claim: Option<(i64, i64)>,
    /// The call's uuid (its record's, once it ends).
    pub uuid: String,
    /// The destination as dialled, and its extension (the record's `extnum`).
    pub to: String,
    pub extnum: String,
    /// When the person answered (epoch ms).
    pub answered_ms: i64,
}

/// A webhook event waiting in the outbox, leased to one deliverer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    pub id: i64,
    pub event_id: String,
    pub event_type: String,
    /// The task the event is about; `None` for a call with no task (an inbound call).
    pub task: Option<TaskRow>,
    pub record_uuid: Option<String>,
    /// What the event tells beyond its task and record (`call.transferred`: the transfer).
    pub detail: Option<serde_json::Value>,
    pub created_ms: i64,
    pub attempts: i64,
}

/// What became of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventOutcome {
    /// The receiver answered 2xx: the event is done.
    Delivered,
    /// Try again at this time.
    RetryAt { next_attempt_ms: i64, error: String },
    /// Older than `webhook.max_age_secs`: given up.
    Expired,
}

/// A webhook event as the outbox stores it, written with the change it reports.
#[derive(Serialize)]
pub(super) struct NewEvent<'a> {
    event_id: String,
    event_type: &'static str,
    task_json: String,
    record_uuid: Option<&'a str>,
    detail_json: Option<String>,
    at_ms: i64,
}

impl<'a> NewEvent<'a> {
    fn new(
        event_type: &'static str,
        task: Option<&TaskRow>,
        record_uuid: Option<&'a str>,
        at_ms: i64,
    ) -> NewEvent<'a> {
        NewEvent {
            event_id: uuid::Uuid::new_v4().to_string(),
            event_type,
            // `null` for a call without a task.
            task_json: serde_json::to_string(&task).expect("task serializes"),
            record_uuid,
            detail_json: None,
            at_ms,
        }
    }

    /// The call was handed to a person who answered.
    pub(super) fn transferred(task: Option<&TaskRow>, note: &TransferNote) -> NewEvent<'static> {
        NewEvent {
            detail_json: Some(serde_json::to_string(note).expect("a transfer serializes")),
            ..NewEvent::new(CALL_TRANSFERRED, task, None, note.answered_ms)
        }
    }

    /// The tasks ended (stopped or blocked).
    pub(super) fn tasks_ended(tasks: &[TaskRow], at_ms: i64) -> Vec<NewEvent<'static>> {
        tasks.iter().map(|task| NewEvent::new(TASK_ENDED, Some(task), None, at_ms)).collect()
    }

    /// A call with no task behind it (an inbound call) ended.
    pub(super) fn call_ended(record_uuid: &'a str, at_ms: i64) -> NewEvent<'a> {
        NewEvent::new(CALL_ENDED, None, Some(record_uuid), at_ms)
    }
}

/// Matches the tasks that finished attempts moved on (as the UPDATE returned them, in any
/// order) to the attempts: each attempt's new task status (`None`: its lease was lost),
/// in order, and the events they report (the call ended; the task too, if final).
pub(super) fn attempts_moved<'a>(
    attempts: &'a [FinishedAttempt],
    tasks: &[TaskRow],
) -> (Vec<Option<TaskStatus>>, Vec<NewEvent<'a>>) {
    let by_id: HashMap<i64, &TaskRow> = tasks.iter().map(|t| (t.batch_id, t)).collect();
    let mut statuses = Vec::with_capacity(attempts.len());
    let mut events = Vec::new();
    for a in attempts {
        let task = by_id.get(&a.batch_id).copied();
        if let Some(task) = task {
            events.push(NewEvent::new(CALL_ENDED, Some(task), Some(&a.uuid), a.ended_ms));
            if task.status.is_final() {
                events.push(NewEvent::new(TASK_ENDED, Some(task), None, a.ended_ms));
            }
        }
        statuses.push(task.map(|t| t.status));
    }
    (statuses, events)
}

/// An outbox row as both backends read it.
#[derive(sqlx::FromRow)]
pub(super) struct OutboxRow {
    id: i64,
    event_id: String,
    event_type: String,
    task_json: String,
    record_uuid: Option<String>,
    detail_json: Option<String>,
    created_ms: i64,
    attempts: i64,
}

impl TryFrom<OutboxRow> for OutboxEvent {
    type Error = StoreError;
    fn try_from(r: OutboxRow) -> Result<OutboxEvent> {
        let task = serde_json::from_str(&r.task_json)
            .map_err(|e| StoreError::Corrupt(format!("webhook event {}: {e}", r.event_id)))?;
        let detail = match r.detail_json.as_deref().map(serde_json::from_str).transpose() {
            Ok(detail) => detail,
            Err(e) => return Err(StoreError::Corrupt(format!("webhook event {}: {e}", r.event_id))),
        };
        Ok(OutboxEvent {
            id: r.id,
            event_id: r.event_id,
            event_type: r.event_type,
            task,
            record_uuid: r.record_uuid,
            detail,
            created_ms: r.created_ms,
            attempts: r.attempts,
        })
    }
}

impl StoreOptions {
    /// `events`, if they are to be written: only when a webhook takes them.
    pub(super) fn to_emit<'e, 'a>(&self, events: &'e [NewEvent<'a>]) -> Option<&'e [NewEvent<'a>]> {
        (self.emit_events && !events.is_empty()).then_some(events)
    }

    /// After a commit that wrote events: wakes the deliverer.
    pub(super) fn events_written(&self) {
        if self.emit_events {
            self.events_written.notify_one();
        }
    }
}
