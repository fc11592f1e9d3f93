//! The rows the store hands out, each one type that both backends decode straight from
//! their columns (sqlx by name, rusqlite by position in the column lists below).

use serde::{Deserialize, Serialize, Serializer};

use super::counters::HOUR_MS;
use crate::domain::{CallType, TaskStatus};

pub(super) const OPEN: &str = "('pending', 'calling', 'retry_wait')";
pub(super) const TASK_COLUMNS: &str = "batch_id, task_type, created_ms, stopped_ms, connected, ticket_no, phone, username, \
     ticket_type, ticket_content, status, call_count, last_hangup_cause, batch_name";
pub(super) const RECORD_COLUMNS: &str = "uuid, call_type, batch_id, telephone, extnum, callout_ms, answered_ms, ended_ms, \
     time_len, hangup_cause, wav_path, wav_url, dialogue, intent, turn_latency_ms, batch_name";
pub(super) const CLAIMED_COLUMNS: &str = "batch_id, ticket_no, phone, username, ticket_type, ticket_content, \
     call_count AS attempt, call_uuid, call_started_ms, call_answered_ms, heartbeat_ms, lease_gen, batch_name";

/// A task as calltask/list shows it. Serialized as a webhook event's snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct TaskRow {
    pub batch_id: i64,
    pub task_type: i64,
    pub created_ms: i64,
    pub stopped_ms: Option<i64>,
    pub connected: bool,
    pub ticket_no: String,
    pub phone: String,
    pub username: String,
    pub ticket_type: String,
    pub ticket_content: String,
    #[sqlx(try_from = "String")]
    pub status: TaskStatus,
    pub call_count: i64,
    pub last_hangup_cause: Option<String>,
    /// The task's campaign (the spec's batchName). Events written before campaigns
    /// existed have none: theirs was the default campaign.
    #[serde(default = "default_campaign")]
    pub batch_name: String,
}

fn default_campaign() -> String {
    crate::domain::DEFAULT_CAMPAIGN.to_string()
}

/// An ended call as records/list shows it. Serialized with its columns' names, as an
/// element of a bound list (many rows in one statement).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct CallRecord {
    pub uuid: String,
    #[sqlx(try_from = "String")]
    #[serde(serialize_with = "call_type_code")]
    pub call_type: CallType,
    pub batch_id: Option<i64>,
    pub telephone: String,
    pub extnum: Option<String>,
    pub callout_ms: i64,
    pub answered_ms: Option<i64>,
    pub ended_ms: i64,
    pub time_len: i64,
    pub hangup_cause: String,
    /// Relative to `recordings.dir`; empty when there is no recording here.
    pub wav_path: String,
    /// A recording kept elsewhere (imported calls); used when not empty.
    pub wav_url: String,
    /// The dialogue as stored JSON (`[{role, content}]`), passed through untouched.
    #[sqlx(rename = "dialogue")]
    #[serde(rename = "dialogue")]
    pub dialogue_json: String,
    /// The outcome of an answered AI call; empty otherwise.
    pub intent: String,
    /// An AI call's median voice-to-voice latency (`CallEnd::turn_latency`); not in
    /// records/list, only in the call's `call.ended` webhook.
    pub turn_latency_ms: Option<i64>,
    /// The campaign of an AI call's task; `None` for imported calls.
    pub batch_name: Option<String>,
}

fn call_type_code<S: Serializer>(call_type: &CallType, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(call_type.code())
}

impl CallRecord {
    /// Its `record_stats` bucket: (hour, outcome class).
    pub fn stats_key(&self) -> (i64, &'static str) {
        let cause = self.hangup_cause.split(':').next().unwrap_or_default();
        (
            self.callout_ms.div_euclid(HOUR_MS) * HOUR_MS,
            crate::domain::outcome_class(cause, self.answered_ms.is_some()),
        )
    }

    /// `timeLen`: whole seconds from calloutTime to callEndTime as the API shows them,
    /// for an answered call; 0 for one never answered.
    pub fn time_len_of(callout_ms: i64, answered_ms: Option<i64>, ended_ms: i64) -> i64 {
        match answered_ms {
            Some(_) => (ended_ms.div_euclid(1000) - callout_ms.div_euclid(1000)).max(0),
            None => 0,
        }
    }
}

/// A stored name the store does not know: a corrupt row.
#[derive(Debug, thiserror::Error)]
#[error("unknown {0} `{1}`")]
pub struct UnknownName(&'static str, String);

impl TryFrom<String> for TaskStatus {
    type Error = UnknownName;
    fn try_from(name: String) -> Result<TaskStatus, UnknownName> {
        TaskStatus::from_db_name(&name).ok_or(UnknownName("task status", name))
    }
}

impl TryFrom<String> for CallType {
    type Error = UnknownName;
    fn try_from(code: String) -> Result<CallType, UnknownName> {
        code.parse().map_err(|()| UnknownName("call type", code))
    }
}

/// A number on the do-not-call list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DncEntry {
    pub phone: String,
    pub reason: String,
    pub created_ms: i64,
}

/// An hour of `record_stats`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct HourStat {
    pub hour_ms: i64,
    pub outcome: String,
    pub calls: i64,
    pub talk_secs: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paged<T> {
    pub total: i64,
    pub rows: Vec<T>,
}

/// Database numbers for /metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreGauges {
    /// Tasks 待呼叫 or 等待重呼.
    pub tasks_waiting: i64,
    /// Webhook events not yet delivered.
    pub webhook_backlog: i64,
    /// Calls in progress on all nodes.
    pub calls_in_progress: i64,
    /// Connections open in the pools, and of those idle.
    pub pool_open: u32,
    pub pool_idle: u32,
}

/// What stopTasks did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StopOutcome {
    /// Waiting tasks that became 已停止.
    pub stopped: u64,
    /// Tasks with a call in progress, asked to hang up.
    pub hanging_up: u64,
}
