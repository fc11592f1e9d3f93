//! records/list and calltype/uuid.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::envelope::Answer;
use super::envelope::{ApiError, ApiJson, Envelope, PageEnvelope, RequestBody, must_be_object};
use super::{AppState, lenient, paging};
use crate::domain::{ApiTime, CallType, RecordFilter};
use crate::views::RecordRow;

/// records/list. Integers may also be sent as numeric strings; blank strings mean no filter.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecordListRequest {
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub uuid: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_int")]
    pub page_num: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_int")]
    pub page_size: Option<i64>,
    /// 01 inbound, 02 AI outbound, 03 manual outbound.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    #[schema(required, value_type = String, example = "02")]
    pub call_type: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub telephone: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    #[schema(example = "2025-08-16 00:00:00")]
    pub callout_time_start: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    #[schema(example = "2025-08-16 00:00:00")]
    pub callout_time_end: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_int")]
    pub time_len_start: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_int")]
    pub time_len_end: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub extnum: Option<String>,
    /// Only the AI calls of this campaign.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    #[schema(example = "九月份营销活动")]
    pub batch_name: Option<String>,
}

impl RequestBody for RecordListRequest {
    fn check_shape(body: &Value) -> Result<(), ApiError> {
        must_be_object(body)
    }
}

impl RecordListRequest {
    pub fn into_filter(self, time: &ApiTime) -> Result<RecordFilter, ApiError> {
        let call_type = parse_call_type(self.call_type)?;
        let page = paging::page(self.page_num, self.page_size, Some((1, 10)))?;
        let (callout_from_ms, callout_until_ms) = paging::time_range(
            time,
            ("calloutTimeStart", self.callout_time_start),
            ("calloutTimeEnd", self.callout_time_end),
        )?;
        for (name, v) in [("timeLenStart", self.time_len_start), ("timeLenEnd", self.time_len_end)] {
            if v.is_some_and(|v| v < 0) {
                return Err(ApiError::bad(format!("{name} 不能为负数")));
            }
        }
        if let (Some(a), Some(b)) = (self.time_len_start, self.time_len_end)
            && a > b
        {
            return Err(ApiError::bad("timeLenStart 不能大于 timeLenEnd"));
        }
        Ok(RecordFilter {
            call_type,
            uuid: lenient::filter(self.uuid),
            telephone: lenient::filter(self.telephone),
            extnum: lenient::filter(self.extnum),
            batch_name: lenient::filter(self.batch_name),
            callout_from_ms,
            callout_until_ms,
            time_len_min: self.time_len_start,
            time_len_max: self.time_len_end,
            page,
        })
    }
}

fn parse_call_type(raw: Option<String>) -> Result<CallType, ApiError> {
    let raw = lenient::filter(raw)
        .ok_or_else(|| ApiError::bad("callType 不能为空：01 呼入、02 AI 外呼、03 人工外呼"))?;
    raw.parse()
        .map_err(|_| ApiError::bad(format!("callType 应为 01、02 或 03（不支持混合查询），收到 \"{raw}\"")))
}

#[utoipa::path(post, path = "/api/aicall/records/list", tag = "records", operation_id = "recordsList",
    request_body = RecordListRequest, security(("bearer" = []), ("apiKey" = []), ("basic" = [])),
    responses((status = 200, description = "Ended calls, newest first; or code 405 for bad parameters",
        body = Answer<PageEnvelope<RecordRow>>)))]
pub async fn list(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<RecordListRequest>,
) -> Result<Json<PageEnvelope<RecordRow>>, ApiError> {
    let filter = req.into_filter(&state.time)?;
    let page = state.store.list_records(&filter).await?;
    let public_url = &state.config.public_url;
    let rows = page
        .rows
        .into_iter()
        .map(|r| RecordRow::new(r, &state.time, public_url).map_err(|e| ApiError::Internal(e.into())))
        .collect::<Result<_, _>>()?;
    Ok(PageEnvelope::ok(page.total, rows))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallTypeQuery {
    /// The call's uuid, as records/list shows it.
    #[param(required = true, example = "2508162111590110001")]
    uuid: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallTypeAnswer {
    call_type: &'static str,
}

/// The call type of one call, which the spec's own front end asks before it lists a call.
#[utoipa::path(get, path = "/api/aicall/calltype/uuid", tag = "records", operation_id = "callTypeOfUuid",
    params(CallTypeQuery), security(("bearer" = []), ("apiKey" = []), ("basic" = [])),
    responses((status = 200, description = "The call's type; or code 405 for a missing or unknown uuid",
        body = Answer<Envelope<CallTypeAnswer>>)))]
pub async fn call_type(
    State(state): State<AppState>,
    query: Result<Query<CallTypeQuery>, QueryRejection>,
) -> Result<Json<Envelope<CallTypeAnswer>>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad(format!("查询参数不正确：{e}")))?;
    let uuid = lenient::filter(q.uuid).ok_or_else(|| ApiError::bad("uuid 不能为空"))?;
    match state.store.call_type_of(&uuid).await? {
        Some(t) => Ok(Envelope::ok(CallTypeAnswer { call_type: t.code() })),
        None => Err(ApiError::bad(format!("未找到 uuid 为 {uuid} 的通话"))),
    }
}
