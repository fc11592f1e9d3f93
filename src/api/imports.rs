//! Calls made elsewhere: inbound (01) and manual outbound (03) records, imported in the
//! records/list row shape or posted by FreeSWITCH's mod_json_cdr.

use std::collections::{HashMap, HashSet};
use std::path::{Component, Path};

use axum::Json;
use axum::extract::State;
use bytes::Bytes;
use percent_encoding::percent_decode_str;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::envelope::{ApiError, ApiJson, Envelope, RequestBody};
use super::{AppState, lenient};
use crate::domain::{ApiTime, CallType, Turn};
use crate::store::CallRecord;

/// One call in the records/list row shape. `timeLen` is computed, not taken.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecordIn {
    #[serde(default, deserialize_with = "lenient::opt_string")]
    #[schema(required, value_type = String)]
    pub uuid: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    #[schema(required, value_type = String, example = "18188888888")]
    pub telephone: Option<String>,
    /// 01 inbound or 03 manual outbound.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    #[schema(required, value_type = String, example = "01")]
    pub call_type: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    #[schema(required, value_type = String, example = "2025-08-16 21:11:59")]
    pub callout_time: Option<String>,
    /// Empty or absent when never answered.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub answered_time: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    #[schema(required, value_type = String, example = "2025-08-16 21:12:04")]
    pub call_end_time: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    #[schema(required, value_type = String, example = "NORMAL_CLEARING:sip:200")]
    pub hangup_cause: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub wav_file_url: Option<String>,
    #[serde(default)]
    pub dialogue: Option<Vec<Turn>>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub extnum: Option<String>,
}

impl RequestBody for Vec<RecordIn> {
    fn check_shape(body: &Value) -> Result<(), ApiError> {
        let rows = body.as_array().ok_or_else(|| ApiError::bad("请求体应为通话记录的 JSON 数组"))?;
        match rows.iter().position(|t| !t.is_object()) {
            Some(i) => Err(ApiError::bad(format!("第 {} 条记录（下标 {i}）应为 JSON 对象", i + 1))),
            None => Ok(()),
        }
    }
}

fn parse_record(r: RecordIn, time: &ApiTime) -> Result<CallRecord, String> {
    let required = |name: &str, v: Option<String>, max: usize| {
        lenient::required_text(v, max).map(|v| v.trim().to_string()).map_err(|why| format!("{name} {why}"))
    };
    let when =
        |name: &str, v: String| time.parse(&v).ok_or_else(|| format!("{name} 格式应为 yyyy-MM-dd HH:mm:ss"));
    let uuid = required("uuid", r.uuid, 64)?;
    let call_type = match required("callType", r.call_type, 2)?.as_str() {
        "01" => CallType::Inbound,
        "03" => CallType::ManualOutbound,
        "02" => return Err("callType 02（AI 外呼）的记录由本系统生成，不能导入".into()),
        other => return Err(format!("callType 应为 01 或 03，收到 \"{other}\"")),
    };
    let telephone = required("telephone", r.telephone, 32)?;
    let callout_ms = when("calloutTime", required("calloutTime", r.callout_time, 19)?)?;
    let ended_ms = when("callEndTime", required("callEndTime", r.call_end_time, 19)?)?;
    let answered_ms = lenient::filter(r.answered_time).map(|t| when("answeredTime", t)).transpose()?;
    if ended_ms < callout_ms {
        return Err("callEndTime 不能早于 calloutTime".into());
    }
    if answered_ms.is_some_and(|a| a < callout_ms || a > ended_ms) {
        return Err("answeredTime 应在 calloutTime 与 callEndTime 之间".into());
    }
    let optional = |name: &str, v: Option<String>, max: usize| match lenient::filter(v) {
        None => Ok(None),
        some => required(name, some, max).map(Some),
    };
    let extnum = optional("extnum", r.extnum, 32)?;
    let wav_url = optional("wavFileUrl", r.wav_file_url, 1024)?.unwrap_or_default();
    let dialogue = r.dialogue.unwrap_or_default();
    for turn in &dialogue {
        required("dialogue", Some(turn.content.clone()), 5000)?;
    }
    Ok(CallRecord {
        uuid,
        call_type,
        batch_id: None,
        telephone,
        extnum,
        callout_ms,
        answered_ms,
        ended_ms,
        time_len: CallRecord::time_len_of(callout_ms, answered_ms, ended_ms),
        hangup_cause: required("hangupCause", r.hangup_cause, 64)?,
        wav_path: String::new(),
        wav_url,
        dialogue_json: serde_json::to_string(&dialogue).expect("turns serialize"),
        intent: String::new(),
    })
}

#[derive(Serialize, ToSchema)]
pub struct Imported {
    imported: u64,
    skipped: u64,
}

/// Stores inbound and manual outbound calls, all or nothing; a uuid already stored is
/// skipped, so a retried import is harmless.
#[utoipa::path(post, path = "/api/aicall/records/import", tag = "records", operation_id = "importRecords",
    request_body = Vec<RecordIn>, security(("bearer" = []), ("apiKey" = []), ("basic" = [])),
    responses((status = 200, description = "How many were new and how many were already there; or code 405 naming the bad record",
        body = super::openapi::Answer<Envelope<Imported>>)))]
pub async fn import(
    State(state): State<AppState>,
    ApiJson(rows): ApiJson<Vec<RecordIn>>,
) -> Result<Json<Envelope<Imported>>, ApiError> {
    let max = state.settings.api.max_tasks_per_request;
    if rows.is_empty() {
        return Err(ApiError::bad("记录列表不能为空"));
    }
    if rows.len() > max {
        return Err(ApiError::bad(format!("一次最多导入 {max} 条记录，收到 {} 条", rows.len())));
    }
    let mut seen = HashSet::with_capacity(rows.len());
    let mut records = Vec::with_capacity(rows.len());
    for (i, row) in rows.into_iter().enumerate() {
        let record = parse_record(row, &state.time)
            .map_err(|why| ApiError::bad(format!("第 {} 条记录（下标 {i}）的 {why}", i + 1)))?;
        if !seen.insert(record.uuid.clone()) {
            return Err(ApiError::bad(format!("第 {} 条记录（下标 {i}）的 uuid 与前面的记录重复", i + 1)));
        }
        records.push(record);
    }
    let imported = state.store.import_records(&records).await?;
    let skipped = records.len() as u64 - imported;
    Ok(Envelope::ok_with(
        format!("导入 {imported} 条，跳过 {skipped} 条已有记录"),
        Imported { imported, skipped },
    ))
}

/// A CDR body: mod_json_cdr sends the JSON itself or, url-encoded, a `cdr=` form field.
pub struct CdrBody(Value);

impl RequestBody for CdrBody {
    fn check_shape(body: &Value) -> Result<(), ApiError> {
        match body.get("variables") {
            Some(Value::Object(_)) => Ok(()),
            _ => Err(ApiError::bad("CDR 应为 mod_json_cdr 的 JSON，含 variables 对象")),
        }
    }
}

impl<'de> Deserialize<'de> for CdrBody {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Value::deserialize(d).map(CdrBody)
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CdrAccepted {
    uuid: String,
    call_type: String,
    /// False when this uuid was already stored (mod_json_cdr retried).
    imported: bool,
}

/// The recording variables a dialplan may set, in order of preference.
const RECORDING_VARIABLES: [&str; 4] =
    ["callcenter_recording", "record_path", "recording_file", "record_file"];

/// FreeSWITCH's mod_json_cdr posts each call's CDR here.
#[utoipa::path(post, path = "/api/cdr/freeswitch", tag = "records", operation_id = "freeswitchCdr",
    request_body(content = Object, description = "mod_json_cdr's JSON (or a `cdr=` form field holding it)"),
    security(("bearer" = []), ("apiKey" = []), ("basic" = [])),
    responses((status = 200, description = "Stored (or already stored); or code 405 naming the bad field",
        body = super::openapi::Answer<Envelope<CdrAccepted>>)))]
pub async fn freeswitch_cdr(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<Envelope<CdrAccepted>>, ApiError> {
    let json = match form_urlencoded::parse(&body).find(|(k, _)| k == "cdr") {
        Some((_, cdr)) if !body.trim_ascii_start().starts_with(b"{") => cdr.into_owned().into_bytes(),
        _ => body.to_vec(),
    };
    let CdrBody(cdr) = super::envelope::parse_json(&json)?;
    let vars: HashMap<&str, String> = cdr["variables"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| v.as_str().map(|s| (k.as_str(), decode(s))))
        .collect();
    let record = cdr_record(&vars, &state.time, &state.settings.recordings.dir).map_err(ApiError::bad)?;
    let imported = state.store.import_records(std::slice::from_ref(&record)).await? == 1;
    let answer = CdrAccepted { uuid: record.uuid, call_type: record.call_type.code().into(), imported };
    Ok(Envelope::ok_with("CDR 已接收", answer))
}

/// mod_json_cdr url-encodes variable values by default.
fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8().map(|d| d.into_owned()).unwrap_or_else(|_| s.to_string())
}

/// A FreeSWITCH CDR's variables as a call record.
///
/// The call type: `callcenter_call_type` (01 or 03) when the dialplan sets it; else an
/// outbound leg is manual outbound (03), and so is an inbound leg from an extension
/// (at most 6 digits) to a longer number (an agent dialing out); else inbound (01).
pub fn cdr_record(
    vars: &HashMap<&str, String>,
    time: &ApiTime,
    recordings: &Path,
) -> Result<CallRecord, String> {
    let get = |k: &str| vars.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let uuid = get("uuid").ok_or("CDR 缺少 variables.uuid")?.to_string();
    let caller = get("caller_id_number").or(get("effective_caller_id_number")).unwrap_or("").to_string();
    let callee = get("destination_number").or(get("callee_id_number")).unwrap_or("").to_string();
    let is_extension = |n: &str| !n.is_empty() && n.len() <= 6 && n.bytes().all(|b| b.is_ascii_digit());
    let call_type = match get("callcenter_call_type") {
        Some("01") => CallType::Inbound,
        Some("03") => CallType::ManualOutbound,
        Some(other) => return Err(format!("callcenter_call_type 应为 01 或 03，收到 \"{other}\"")),
        None if get("direction") == Some("outbound") => CallType::ManualOutbound,
        None if is_extension(&caller) && callee.len() > 6 => CallType::ManualOutbound,
        None => CallType::Inbound,
    };
    let (telephone, extnum) = match call_type {
        CallType::ManualOutbound => (callee, caller),
        _ => (caller, callee),
    };
    if telephone.is_empty() {
        return Err("CDR 缺少主叫或被叫号码（caller_id_number / destination_number）".into());
    }
    // Times: microsecond epochs, else second epochs, else local stamps; 0 means never.
    let at = |name: &str| -> Option<i64> {
        let positive = |v: &str| v.parse::<i64>().ok().filter(|v| *v > 0);
        get(&format!("{name}_uepoch"))
            .and_then(positive)
            .map(|us| us / 1000)
            .or_else(|| get(&format!("{name}_epoch")).and_then(positive).map(|s| s * 1000))
            .or_else(|| get(&format!("{name}_stamp")).and_then(|s| time.parse(s)))
    };
    let callout_ms = at("start").ok_or("CDR 缺少开始时间（start_epoch / start_stamp）")?;
    let ended_ms = at("end").unwrap_or(callout_ms).max(callout_ms);
    let answered_ms = at("answer").map(|a| a.clamp(callout_ms, ended_ms));
    let cause = get("hangup_cause").unwrap_or("NORMAL_CLEARING");
    let sip = get("sip_term_status")
        .or_else(|| get("proto_specific_hangup_cause").and_then(|p| p.strip_prefix("sip:")))
        .filter(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_digit()));
    let hangup_cause = match sip {
        Some(code) => format!("{cause}:sip:{code}"),
        None => format!("{cause}:null"),
    };
    let wav_path =
        RECORDING_VARIABLES.iter().find_map(|k| get(k)).and_then(|p| relative_recording(p, recordings));
    Ok(CallRecord {
        uuid,
        call_type,
        batch_id: None,
        telephone,
        extnum: Some(extnum).filter(|e| !e.is_empty()),
        callout_ms,
        answered_ms,
        ended_ms,
        time_len: CallRecord::time_len_of(callout_ms, answered_ms, ended_ms),
        hangup_cause,
        wav_path: wav_path.unwrap_or_default(),
        wav_url: String::new(),
        dialogue_json: "[]".into(),
        intent: String::new(),
    })
}

/// A recording path as FreeSWITCH wrote it, made relative to `recordings.dir` (which
/// must be the same storage); None when it lies elsewhere.
fn relative_recording(path: &str, recordings: &Path) -> Option<String> {
    let path = Path::new(path);
    let relative = if path.is_absolute() {
        let root = std::fs::canonicalize(recordings).unwrap_or_else(|_| recordings.to_path_buf());
        path.strip_prefix(&root).or_else(|_| path.strip_prefix(recordings)).ok()?
    } else {
        path
    };
    let plain = relative.components().all(|c| matches!(c, Component::Normal(_)));
    (plain && relative.extension().is_some_and(|e| e == "wav"))
        .then(|| relative.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&'static str, &str)]) -> HashMap<&'static str, String> {
        pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
    }

    const TZ: ApiTime = ApiTime(chrono_tz::Asia::Shanghai);

    #[test]
    fn an_inbound_cdr_becomes_an_01_record_with_the_callee_as_extnum() {
        let v = vars(&[
            ("uuid", "a1b2"),
            ("direction", "inbound"),
            ("caller_id_number", "18188888888"),
            ("destination_number", "8001"),
            ("start_epoch", "1755349919"),
            ("answer_epoch", "1755349921"),
            ("end_epoch", "1755349979"),
            ("hangup_cause", "NORMAL_CLEARING"),
            ("sip_term_status", "200"),
        ]);
        let r = cdr_record(&v, &TZ, Path::new("/nonexistent")).unwrap();
        assert_eq!(r.call_type, CallType::Inbound);
        assert_eq!((r.telephone.as_str(), r.extnum.as_deref()), ("18188888888", Some("8001")));
        assert_eq!(r.callout_ms, 1755349919000);
        assert_eq!(r.time_len, 60);
        assert_eq!(r.hangup_cause, "NORMAL_CLEARING:sip:200");
    }

    #[test]
    fn an_agent_dialing_out_is_manual_outbound_and_unanswered_calls_have_no_talk_time() {
        let v = vars(&[
            ("uuid", "c3"),
            ("direction", "inbound"),
            ("caller_id_number", "8001"),
            ("destination_number", "13912345678"),
            ("start_stamp", "2025-08-16 21:11:59"),
            ("answer_epoch", "0"),
            ("end_stamp", "2025-08-16 21:12:20"),
            ("hangup_cause", "USER_BUSY"),
            ("proto_specific_hangup_cause", "sip:486"),
        ]);
        let r = cdr_record(&v, &TZ, Path::new("/nonexistent")).unwrap();
        assert_eq!(r.call_type, CallType::ManualOutbound);
        assert_eq!((r.telephone.as_str(), r.extnum.as_deref()), ("13912345678", Some("8001")));
        assert_eq!(r.answered_ms, None);
        assert_eq!(r.time_len, 0);
        assert_eq!(r.hangup_cause, "USER_BUSY:sip:486");
    }

    #[test]
    fn the_dialplan_may_say_the_call_type_and_a_cause_without_sip_code_says_null() {
        let v = vars(&[
            ("uuid", "d4"),
            ("callcenter_call_type", "01"),
            ("caller_id_number", "8001"),
            ("destination_number", "13912345678"),
            ("start_epoch", "1755349919"),
            ("hangup_cause", "ORIGINATOR_CANCEL"),
        ]);
        let r = cdr_record(&v, &TZ, Path::new("/nonexistent")).unwrap();
        assert_eq!(r.call_type, CallType::Inbound);
        assert_eq!(r.hangup_cause, "ORIGINATOR_CANCEL:null");
    }

    #[test]
    fn a_recording_is_kept_only_under_the_recordings_directory() {
        let root = Path::new("/srv/rec");
        assert_eq!(relative_recording("/srv/rec/pbx/2025/a.wav", root).as_deref(), Some("pbx/2025/a.wav"));
        assert_eq!(relative_recording("pbx/a.wav", root).as_deref(), Some("pbx/a.wav"));
        assert_eq!(relative_recording("/etc/passwd", root), None);
        assert_eq!(relative_recording("/srv/rec/../etc/a.wav", root), None);
        assert_eq!(relative_recording("/srv/rec/a.mp3", root), None);
    }
}
