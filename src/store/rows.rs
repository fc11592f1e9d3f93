//! What both backends share: the column lists and the rows they read, decoded the same
//! way from SQLite and PostgreSQL, and turned into the store's types.

use serde::Serialize;

use super::{CallRecord, ClaimedCall, FinishedAttempt, Result, StoreError, TaskRow};
use crate::domain::TaskStatus;

pub(super) const OPEN: &str = "('pending', 'calling', 'retry_wait')";
pub(super) const TASK_COLUMNS: &str = "batch_id, task_type, created_ms, stopped_ms, connected, ticket_no, phone, username, \
     ticket_type, ticket_content, status, call_count, last_hangup_cause";
pub(super) const RECORD_COLUMNS: &str = "uuid, call_type, batch_id, telephone, extnum, callout_ms, answered_ms, ended_ms, \
     time_len, hangup_cause, wav_path, wav_url, dialogue, intent";
pub(super) const CLAIMED_COLUMNS: &str = "batch_id, ticket_no, phone, username, ticket_type, ticket_content, \
     call_count AS attempt, call_uuid, call_started_ms, call_answered_ms, heartbeat_ms, lease_gen";

#[derive(Clone, sqlx::FromRow)]
pub(super) struct TaskDb {
    pub(super) batch_id: i64,
    pub(super) task_type: i64,
    pub(super) created_ms: i64,
    pub(super) stopped_ms: Option<i64>,
    pub(super) connected: bool,
    pub(super) ticket_no: String,
    pub(super) phone: String,
    pub(super) username: String,
    pub(super) ticket_type: String,
    pub(super) ticket_content: String,
    pub(super) status: String,
    pub(super) call_count: i64,
    pub(super) last_hangup_cause: Option<String>,
}

impl TryFrom<TaskDb> for TaskRow {
    type Error = StoreError;
    fn try_from(t: TaskDb) -> Result<TaskRow> {
        let status = TaskStatus::from_db_name(&t.status)
            .ok_or_else(|| StoreError::Corrupt(format!("task {} has status `{}`", t.batch_id, t.status)))?;
        Ok(TaskRow {
            batch_id: t.batch_id,
            task_type: t.task_type,
            created_ms: t.created_ms,
            stopped_ms: t.stopped_ms,
            connected: t.connected,
            ticket_no: t.ticket_no,
            phone: t.phone,
            username: t.username,
            ticket_type: t.ticket_type,
            ticket_content: t.ticket_content,
            status,
            call_count: t.call_count,
            last_hangup_cause: t.last_hangup_cause,
        })
    }
}

/// A row of a page with the list's total beside it.
#[derive(sqlx::FromRow)]
pub(super) struct Totalled<T> {
    #[sqlx(flatten)]
    pub(super) row: T,
    pub(super) total: i64,
}

#[derive(sqlx::FromRow)]
pub(super) struct RecordDb {
    pub(super) uuid: String,
    pub(super) call_type: String,
    pub(super) batch_id: Option<i64>,
    pub(super) telephone: String,
    pub(super) extnum: Option<String>,
    pub(super) callout_ms: i64,
    pub(super) answered_ms: Option<i64>,
    pub(super) ended_ms: i64,
    pub(super) time_len: i64,
    pub(super) hangup_cause: String,
    pub(super) wav_path: String,
    pub(super) wav_url: String,
    pub(super) dialogue: String,
    pub(super) intent: String,
}

impl TryFrom<RecordDb> for CallRecord {
    type Error = StoreError;
    fn try_from(r: RecordDb) -> Result<CallRecord> {
        let call_type = r
            .call_type
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("record {} has call type `{}`", r.uuid, r.call_type)))?;
        Ok(CallRecord {
            uuid: r.uuid,
            call_type,
            batch_id: r.batch_id,
            telephone: r.telephone,
            extnum: r.extnum,
            callout_ms: r.callout_ms,
            answered_ms: r.answered_ms,
            ended_ms: r.ended_ms,
            time_len: r.time_len,
            hangup_cause: r.hangup_cause,
            wav_path: r.wav_path,
            wav_url: r.wav_url,
            dialogue_json: r.dialogue,
            intent: r.intent,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct ClaimedDb {
    pub(super) batch_id: i64,
    pub(super) ticket_no: String,
    pub(super) phone: String,
    pub(super) username: String,
    pub(super) ticket_type: String,
    pub(super) ticket_content: String,
    pub(super) attempt: i64,
    pub(super) call_uuid: String,
    pub(super) call_started_ms: i64,
    pub(super) call_answered_ms: Option<i64>,
    pub(super) heartbeat_ms: Option<i64>,
    pub(super) lease_gen: i64,
}

impl From<ClaimedDb> for ClaimedCall {
    fn from(c: ClaimedDb) -> ClaimedCall {
        ClaimedCall {
            batch_id: c.batch_id,
            ticket_no: c.ticket_no,
            phone: c.phone,
            username: c.username,
            ticket_type: c.ticket_type,
            ticket_content: c.ticket_content,
            attempt: c.attempt,
            call_uuid: c.call_uuid,
            call_started_ms: c.call_started_ms,
            call_answered_ms: c.call_answered_ms,
            heartbeat_ms: c.heartbeat_ms,
            lease_gen: c.lease_gen,
        }
    }
}

/// A call record as an element of a bound JSON list (many rows in one statement).
#[derive(Serialize)]
pub(super) struct RecordJson<'a> {
    uuid: &'a str,
    call_type: &'static str,
    batch_id: Option<i64>,
    telephone: &'a str,
    extnum: Option<&'a str>,
    callout_ms: i64,
    answered_ms: Option<i64>,
    ended_ms: i64,
    time_len: i64,
    hangup_cause: &'a str,
    wav_path: &'a str,
    wav_url: &'a str,
    dialogue: &'a str,
    intent: &'a str,
}

impl<'a> From<&'a CallRecord> for RecordJson<'a> {
    fn from(r: &'a CallRecord) -> RecordJson<'a> {
        RecordJson {
            uuid: &r.uuid,
            call_type: r.call_type.code(),
            batch_id: r.batch_id,
            telephone: &r.telephone,
            extnum: r.extnum.as_deref(),
            callout_ms: r.callout_ms,
            answered_ms: r.answered_ms,
            ended_ms: r.ended_ms,
            time_len: r.time_len,
            hangup_cause: &r.hangup_cause,
            wav_path: &r.wav_path,
            wav_url: &r.wav_url,
            dialogue: &r.dialogue_json,
            intent: &r.intent,
        }
    }
}

/// How a finished attempt moves its task on, as an element of a bound JSON list.
#[derive(Serialize)]
pub(super) struct TaskMove<'a> {
    /// The task's batchId (named apart from the table's columns, for `UPDATE … FROM`).
    id: i64,
    node: &'a str,
    lease_gen: i64,
    uuid: &'a str,
    next_status: &'static str,
    ended_ms: i64,
    answered: bool,
    cause: String,
    next_ms: i64,
}

impl<'a> From<&'a FinishedAttempt> for TaskMove<'a> {
    fn from(a: &'a FinishedAttempt) -> TaskMove<'a> {
        let (next, next_ms) = a.next_status();
        TaskMove {
            id: a.batch_id,
            node: &a.node,
            lease_gen: a.lease_gen,
            uuid: &a.uuid,
            next_status: next.db_name(),
            ended_ms: a.ended_ms,
            answered: a.answered_ms.is_some(),
            cause: a.hangup_cause.to_string(),
            next_ms,
        }
    }
}
