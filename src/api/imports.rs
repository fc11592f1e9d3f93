//! Calls made elsewhere: inbound (01) and manual outbound (03) records, imported in the
//! records/list row shape or posted by FreeSWITCH's mod_json_cdr.

use std::collections::{HashMap, HashSet};
use std::path::{Component, Path};

use axum::Json;
use axum::extract::State;
use percent_encoding::percent_decode_str;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::envelope::{ApiError, ApiJson, Envelope, RawBody, RequestBody};
use super::{AppState, lenient};
use crate::domain::{ApiTime, CallType, Turn, check_call_time};
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

/// The rules every call that comes from outside meets, imported or posted as a CDR: the
/// same phone, length and control-character rules as createTasks, times a calendar can
/// show and a call can have, and a hangup cause of the shape this system writes.
mod rules {
    use super::lenient;
    use crate::domain::{HangupCause, Phone};

    /// A call's uuid from another system: FreeSWITCH's are 36 characters of hex and
    /// dashes; other systems' ids fit in 64 of letters, digits and `-_.:`.
    pub fn uuid(v: &str) -> Result<String, String> {
        let shaped = (1..=64).contains(&v.len())
            && v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
        match shaped {
            true => Ok(v.to_string()),
            false => Err(format!("应为 1 到 64 个字母、数字或 -_.: 字符，收到 \"{}\"", lenient::clip(v))),
        }
    }

    pub fn telephone(v: &str) -> Result<String, String> {
        Phone::parse(v)
            .map(|p| p.as_str().to_string())
            .map_err(|why| format!("{why}，收到 \"{}\"", lenient::clip(v)))
    }

    /// An extension or a dialled number, as the switch wrote it.
    pub fn extnum(v: String) -> Result<String, String> {
        lenient::required_text(Some(v), 32).map(|v| v.trim().to_string())
    }

    pub fn hangup_cause(v: &str) -> Result<String, String> {
        HangupCause::parse(v)
            .map(|c| c.to_string())
            .map_err(|why| format!("{why}，收到 \"{}\"", lenient::clip(v)))
    }
}

/// Puts a field's name before what is wrong with it.
fn named(field: &str) -> impl Fn(String) -> String + '_ {
    move |why| format!("{field} {why}")
}

fn parse_record(r: RecordIn, time: &ApiTime) -> Result<CallRecord, String> {
    let required = |name: &str, v: Option<String>, max: usize| {
        lenient::required_text(v, max).map(|v| v.trim().to_string()).map_err(named(name))
    };
    let when = |name: &str, v: String| {
        time.parse(&v)
            .ok_or_else(|| format!("{name} 格式应为 yyyy-MM-dd HH:mm:ss"))
            .and_then(|ms| check_call_time(ms).map_err(named(name)))
    };
    let uuid = rules::uuid(&required("uuid", r.uuid, 64)?).map_err(named("uuid"))?;
    let call_type = match required("callType", r.call_type, 2)?.as_str() {
        "01" => CallType::Inbound,
        "03" => CallType::ManualOutbound,
        "02" => return Err("callType 02（AI 外呼）的记录由本系统生成，不能导入".into()),
        other => return Err(format!("callType 应为 01 或 03，收到 \"{other}\"")),
    };
    let telephone = rules::telephone(&required("telephone", r.telephone, 32)?).map_err(named("telephone"))?;
    let callout_ms = when("calloutTime", required("calloutTime", r.callout_time, 19)?)?;
    let ended_ms = when("callEndTime", required("callEndTime", r.call_end_time, 19)?)?;
    let answered_ms = lenient::filter(r.answered_time).map(|t| when("answeredTime", t)).transpose()?;
    if ended_ms < callout_ms {
        return Err("callEndTime 不能早于 calloutTime".into());
    }
    if answered_ms.is_some_and(|a| a < callout_ms || a > ended_ms) {
        return Err("answeredTime 应在 calloutTime 与 callEndTime 之间".into());
    }
    let extnum = lenient::filter(r.extnum).map(rules::extnum).transpose().map_err(named("extnum"))?;
    let wav_url = match lenient::filter(r.wav_file_url) {
        None => String::new(),
        url => required("wavFileUrl", url, 1024)?,
    };
    let dialogue = r.dialogue.unwrap_or_default();
    for turn in &dialogue {
        required("dialogue", Some(turn.content.clone()), 5000)?;
    }
    let hangup_cause =
        rules::hangup_cause(&required("hangupCause", r.hangup_cause, 64)?).map_err(named("hangupCause"))?;
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
        hangup_cause,
        wav_path: String::new(),
        wav_url,
        dialogue_json: serde_json::to_string(&dialogue).expect("turns serialize"),
        intent: String::new(),
        turn_latency_ms: None,
        batch_name: None,
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
        body = super::envelope::Answer<Envelope<Imported>>)))]
pub async fn import(
    State(state): State<AppState>,
    ApiJson(rows): ApiJson<Vec<RecordIn>>,
) -> Result<Json<Envelope<Imported>>, ApiError> {
    let max = state.config.api.max_tasks_per_request;
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
        body = super::envelope::Answer<Envelope<CdrAccepted>>)))]
pub async fn freeswitch_cdr(
    State(state): State<AppState>,
    RawBody(body): RawBody,
) -> Result<Json<Envelope<CdrAccepted>>, ApiError> {
    let json = match form_urlencoded::parse(&body).find(|(k, _)| k == "cdr") {
        Some((_, cdr)) if !body.trim_ascii_start().starts_with(b"{") => cdr.into_owned().into_bytes(),
        _ => body.to_vec(),
    };
    let CdrBody(cdr) = super::envelope::parse_json(&json)?;
    let record = cdr_record(&cdr, &state.time, &state.config.recordings.dir).map_err(ApiError::bad)?;
    let imported = state.store.import_records(std::slice::from_ref(&record)).await? == 1;
    let answer = CdrAccepted { uuid: record.uuid, call_type: record.call_type.code().into(), imported };
    Ok(Envelope::ok_with("CDR 已接收", answer))
}

/// mod_json_cdr url-encodes variable values by default.
fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8().map(|d| d.into_owned()).unwrap_or_else(|_| s.to_string())
}

/// A FreeSWITCH CDR as a call record, every field checked by the import's rules; the
/// error names the CDR's field.
///
/// The numbers come from `variables`, else from the first `callflow`'s `caller_profile`
/// (the channel's latest; FusionPBX's CDRs carry them only there). The call type:
/// `callcenter_call_type` (01 or 03) when the dialplan sets it; else an outbound leg is
/// manual outbound (03), and so is an inbound leg from an extension (at most 6 digits)
/// to a longer number (an agent dialing out); else inbound (01).
pub fn cdr_record(cdr: &Value, time: &ApiTime, recordings: &Path) -> Result<CallRecord, String> {
    let vars: HashMap<&str, String> = cdr["variables"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| v.as_str().map(|s| (k.as_str(), decode(s))))
        .collect();
    let callflow = match &cdr["callflow"] {
        Value::Array(flows) => flows.first().unwrap_or(&Value::Null),
        flow => flow,
    };
    let profile = &callflow["caller_profile"];
    let get = |k: &str| vars.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let from_profile = |k: &str| profile[k].as_str().map(str::trim).filter(|v| !v.is_empty());
    let number = |keys: [&str; 2]| {
        keys.iter().find_map(|k| get(k).map(|v| (format!("variables.{k}"), v))).or_else(|| {
            keys.iter().find_map(|k| from_profile(k).map(|v| (format!("callflow.caller_profile.{k}"), v)))
        })
    };

    let uuid = rules::uuid(get("uuid").ok_or("CDR 缺少 variables.uuid")?).map_err(named("variables.uuid"))?;
    let caller = number(["caller_id_number", "effective_caller_id_number"]);
    let callee = number(["destination_number", "callee_id_number"]);
    let is_extension = |n: &str| !n.is_empty() && n.len() <= 6 && n.bytes().all(|b| b.is_ascii_digit());
    let callee_len = callee.as_ref().map_or(0, |(_, n)| n.len());
    let call_type = match get("callcenter_call_type") {
        Some("01") => CallType::Inbound,
        Some("03") => CallType::ManualOutbound,
        Some(other) => {
            return Err(format!(
                "variables.callcenter_call_type 应为 01 或 03，收到 \"{}\"",
                lenient::clip(other)
            ));
        }
        None if get("direction") == Some("outbound") => CallType::ManualOutbound,
        None if caller.as_ref().is_some_and(|(_, n)| is_extension(n)) && callee_len > 6 => {
            CallType::ManualOutbound
        }
        None => CallType::Inbound,
    };
    let (telephone, extnum) = match call_type {
        CallType::ManualOutbound => (callee, caller),
        _ => (caller, callee),
    };
    let (field, telephone) =
        telephone.ok_or("CDR 缺少主叫或被叫号码（caller_id_number / destination_number）")?;
    let telephone = rules::telephone(telephone).map_err(named(&field))?;
    let extnum = extnum.map(|(field, n)| rules::extnum(n.to_string()).map_err(named(&field))).transpose()?;

    // Times: microsecond epochs, else second epochs, else local stamps; 0 or "" means never.
    let at = |name: &str| -> Result<Option<i64>, String> {
        let epoch = |suffix: &str, ms_of: fn(i64) -> Option<i64>| -> Result<Option<i64>, String> {
            let key = format!("{name}_{suffix}");
            let Some(v) = get(&key) else { return Ok(None) };
            let n: i64 =
                v.parse().map_err(|_| format!("variables.{key} 应为整数，收到 \"{}\"", lenient::clip(v)))?;
            match n {
                0 => Ok(None),
                n => ms_of(n)
                    .ok_or_else(|| "超出合理范围".to_string())
                    .and_then(check_call_time)
                    .map(Some)
                    .map_err(|why| format!("variables.{key} {why}")),
            }
        };
        if let Some(ms) = epoch("uepoch", |us| Some(us / 1000))? {
            return Ok(Some(ms));
        }
        if let Some(ms) = epoch("epoch", |s| s.checked_mul(1000))? {
            return Ok(Some(ms));
        }
        let key = format!("variables.{name}_stamp");
        get(&format!("{name}_stamp"))
            .map(|v| {
                time.parse(v)
                    .ok_or_else(|| format!("{key} 格式应为 yyyy-MM-dd HH:mm:ss"))
                    .and_then(|ms| check_call_time(ms).map_err(named(&key)))
            })
            .transpose()
    };
    let callout_ms = at("start")?.ok_or("CDR 缺少开始时间（start_epoch / start_stamp）")?;
    let ended_ms = at("end")?.unwrap_or(callout_ms).max(callout_ms);
    let answered_ms = at("answer")?.map(|a| a.clamp(callout_ms, ended_ms));

    let sip = get("sip_term_status")
        .or_else(|| get("proto_specific_hangup_cause").and_then(|p| p.strip_prefix("sip:")))
        .filter(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_digit()));
    let cause = get("hangup_cause").unwrap_or("NORMAL_CLEARING");
    let cause = match sip {
        Some(code) => format!("{cause}:sip:{code}"),
        None => format!("{cause}:null"),
    };
    let hangup_cause = rules::hangup_cause(&cause).map_err(named("variables.hangup_cause"))?;
    let wav_path =
        RECORDING_VARIABLES.iter().find_map(|k| get(k)).and_then(|p| relative_recording(p, recordings));
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
        hangup_cause,
        wav_path: wav_path.unwrap_or_default(),
        wav_url: String::new(),
        dialogue_json: "[]".into(),
        intent: String::new(),
        turn_latency_ms: None,
        batch_name: None,
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

    /// A CDR whose `variables` are these pairs.
    fn vars(pairs: &[(&str, &str)]) -> Value {
        let variables: serde_json::Map<String, Value> =
            pairs.iter().map(|(k, v)| (k.to_string(), Value::from(*v))).collect();
        serde_json::json!({ "variables": variables })
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
            ("direction", "outbound"), // a leg FreeSWITCH originated, on an inbound call
            ("caller_id_number", "18188888888"),
            ("destination_number", "4008001234"),
            ("start_epoch", "1755349919"),
            ("hangup_cause", "ORIGINATOR_CANCEL"),
        ]);
        let r = cdr_record(&v, &TZ, Path::new("/nonexistent")).unwrap();
        assert_eq!(r.call_type, CallType::Inbound);
        assert_eq!(r.telephone, "18188888888");
        assert_eq!(r.hangup_cause, "ORIGINATOR_CANCEL:null");
    }

    #[test]
    fn a_fusionpbx_cdr_gives_its_numbers_in_the_callflow_caller_profile_only() {
        // FusionPBX's CDR: the numbers are not among the variables.
        let cdr = serde_json::json!({
            "variables": {
                "uuid": "6f1c3b52-8d8e-4a59-9f53-0f2d1e0c9a11",
                "direction": "inbound",
                "start_epoch": "1755349919",
                "answer_epoch": "1755349925",
                "end_epoch": "1755349979",
                "hangup_cause": "NORMAL_CLEARING",
                "sip_term_status": "200"
            },
            "callflow": [
                {"caller_profile": {"caller_id_number": "18188888888", "destination_number": "4008001234"}},
                {"caller_profile": {"caller_id_number": "0", "destination_number": "9999"}}
            ]
        });
        let r = cdr_record(&cdr, &TZ, Path::new("/nonexistent")).unwrap();
        assert_eq!(r.call_type, CallType::Inbound);
        assert_eq!((r.telephone.as_str(), r.extnum.as_deref()), ("18188888888", Some("4008001234")));
        assert_eq!(r.time_len, 60);
        // An older FreeSWITCH writes one callflow object rather than an array.
        let mut single = cdr.clone();
        single["callflow"] = cdr["callflow"][0].clone();
        assert_eq!(cdr_record(&single, &TZ, Path::new("/nonexistent")).unwrap().telephone, "18188888888");
        // The variables win where both have a number.
        let mut both = cdr;
        both["variables"]["caller_id_number"] = "13912345678".into();
        assert_eq!(cdr_record(&both, &TZ, Path::new("/nonexistent")).unwrap().telephone, "13912345678");
    }

    #[test]
    fn a_time_out_of_range_or_past_i64_is_refused_naming_its_field() {
        let base = [("uuid", "e5"), ("caller_id_number", "18188888888"), ("destination_number", "8001")];
        for (key, value) in [
            ("start_epoch", "99999999999999"),
            ("start_epoch", "9223372036854775807"),
            ("start_epoch", "-9223372036854775808"),
            ("start_epoch", "9223372036854775808"),
            ("start_epoch", "-1"),
            ("start_epoch", "946684799"),
            ("start_uepoch", "9223372036854775807"),
            ("start_uepoch", "1.5"),
            ("start_stamp", "2099-01-01 00:00:00"),
            ("start_stamp", "1999-12-31 23:59:59"),
            ("start_stamp", "yesterday"),
        ] {
            let mut pairs = base.to_vec();
            pairs.push((key, value));
            let err = cdr_record(&vars(&pairs), &TZ, Path::new("/nonexistent")).unwrap_err();
            assert!(err.starts_with(&format!("variables.{key} ")), "{key}={value}: {err}");
        }
        let mut pairs = base.to_vec();
        pairs.extend([("start_epoch", "1755349919"), ("end_epoch", "9223372036854775807")]);
        let err = cdr_record(&vars(&pairs), &TZ, Path::new("/nonexistent")).unwrap_err();
        assert!(err.starts_with("variables.end_epoch "), "{err}");
    }

    #[test]
    fn numbers_uuids_and_causes_meet_the_same_rules_as_everywhere_else() {
        let good = [
            ("uuid", "e6"),
            ("caller_id_number", "18188888888"),
            ("destination_number", "8001"),
            ("start_epoch", "1755349919"),
            ("hangup_cause", "NORMAL_CLEARING"),
        ];
        assert!(cdr_record(&vars(&good), &TZ, Path::new("/nonexistent")).is_ok());
        for (key, value, field) in [
            ("caller_id_number", "1818888\u{0}8888", "variables.caller_id_number"),
            ("caller_id_number", "\u{1b}[31m18188888888", "variables.caller_id_number"),
            ("caller_id_number", "anonymous", "variables.caller_id_number"),
            ("caller_id_number", "123456789012345678901", "variables.caller_id_number"),
            ("destination_number", "80\u{0}01", "variables.destination_number"),
            ("destination_number", &"8".repeat(33), "variables.destination_number"),
            ("uuid", "a b", "variables.uuid"),
            ("uuid", &"a".repeat(65), "variables.uuid"),
            ("uuid", "../../etc", "variables.uuid"),
            ("hangup_cause", "normal clearing", "variables.hangup_cause"),
            ("hangup_cause", &"X".repeat(49), "variables.hangup_cause"),
        ] {
            let pairs: Vec<(&str, &str)> =
                good.iter().map(|&(k, v)| if k == key { (k, value) } else { (k, v) }).collect();
            let err = cdr_record(&vars(&pairs), &TZ, Path::new("/nonexistent")).unwrap_err();
            assert!(err.starts_with(&format!("{field} ")), "{key}={value:?}: {err}");
        }
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
