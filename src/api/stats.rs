//! A day's numbers for dashboards: calls, answers, talk time, calls in progress, tasks
//! waiting, and calls per hour by outcome. Read from `record_stats`, so it costs the
//! same on a busy day as on a quiet one.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use chrono::{Days, NaiveDate};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::envelope::Answer;
use super::envelope::{ApiError, ApiJson, Envelope, RequestBody, must_be_object};
use super::{AppState, lenient};
use crate::domain::{CallType, OUTCOME_CLASSES, TaskStatus, now_ms};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatsRequest {
    /// `yyyy-MM-dd` in the configured time zone; today when absent.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    #[schema(example = "2025-08-16")]
    pub date: Option<String>,
    /// 01, 02 or 03; 02 (AI outbound) when absent.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub call_type: Option<String>,
}

impl RequestBody for StatsRequest {
    fn check_shape(body: &Value) -> Result<(), ApiError> {
        must_be_object(body)
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HourRow {
    /// The hour's start, `HH:mm`.
    hour: String,
    calls: i64,
    /// Calls by outcome: answered, busy, no_answer, unallocated, rejected, stopped, interrupted, failed.
    outcomes: BTreeMap<&'static str, i64>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DayStats {
    date: String,
    call_type: &'static str,
    /// Calls that ended this day (by calloutTime), plus those in progress when it is today.
    calls_started: i64,
    answered: i64,
    /// answered / ended calls; 0 when none ended.
    answer_rate: f64,
    /// Mean timeLen of answered calls, seconds.
    avg_talk_secs: f64,
    calls_in_progress: i64,
    tasks_waiting: i64,
    hours: Vec<HourRow>,
    /// The same day by campaign (AI outbound only; empty for other call types), by name.
    campaigns: Vec<CampaignDay>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CampaignDay {
    batch_name: String,
    /// Ended calls this day (by calloutTime).
    calls: i64,
    answered: i64,
    /// Its tasks 待呼叫 or 等待重呼, and 呼叫中, now.
    tasks_waiting: i64,
    calls_in_progress: i64,
    /// Calls by outcome, as `hours`.
    outcomes: BTreeMap<&'static str, i64>,
}

#[utoipa::path(post, path = "/api/aicall/stats", tag = "stats", operation_id = "dayStats",
    request_body = StatsRequest, security(("bearer" = []), ("apiKey" = []), ("basic" = [])),
    responses((status = 200, description = "The day's numbers and calls per hour by outcome; or code 405 for bad parameters",
        body = Answer<Envelope<DayStats>>)))]
pub async fn day(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<StatsRequest>,
) -> Result<Json<Envelope<DayStats>>, ApiError> {
    let time = state.time;
    let today = time.local(now_ms())?.date_naive();
    let date = match lenient::filter(req.date) {
        None => today,
        Some(d) => NaiveDate::parse_from_str(&d, "%Y-%m-%d")
            .map_err(|_| ApiError::bad(format!("date 格式应为 yyyy-MM-dd，收到 \"{d}\"")))?,
    };
    let call_type = match lenient::filter(req.call_type) {
        None => CallType::AiOutbound,
        Some(t) => {
            t.parse().map_err(|_| ApiError::bad(format!("callType 应为 01、02 或 03，收到 \"{t}\"")))?
        }
    };
    let midnight = |d: NaiveDate| time.parse(&format!("{d} 00:00:00"));
    let (Some(from), Some(until)) = (midnight(date), date.checked_add_days(Days::new(1)).and_then(midnight))
    else {
        return Err(ApiError::bad("date 超出范围"));
    };
    let stats = state.store.hourly_stats(call_type, from, until).await?;
    let gauges = state.store.gauges().await?;

    let mut hours: BTreeMap<i64, HourRow> = BTreeMap::new();
    let (mut ended, mut answered, mut talk) = (0, 0, 0);
    for s in stats {
        let hour = time.local(s.hour_ms)?.format("%H:%M").to_string();
        let row = hours.entry(s.hour_ms).or_insert_with(|| HourRow {
            hour,
            calls: 0,
            outcomes: OUTCOME_CLASSES.iter().map(|c| (*c, 0)).collect(),
        });
        row.calls += s.calls;
        if let Some(n) =
            OUTCOME_CLASSES.iter().find(|c| **c == s.outcome).and_then(|c| row.outcomes.get_mut(c))
        {
            *n += s.calls;
        }
        ended += s.calls;
        if s.outcome == "answered" {
            answered += s.calls;
            talk += s.talk_secs;
        }
    }
    let in_progress =
        if date == today && call_type == CallType::AiOutbound { gauges.calls_in_progress } else { 0 };
    let campaigns =
        if call_type == CallType::AiOutbound { by_campaign(&state, from, until).await? } else { Vec::new() };
    let ratio = |a: i64, b: i64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    Ok(Envelope::ok(DayStats {
        date: date.to_string(),
        call_type: call_type.code(),
        calls_started: ended + in_progress,
        answered,
        answer_rate: ratio(answered, ended),
        avg_talk_secs: ratio(talk, answered),
        calls_in_progress: gauges.calls_in_progress,
        tasks_waiting: gauges.tasks_waiting,
        hours: hours.into_values().collect(),
        campaigns,
    }))
}

/// Each campaign's calls in `[from, until)` (from `campaign_hours`) and its tasks now.
async fn by_campaign(state: &AppState, from: i64, until: i64) -> Result<Vec<CampaignDay>, ApiError> {
    let mut days: BTreeMap<String, CampaignDay> = state
        .store
        .campaigns()
        .await?
        .into_iter()
        .map(|c| {
            let day = CampaignDay {
                batch_name: c.name.clone(),
                calls: 0,
                answered: 0,
                tasks_waiting: 0,
                calls_in_progress: 0,
                outcomes: OUTCOME_CLASSES.iter().map(|c| (*c, 0)).collect(),
            };
            (c.name, day)
        })
        .collect();
    for n in state.store.campaign_counts().await? {
        if let Some(day) = days.get_mut(&n.name) {
            match n.status {
                TaskStatus::Pending | TaskStatus::RetryWait => day.tasks_waiting += n.tasks,
                TaskStatus::Calling => day.calls_in_progress += n.tasks,
                _ => {}
            }
        }
    }
    for k in state.store.campaign_calls(from, until).await? {
        if let Some(day) = days.get_mut(&k.name) {
            if let Some(n) = day.outcomes.get_mut(k.outcome.as_str()) {
                *n += k.calls;
            }
            day.calls += k.calls;
            day.answered += if k.outcome == "answered" { k.calls } else { 0 };
        }
    }
    Ok(days.into_values().collect())
}
