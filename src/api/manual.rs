//! Click-to-call (`03`): `POST /api/aicall/call/manual` rings a person's extension, then
//! the customer, and bridges them; the record is listed under callType `03` once the call
//! has ended.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::envelope::{Answer, ApiError, ApiJson, Envelope, RequestBody, must_be_object};
use super::{AppState, lenient};
use crate::domain::Phone;

/// Longest extension (or SIP URI) taken.
const MAX_EXTNUM: usize = 128;

/// Whom to connect: the person's extension and the customer's number.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManualCall {
    /// The person's extension (dialled through the carrier's routes), or a SIP URI.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    #[schema(example = "8001")]
    pub extnum: Option<String>,
    /// The customer's number: an optional `+` and 5 to 20 digits.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    #[schema(example = "13912345678")]
    pub telephone: Option<String>,
}

impl RequestBody for ManualCall {
    fn check_shape(body: &Value) -> Result<(), ApiError> {
        must_be_object(body)
    }
}

/// The call placed: its uuid, under which its record (`03`) is listed once it has ended.
#[derive(Serialize, ToSchema)]
pub struct Started {
    #[schema(example = "2508162111590110001")]
    uuid: String,
}

#[utoipa::path(post, path = "/api/aicall/call/manual", tag = "calls", operation_id = "callManual",
    request_body = ManualCall, security(("bearer" = []), ("apiKey" = []), ("basic" = [])),
    responses((status = 200, description = "The call's uuid, at once (the record follows when it ends); or code 405 \
        for bad parameters, 500 when this server does not dial (dialer.enabled = false)",
        body = Answer<Envelope<Started>>)))]
pub async fn call(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<ManualCall>,
) -> Result<Json<Envelope<Started>>, ApiError> {
    let extnum = lenient::required_text(req.extnum, MAX_EXTNUM)
        .map_err(|why| ApiError::bad(format!("extnum {why}")))?;
    let extnum = extnum.trim().to_string();
    if extnum.chars().any(char::is_whitespace) {
        return Err(ApiError::bad("extnum 不能包含空白字符：应为分机号或 SIP URI"));
    }
    let telephone =
        req.telephone.filter(|t| !t.trim().is_empty()).ok_or_else(|| ApiError::bad("telephone 不能为空"))?;
    let telephone =
        Phone::parse(&telephone).map_err(|why| ApiError::bad(format!("telephone 格式不正确：{why}")))?;
    let Some(manual) = state.dialer.manual.get() else {
        return Err(ApiError::Internal(anyhow::anyhow!(
            "click-to-call asked of a server whose dialer does not run"
        )));
    };
    let uuid = manual.call(extnum, telephone);
    Ok(Envelope::ok_with("呼叫已发起", Started { uuid }))
}
