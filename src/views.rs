//! The JSON shapes of a task and a call record, field for field as the spec's list
//! endpoints show them. The API lists them and webhooks send them, so both share these.

use serde::Serialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;

use crate::domain::ApiTime;
use crate::store::{CallRecord, TaskRow};

/// One row of calltask/list: the spec's fields, then the promised call statistics.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskRowJson {
    batch_id: i64,
    task_type: i64,
    #[serde(rename = "createtime")]
    created: i64,
    stop_time: Option<i64>,
    connected: bool,
    ticket_no: String,
    phone: String,
    username: String,
    ticket_type: String,
    ticket_content: String,
    /// 待呼叫, 呼叫中, 等待重呼, 已完成, 已停止 or 已拦截.
    status: &'static str,
    call_count: i64,
    last_hangup_cause: Option<String>,
    /// The task's campaign (`default` for tasks created without a batchName).
    batch_name: String,
}

impl From<TaskRow> for TaskRowJson {
    fn from(t: TaskRow) -> TaskRowJson {
        TaskRowJson {
            batch_id: t.batch_id,
            task_type: t.task_type,
            created: t.created_ms,
            stop_time: t.stopped_ms,
            connected: t.connected,
            ticket_no: t.ticket_no,
            phone: t.phone,
            username: t.username,
            ticket_type: t.ticket_type,
            ticket_content: t.ticket_content,
            status: t.status.label(),
            call_count: t.call_count,
            last_hangup_cause: t.last_hangup_cause,
            batch_name: t.batch_name,
        }
    }
}

/// One row of records/list, field for field as the spec shows it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecordRow {
    uuid: String,
    telephone: String,
    call_type: &'static str,
    callout_time: String,
    answered_time: String,
    call_end_time: String,
    hangup_cause: String,
    wav_file_url: String,
    #[schema(value_type = Vec<crate::domain::Turn>)]
    dialogue: Box<RawValue>,
    extnum: Option<String>,
    time_len: i64,
    /// Beyond the spec: the outcome of an answered AI call (已确认, 拒绝, 需回访, 无效 …), else "".
    intent: String,
}

impl RecordRow {
    /// `public_url` is `server.public_url`, the prefix of `wavFileUrl`.
    pub fn new(r: CallRecord, time: &ApiTime, public_url: &str) -> Result<RecordRow, BrokenRecord> {
        let wav_file_url = if !r.wav_url.is_empty() {
            r.wav_url
        } else if r.wav_path.is_empty() {
            String::new()
        } else {
            format!("{}/recordings/files?filename={}", public_url.trim_end_matches('/'), r.wav_path)
        };
        let broken = |what: String| BrokenRecord { uuid: r.uuid.clone(), what };
        let format = |ms: i64| time.format(ms).map_err(|e| broken(format!("a bad time: {e}")));
        let dialogue =
            RawValue::from_string(r.dialogue_json).map_err(|e| broken(format!("a bad dialogue: {e}")))?;
        Ok(RecordRow {
            call_type: r.call_type.code(),
            callout_time: format(r.callout_ms)?,
            answered_time: r.answered_ms.map(format).transpose()?.unwrap_or_default(),
            call_end_time: format(r.ended_ms)?,
            hangup_cause: r.hangup_cause,
            wav_file_url,
            dialogue,
            extnum: r.extnum,
            time_len: r.time_len,
            intent: r.intent,
            telephone: r.telephone,
            uuid: r.uuid,
        })
    }
}

/// A stored record that cannot be shown (a time out of the calendar's range, a dialogue
/// that is not JSON).
#[derive(Debug, thiserror::Error)]
#[error("record {uuid} has {what}")]
pub struct BrokenRecord {
    pub uuid: String,
    pub what: String,
}
