//! Campaigns (the spec's batchName): save, list, pause, resume, stop.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::envelope::Answer;
use super::envelope::{ApiError, ApiJson, Envelope, Null, PageEnvelope, RequestBody, must_be_object};
use super::tasks::MAX_CAMPAIGN_NAME;
use super::{AppState, lenient};
use crate::dialer::CampaignSettings;
use crate::domain::{OUTCOME_CLASSES, TaskStatus, now_ms};
use crate::store::CampaignRow;

/// campaign/save: creates the campaign, or changes the settings of the one that exists.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SaveRequest {
    /// The campaign's name (≤ 100 characters), as tickets' `batchName` give it.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    #[schema(required, value_type = String, example = "九月份营销活动", max_length = 100)]
    pub batch_name: Option<String>,
    /// Settings to change: each one given replaces the campaign's, `null` removes it (the
    /// global setting applies again), one not given stays as it was.
    #[serde(default)]
    #[schema(value_type = Option<CampaignSettings>)]
    pub settings: Option<Map<String, Value>>,
}

impl RequestBody for SaveRequest {
    fn check_shape(body: &Value) -> Result<(), ApiError> {
        must_be_object(body)
    }
}

/// pause, resume and stop: one campaign by name.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NameRequest {
    #[serde(default, deserialize_with = "lenient::opt_string")]
    #[schema(required, value_type = String, example = "九月份营销活动", max_length = 100)]
    pub batch_name: Option<String>,
}

impl RequestBody for NameRequest {
    fn check_shape(body: &Value) -> Result<(), ApiError> {
        must_be_object(body)
    }
}

/// campaign/list: every campaign, or the one named.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListRequest {
    #[serde(default, deserialize_with = "lenient::opt_string")]
    #[schema(example = "九月份营销活动")]
    pub batch_name: Option<String>,
}

impl RequestBody for ListRequest {
    fn check_shape(body: &Value) -> Result<(), ApiError> {
        must_be_object(body)
    }
}

/// A campaign with its numbers.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CampaignJson {
    batch_name: String,
    /// 运行中 or 已暂停.
    status: &'static str,
    paused: bool,
    /// Epoch milliseconds.
    created_time: i64,
    updated_time: i64,
    /// The settings it overrides (the rest follow the global ones).
    settings: CampaignSettings,
    /// Its tasks by status label (待呼叫, 呼叫中, 等待重呼, 已完成, 已停止, 已拦截), every label present.
    #[schema(value_type = BTreeMap<String, i64>)]
    tasks: BTreeMap<&'static str, i64>,
    /// Today's ended calls (by calloutTime, in the configured zone).
    today: TodayCalls,
}

#[derive(Serialize, ToSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct TodayCalls {
    calls: i64,
    answered: i64,
    /// By outcome: answered, busy, no_answer, unallocated, rejected, stopped, interrupted, failed.
    #[schema(value_type = BTreeMap<String, i64>)]
    outcomes: BTreeMap<&'static str, i64>,
}

fn campaign_name(name: Option<String>) -> Result<String, ApiError> {
    lenient::required_text(lenient::filter(name), MAX_CAMPAIGN_NAME)
        .map_err(|why| ApiError::bad(format!("batchName {why}")))
}

fn unknown(name: &str) -> ApiError {
    ApiError::bad(format!("batchName 不是已有的外呼活动：\"{name}\""))
}

/// The stored settings with `changes` applied (`null` removes one), checked.
fn merged(stored: Option<&str>, changes: Map<String, Value>) -> Result<(CampaignSettings, String), ApiError> {
    let mut settings: Map<String, Value> =
        stored.and_then(|s| serde_json::from_str(s).ok()).unwrap_or_default();
    for (key, value) in changes {
        if value.is_null() {
            settings.remove(&key);
        } else {
            settings.insert(key, value);
        }
    }
    let parsed: CampaignSettings =
        serde_path_to_error::deserialize(Value::Object(settings)).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." { "settings".to_string() } else { format!("settings.{path}") };
            ApiError::bad(format!("参数 {field} {}", e.into_inner()))
        })?;
    parsed.validate().map_err(|why| ApiError::bad(format!("参数 {why}")))?;
    // Stored as the checked settings, so that what is listed is what the dialer follows.
    let json = serde_json::to_string(&parsed).expect("settings serialize");
    Ok((parsed, json))
}

#[utoipa::path(post, path = "/api/aicall/campaign/save", tag = "campaigns", operation_id = "campaignSave",
    request_body = SaveRequest, security(("bearer" = []), ("apiKey" = []), ("basic" = [])),
    responses((status = 200, description = "The campaign as saved; or code 405 naming the bad field",
        body = Answer<Envelope<CampaignJson>>)))]
pub async fn save(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<SaveRequest>,
) -> Result<Json<Envelope<CampaignJson>>, ApiError> {
    let name = campaign_name(req.batch_name)?;
    let existing = state.store.campaigns().await?.into_iter().find(|c| c.name == name);
    let (_, settings) =
        merged(existing.as_ref().map(|c| c.settings.as_str()), req.settings.unwrap_or_default())?;
    let row = state.store.save_campaign(&name, &settings, now_ms()).await?;
    // The dialer reads the campaigns again at once (other nodes: by NOTIFY, or within a second).
    state.dialer.wake.notify_one();
    let mut listed = list_of(&state, vec![row]).await?;
    Ok(Envelope::ok_with("外呼活动已保存", listed.remove(0)))
}

#[utoipa::path(post, path = "/api/aicall/campaign/list", tag = "campaigns", operation_id = "campaignList",
    request_body = ListRequest, security(("bearer" = []), ("apiKey" = []), ("basic" = [])),
    responses((status = 200, description = "Every campaign (or the one named) by name, with its tasks by status and today's calls",
        body = Answer<PageEnvelope<CampaignJson>>)))]
pub async fn list(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<ListRequest>,
) -> Result<Json<PageEnvelope<CampaignJson>>, ApiError> {
    let mut rows = state.store.campaigns().await?;
    if let Some(name) = lenient::filter(req.batch_name) {
        rows.retain(|c| c.name == name);
    }
    let rows = list_of(&state, rows).await?;
    Ok(PageEnvelope::ok(rows.len() as i64, rows))
}

/// The campaigns with their counts and today's calls.
async fn list_of(state: &AppState, rows: Vec<CampaignRow>) -> Result<Vec<CampaignJson>, ApiError> {
    let counts = state.store.campaign_counts().await?;
    let (from, until) = today(state)?;
    let calls = state.store.campaign_calls(from, until).await?;
    Ok(rows
        .into_iter()
        .map(|c| {
            let mut tasks: BTreeMap<&'static str, i64> =
                TaskStatus::ALL.iter().map(|s| (s.label(), 0)).collect();
            for n in counts.iter().filter(|n| n.name == c.name) {
                *tasks.entry(n.status.label()).or_default() += n.tasks;
            }
            let mut today = TodayCalls {
                outcomes: OUTCOME_CLASSES.iter().map(|o| (*o, 0)).collect(),
                ..TodayCalls::default()
            };
            for k in calls.iter().filter(|k| k.name == c.name) {
                if let Some(n) = today.outcomes.get_mut(k.outcome.as_str()) {
                    *n += k.calls;
                }
                today.calls += k.calls;
                today.answered += if k.outcome == "answered" { k.calls } else { 0 };
            }
            CampaignJson {
                status: if c.paused { "已暂停" } else { "运行中" },
                paused: c.paused,
                created_time: c.created_ms,
                updated_time: c.updated_ms,
                settings: serde_json::from_str(&c.settings).unwrap_or_default(),
                tasks,
                today,
                batch_name: c.name,
            }
        })
        .collect())
}

/// Today in the configured zone: `[from, until)`, epoch ms.
fn today(state: &AppState) -> Result<(i64, i64), ApiError> {
    let date = state.time.local(now_ms())?.date_naive();
    let midnight = |d: chrono::NaiveDate| state.time.parse(&format!("{d} 00:00:00"));
    match (midnight(date), date.succ_opt().and_then(midnight)) {
        (Some(from), Some(until)) => Ok((from, until)),
        _ => Err(ApiError::Internal(anyhow::anyhow!("today is out of the calendar's range"))),
    }
}

#[utoipa::path(post, path = "/api/aicall/campaign/pause", tag = "campaigns", operation_id = "campaignPause",
    request_body = NameRequest, security(("bearer" = []), ("apiKey" = []), ("basic" = [])),
    responses((status = 200, description = "Paused: its waiting tasks stay 待呼叫 and are not dialled, calls in progress finish; or code 405",
        body = Answer<Envelope<Null>>)))]
pub async fn pause(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<NameRequest>,
) -> Result<Json<Envelope<Null>>, ApiError> {
    set_paused(state, req, true).await
}

#[utoipa::path(post, path = "/api/aicall/campaign/resume", tag = "campaigns", operation_id = "campaignResume",
    request_body = NameRequest, security(("bearer" = []), ("apiKey" = []), ("basic" = [])),
    responses((status = 200, description = "Resumed: its waiting tasks are dialled again; or code 405",
        body = Answer<Envelope<Null>>)))]
pub async fn resume(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<NameRequest>,
) -> Result<Json<Envelope<Null>>, ApiError> {
    set_paused(state, req, false).await
}

async fn set_paused(
    state: AppState,
    req: NameRequest,
    paused: bool,
) -> Result<Json<Envelope<Null>>, ApiError> {
    let name = campaign_name(req.batch_name)?;
    if !state.store.pause_campaign(&name, paused, now_ms()).await? {
        return Err(unknown(&name));
    }
    state.dialer.wake.notify_one();
    let msg = if paused { "外呼活动已暂停" } else { "外呼活动已恢复" };
    Ok(Envelope::ok_with(msg, Null))
}

#[utoipa::path(post, path = "/api/aicall/campaign/stop", tag = "campaigns", operation_id = "campaignStop",
    request_body = NameRequest, security(("bearer" = []), ("apiKey" = []), ("basic" = [])),
    responses((status = 200, description = "Every unfinished task of the campaign stopped, as stopTasks does (msg says how many); or code 405",
        body = Answer<Envelope<Null>>)))]
pub async fn stop(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<NameRequest>,
) -> Result<Json<Envelope<Null>>, ApiError> {
    let name = campaign_name(req.batch_name)?;
    let Some(outcome) = state.store.stop_campaign(&name, now_ms()).await? else {
        return Err(unknown(&name));
    };
    if outcome.hanging_up > 0 {
        state.dialer.stop_check.notify_one();
    }
    let msg = match outcome.hanging_up {
        0 => format!("已停止 {} 个任务", outcome.stopped),
        n => format!("已停止 {} 个任务，其中 {n} 个通话正在挂断", outcome.stopped + n),
    };
    Ok(Envelope::ok_with(msg, Null))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn changes(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn saved_settings_change_what_is_given_and_null_removes_one() {
        let (_, first) = merged(None, changes(json!({"max_attempts": 3, "priority": 5}))).unwrap();
        let (s, _) =
            merged(Some(&first), changes(json!({"priority": null, "retry_delay_secs": 60}))).unwrap();
        assert_eq!((s.max_attempts, s.priority, s.retry_delay_secs), (Some(3), None, Some(60)));
    }

    #[test]
    fn a_bad_setting_is_named() {
        let msg = |v: Value| merged(None, changes(v)).unwrap_err().to_string();
        assert!(msg(json!({"calling_hours": "9-5"})).contains("settings.calling_hours"));
        assert!(msg(json!({"max_attempts": 0})).contains("settings.max_attempts"));
        assert!(msg(json!({"colour": "red"})).contains("colour"));
        assert!(msg(json!({"timezone": "Mars/Base"})).contains("settings.timezone"));
    }
}
