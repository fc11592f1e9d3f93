//! calltask/list, createTasks and stopTasks.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::envelope::Answer;
use super::envelope::{ApiError, ApiJson, Envelope, Null, PageEnvelope, RequestBody, must_be_object};
use super::{AppState, lenient, paging};
use crate::domain::{ApiTime, DEFAULT_CAMPAIGN, NewTask, Phone, TaskFilter, TaskStatus, now_ms};
use crate::views::TaskRowJson;

/// calltask/list. Integers may also be sent as numeric strings; blank strings mean no filter.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskListRequest {
    #[serde(default, deserialize_with = "lenient::opt_int")]
    #[schema(required, value_type = i64, minimum = 1)]
    pub page_num: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_int")]
    #[schema(required, value_type = i64, minimum = 1, maximum = 1000)]
    pub page_size: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_int")]
    pub batch_id: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub create_time_start: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub create_time_end: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub ticket_no: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub phone: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub status: Option<String>,
    /// Only the tasks of this campaign.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    #[schema(example = "九月份营销活动")]
    pub batch_name: Option<String>,
}

impl RequestBody for TaskListRequest {
    fn check_shape(body: &Value) -> Result<(), ApiError> {
        must_be_object(body)
    }
}

impl TaskListRequest {
    pub fn into_filter(self, time: &ApiTime) -> Result<TaskFilter, ApiError> {
        let page = paging::page(self.page_num, self.page_size, None)?;
        let (created_from_ms, created_until_ms) = paging::time_range(
            time,
            ("createTimeStart", self.create_time_start),
            ("createTimeEnd", self.create_time_end),
        )?;
        let status = match lenient::filter(self.status) {
            None => None,
            Some(s) => Some(TaskStatus::from_label(&s).ok_or_else(|| {
                let labels: Vec<_> = TaskStatus::ALL.iter().map(|t| t.label()).collect();
                ApiError::bad(format!("status 应为 {} 之一，收到 \"{s}\"", labels.join("、")))
            })?),
        };
        Ok(TaskFilter {
            batch_id: self.batch_id,
            created_from_ms,
            created_until_ms,
            ticket_no: lenient::filter(self.ticket_no),
            phone: lenient::filter(self.phone),
            status,
            batch_name: lenient::filter(self.batch_name),
            page,
        })
    }
}

#[utoipa::path(post, path = "/api/aicall/calltask/list", tag = "tasks", operation_id = "calltaskList",
    request_body = TaskListRequest, security(("bearer" = []), ("apiKey" = []), ("basic" = [])),
    responses((status = 200, description = "Tasks, newest batchId first; or code 405 for bad parameters",
        body = Answer<PageEnvelope<TaskRowJson>>)))]
pub async fn list(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<TaskListRequest>,
) -> Result<Json<PageEnvelope<TaskRowJson>>, ApiError> {
    let filter = req.into_filter(&state.time)?;
    let page = state.store.list_tasks(&filter).await?;
    Ok(PageEnvelope::ok(page.total, page.rows.into_iter().map(TaskRowJson::from).collect()))
}

/// A ticket to call. Every field is a required non-blank string.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TicketIn {
    #[serde(default, deserialize_with = "lenient::opt_string")]
    #[schema(required, value_type = String, example = "T20231001001")]
    pub ticket_no: Option<String>,
    /// An optional + and 5…20 digits.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    #[schema(required, value_type = String, example = "13912345678")]
    pub phone: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    #[schema(required, value_type = String, example = "张三")]
    pub username: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    #[schema(required, value_type = String, example = "活动通知1")]
    pub ticket_type: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    #[schema(required, value_type = String, example = "尊敬的张三先生，提醒您参加我们本周末的线下优惠活动。")]
    pub ticket_content: Option<String>,
    /// The task's campaign; the default campaign (`default`) when absent or blank. An
    /// unknown name creates the campaign with the global settings, unless
    /// `api.auto_create_campaigns` is false.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    #[schema(example = "九月份营销活动", max_length = 100)]
    pub batch_name: Option<String>,
}

impl RequestBody for Vec<TicketIn> {
    fn check_shape(body: &Value) -> Result<(), ApiError> {
        let tickets = body.as_array().ok_or_else(|| ApiError::bad("请求体应为工单的 JSON 数组"))?;
        match tickets.iter().position(|t| !t.is_object()) {
            Some(i) => Err(ApiError::bad(format!("第 {} 条工单（下标 {i}）应为 JSON 对象", i + 1))),
            None => Ok(()),
        }
    }
}

/// Longest accepted value per field, in characters.
const MAX_SHORT_FIELD: usize = 100;
const MAX_CONTENT: usize = 5000;
/// Longest campaign name (batchName), in characters.
pub const MAX_CAMPAIGN_NAME: usize = 100;

/// Checks every ticket; the first problem rejects them all, naming the ticket and field.
pub fn parse_tickets(tickets: Vec<TicketIn>, max: usize) -> Result<Vec<NewTask>, ApiError> {
    if tickets.is_empty() {
        return Err(ApiError::bad("工单列表不能为空"));
    }
    if tickets.len() > max {
        return Err(ApiError::bad(format!("一次最多创建 {max} 个工单，收到 {} 个", tickets.len())));
    }
    let mut seen: HashMap<String, usize> = HashMap::with_capacity(tickets.len());
    let mut out = Vec::with_capacity(tickets.len());
    for (i, t) in tickets.into_iter().enumerate() {
        let at = |field: &str, problem: &str| {
            ApiError::bad(format!("第 {} 条工单（下标 {i}）的 {field} {problem}", i + 1))
        };
        let field = |name: &'static str, v: Option<String>, max_chars: usize| {
            lenient::required_text(v, max_chars).map_err(|why| at(name, &why))
        };
        let ticket_no = field("ticketNo", t.ticket_no, MAX_SHORT_FIELD)?;
        let phone = field("phone", t.phone, MAX_SHORT_FIELD)?;
        let phone = Phone::parse(&phone).map_err(|why| at("phone", &format!("格式不正确：{why}")))?;
        let username = field("username", t.username, MAX_SHORT_FIELD)?;
        let ticket_type = field("ticketType", t.ticket_type, MAX_SHORT_FIELD)?;
        let ticket_content = field("ticketContent", t.ticket_content, MAX_CONTENT)?;
        let batch_name = match lenient::filter(t.batch_name) {
            None => DEFAULT_CAMPAIGN.to_string(),
            name => field("batchName", name, MAX_CAMPAIGN_NAME)?,
        };
        if let Some(first) = seen.insert(ticket_no.clone(), i) {
            return Err(at("ticketNo", &format!("与第 {} 条工单重复：\"{ticket_no}\"", first + 1)));
        }
        out.push(NewTask { ticket_no, phone, username, ticket_type, ticket_content, batch_name });
    }
    Ok(out)
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Created {
    batch_id: i64,
    ticket_no: String,
}

#[utoipa::path(post, path = "/api/aicall/createTasks", tag = "tasks", operation_id = "createTasks",
    request_body = Vec<TicketIn>, security(("bearer" = []), ("apiKey" = []), ("basic" = [])),
    responses((status = 200, description = "batchIds in input order (msg 任务创建成功); or code 405 naming the bad ticket",
        body = Answer<Envelope<Vec<Created>>>)))]
pub async fn create(
    State(state): State<AppState>,
    ApiJson(tickets): ApiJson<Vec<TicketIn>>,
) -> Result<Json<Envelope<Vec<Created>>>, ApiError> {
    let tasks = parse_tickets(tickets, state.config.api.max_tasks_per_request)?;
    if !state.config.api.auto_create_campaigns {
        refuse_unknown_campaigns(&state, &tasks).await?;
    }
    let ids = state.store.create_tasks(&tasks, now_ms()).await?;
    state.dialer.wake.notify_one();
    let data = tasks
        .into_iter()
        .zip(ids)
        .map(|(t, batch_id)| Created { batch_id, ticket_no: t.ticket_no })
        .collect();
    Ok(Envelope::ok_with("任务创建成功", data))
}

/// With `api.auto_create_campaigns = false`: the first ticket naming a campaign that does
/// not exist rejects the request, naming the ticket and the field.
async fn refuse_unknown_campaigns(state: &AppState, tasks: &[NewTask]) -> Result<(), ApiError> {
    let known: std::collections::HashSet<String> =
        state.store.campaigns().await?.into_iter().map(|c| c.name).collect();
    match tasks.iter().position(|t| !known.contains(&t.batch_name)) {
        None => Ok(()),
        Some(i) => Err(ApiError::bad(format!(
            "第 {} 条工单（下标 {i}）的 batchName 不是已有的外呼活动：\"{}\"（请先用 campaign/save 创建）",
            i + 1,
            tasks[i].batch_name
        ))),
    }
}

/// stopTasks: by batchId and/or ticketNo; at least one non-empty list.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StopRequest {
    #[serde(default, deserialize_with = "lenient::int_list")]
    pub batch_ids: Vec<i64>,
    #[serde(default, deserialize_with = "lenient::string_list")]
    pub ticket_nos: Vec<String>,
}

impl RequestBody for StopRequest {
    fn check_shape(body: &Value) -> Result<(), ApiError> {
        must_be_object(body)
    }
}

/// Most ids one stopTasks may name.
const MAX_STOP_IDS: usize = 10_000;

#[utoipa::path(post, path = "/api/aicall/stopTasks", tag = "tasks", operation_id = "stopTasks",
    request_body = StopRequest, security(("bearer" = []), ("apiKey" = []), ("basic" = [])),
    responses((status = 200, description = "msg says how many stopped, data null; or code 405 for bad parameters",
        body = Answer<Envelope<Null>>)))]
pub async fn stop(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<StopRequest>,
) -> Result<Json<Envelope<Null>>, ApiError> {
    if req.batch_ids.is_empty() && req.ticket_nos.is_empty() {
        return Err(ApiError::bad("batchIds 与 ticketNos 至少提供一个非空列表"));
    }
    if req.batch_ids.len() + req.ticket_nos.len() > MAX_STOP_IDS {
        return Err(ApiError::bad(format!("一次最多停止 {MAX_STOP_IDS} 个任务")));
    }
    let outcome = state.store.stop_tasks(&req.batch_ids, &req.ticket_nos, now_ms()).await?;
    if outcome.hanging_up > 0 {
        state.dialer.stop_check.notify_one();
    }
    let msg = match outcome.hanging_up {
        0 => format!("已停止 {} 个任务", outcome.stopped),
        n => format!("已停止 {} 个任务，其中 {n} 个通话正在挂断", outcome.stopped + n),
    };
    Ok(Envelope::ok_with(msg, Null))
}
