//! The do-not-call list: numbers that are never dialed (their tasks end as 已拦截).

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::envelope::Answer;
use super::envelope::{ApiError, ApiJson, Envelope, PageEnvelope, RequestBody, must_be_object};
use super::{AppState, lenient, paging};
use crate::domain::{Phone, now_ms};
use crate::store::DncEntry;

/// Most numbers one request may name.
const MAX_PHONES: usize = 10_000;

/// Numbers to add to or remove from the list.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DncChange {
    #[serde(default, deserialize_with = "lenient::string_list")]
    #[schema(example = json!(["13912345678"]))]
    pub phones: Vec<String>,
    /// Why (kept with the entry), e.g. 客户投诉.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub reason: Option<String>,
}

impl RequestBody for DncChange {
    fn check_shape(body: &Value) -> Result<(), ApiError> {
        must_be_object(body)
    }
}

impl DncChange {
    fn phones(&self) -> Result<Vec<String>, ApiError> {
        if self.phones.is_empty() {
            return Err(ApiError::bad("phones 不能为空"));
        }
        if self.phones.len() > MAX_PHONES {
            return Err(ApiError::bad(format!("一次最多 {MAX_PHONES} 个号码")));
        }
        self.phones
            .iter()
            .enumerate()
            .map(|(i, p)| {
                Phone::parse(p)
                    .map(|p| p.as_str().to_string())
                    .map_err(|why| ApiError::bad(format!("phones 第 {} 项格式不正确：{why}", i + 1)))
            })
            .collect()
    }
}

#[derive(Serialize, ToSchema)]
pub struct Changed {
    count: u64,
}

#[utoipa::path(post, path = "/api/aicall/dnc/add", tag = "do-not-call", operation_id = "dncAdd",
    request_body = DncChange, security(("bearer" = []), ("apiKey" = []), ("basic" = [])),
    responses((status = 200, description = "How many numbers were new on the list; or code 405 for bad parameters",
        body = Answer<Envelope<Changed>>)))]
pub async fn add(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<DncChange>,
) -> Result<Json<Envelope<Changed>>, ApiError> {
    let phones = req.phones()?;
    let reason = match lenient::filter(req.reason) {
        None => String::new(),
        some => lenient::required_text(some, 200).map_err(|why| ApiError::bad(format!("reason {why}")))?,
    };
    let count = state.store.dnc_add(&phones, &reason, now_ms()).await?;
    Ok(Envelope::ok_with(format!("已加入 {count} 个号码"), Changed { count }))
}

#[utoipa::path(post, path = "/api/aicall/dnc/remove", tag = "do-not-call", operation_id = "dncRemove",
    request_body = DncChange, security(("bearer" = []), ("apiKey" = []), ("basic" = [])),
    responses((status = 200, description = "How many numbers were taken off the list; or code 405 for bad parameters",
        body = Answer<Envelope<Changed>>)))]
pub async fn remove(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<DncChange>,
) -> Result<Json<Envelope<Changed>>, ApiError> {
    let phones = req.phones()?;
    let count = state.store.dnc_remove(&phones).await?;
    Ok(Envelope::ok_with(format!("已移除 {count} 个号码"), Changed { count }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DncListRequest {
    #[serde(default, deserialize_with = "lenient::opt_int")]
    #[schema(value_type = Option<i64>, minimum = 1)]
    pub page_num: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_int")]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    pub page_size: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub phone: Option<String>,
}

impl RequestBody for DncListRequest {
    fn check_shape(body: &Value) -> Result<(), ApiError> {
        must_be_object(body)
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DncRow {
    phone: String,
    reason: String,
    /// When it was added, epoch milliseconds.
    createtime: i64,
}

impl From<DncEntry> for DncRow {
    fn from(e: DncEntry) -> DncRow {
        DncRow { phone: e.phone, reason: e.reason, createtime: e.created_ms }
    }
}

#[utoipa::path(post, path = "/api/aicall/dnc/list", tag = "do-not-call", operation_id = "dncList",
    request_body = DncListRequest, security(("bearer" = []), ("apiKey" = []), ("basic" = [])),
    responses((status = 200, description = "The list, newest first; or code 405 for bad parameters",
        body = Answer<PageEnvelope<DncRow>>)))]
pub async fn list(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<DncListRequest>,
) -> Result<Json<PageEnvelope<DncRow>>, ApiError> {
    let page = paging::page(req.page_num, req.page_size, Some((1, 10)))?;
    let phone = lenient::filter(req.phone);
    if phone.as_deref().is_some_and(|p| p.chars().any(char::is_control)) {
        return Err(ApiError::bad("phone 不能包含控制字符"));
    }
    let found = state.store.dnc_list(phone.as_deref(), page).await?;
    Ok(PageEnvelope::ok(found.total, found.rows.into_iter().map(DncRow::from).collect()))
}
