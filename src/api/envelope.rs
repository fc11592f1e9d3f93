//! The JSON envelope every answer wears, the one error type that maps onto it, and the
//! JSON extractor that turns any bad body into the envelope's 405 instead of axum's text.

use std::borrow::Cow;

use axum::Json;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, IntoResponseParts, Response, ResponseParts};
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

use super::AppState;

pub const OK_MSG: &str = "操作成功";

#[derive(Serialize, utoipa::ToSchema)]
pub struct Envelope<T: Serialize> {
    // 0 in the OpenAPI document, which gives a refusal its own schema (`ErrorEnvelope`).
    /// 0: success.
    #[schema(minimum = 0, maximum = 0)]
    pub code: i32,
    pub msg: String,
    pub data: T,
}

impl<T: Serialize> Envelope<T> {
    pub fn ok(data: T) -> Json<Envelope<T>> {
        Self::ok_with(OK_MSG, data)
    }

    pub fn ok_with(msg: impl Into<String>, data: T) -> Json<Envelope<T>> {
        Json(Envelope { code: 0, msg: msg.into(), data })
    }
}

/// `data` of an answer that carries none: serializes as `null`.
#[derive(Serialize)]
pub struct Null;

impl utoipa::PartialSchema for Null {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new().schema_type(utoipa::openapi::schema::Type::Null).into()
    }
}

impl utoipa::ToSchema for Null {}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PageEnvelope<T: Serialize> {
    // 0 in the OpenAPI document, which gives a refusal its own schema (`ErrorEnvelope`).
    /// 0: success.
    #[schema(minimum = 0, maximum = 0)]
    pub code: i32,
    pub msg: &'static str,
    pub total: i64,
    pub rows: Vec<T>,
}

impl<T: Serialize> PageEnvelope<T> {
    pub fn ok(total: i64, rows: Vec<T>) -> Json<PageEnvelope<T>> {
        Json(PageEnvelope { code: 0, msg: OK_MSG, total, rows })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Code 405: the request is wrong; the message says how, in words a person reads.
    #[error("{0}")]
    BadRequest(String),
    /// HTTP and code 413.
    #[error("请求体过大，上限为 {0} 字节")]
    TooLarge(usize),
    /// Code 500: the detail goes to the log only.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn bad(msg: impl Into<String>) -> ApiError {
        ApiError::BadRequest(msg.into())
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> ApiError {
        ApiError::Internal(e.into())
    }
}

impl From<crate::domain::OutOfRange> for ApiError {
    fn from(e: crate::domain::OutOfRange) -> ApiError {
        ApiError::Internal(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, msg) = match &self {
            ApiError::BadRequest(msg) => (StatusCode::OK, 405, msg.clone()),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, 413, self.to_string()),
            ApiError::Internal(e) => {
                tracing::error!(error = format!("{e:#}"), "request failed");
                (StatusCode::OK, 500, "系统异常，请稍后重试".to_string())
            }
        };
        (status, EnvelopeCode(code), Json(Envelope { code, msg, data: () })).into_response()
    }
}

/// The envelope code of an answer that is not a success, for the request metrics.
#[derive(Clone, Copy, Debug)]
pub struct EnvelopeCode(pub i32);

impl IntoResponseParts for EnvelopeCode {
    type Error = std::convert::Infallible;
    fn into_response_parts(self, mut res: ResponseParts) -> Result<ResponseParts, Self::Error> {
        res.extensions_mut().insert(self);
        Ok(res)
    }
}

/// A JSON body. Any body is read as JSON whatever its Content-Type (ops teams curl
/// without headers); every failure names the field and what it should be.
pub struct ApiJson<T>(pub T);

/// The JSON shape a request body must have. Checked before the fields, because serde
/// would otherwise also read a struct from an array, by position.
pub trait RequestBody: DeserializeOwned {
    fn check_shape(body: &Value) -> Result<(), ApiError>;
}

/// For bodies that are one JSON object.
pub fn must_be_object(body: &Value) -> Result<(), ApiError> {
    if body.is_object() { Ok(()) } else { Err(ApiError::bad("请求体应为 JSON 对象")) }
}

impl<T: RequestBody> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let RawBody(bytes) = RawBody::from_request(req, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// The body's bytes, for a route that reads them its own way (a CDR may be a form); an
/// over-large or broken body is refused in the envelope like any other.
pub struct RawBody(pub Bytes);

impl FromRequest<AppState> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let limit = state.config.api.max_body_bytes;
        Bytes::from_request(req, state).await.map(RawBody).map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge(limit)
            } else {
                ApiError::bad(format!("读取请求体失败：{e}"))
            }
        })
    }
}

pub fn parse_json<T: RequestBody>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad("请求体不能为空，应为 JSON"));
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::bad(format!("请求体不是合法的 JSON（第 {} 行第 {} 列）", e.line(), e.column()))
    })?;
    T::check_shape(&value)?;
    serde_path_to_error::deserialize(value).map_err(|e| {
        let field = field_name(&e.path().to_string());
        ApiError::bad(format!("{field} {}", describe(&e.into_inner().to_string())))
    })
}

/// `pageNum` → `参数 pageNum`; `[2].phone` (an array body: tickets) → `第 3 条工单（下标 2）的 phone`.
fn field_name(path: &str) -> String {
    let item = path
        .strip_prefix('[')
        .and_then(|p| p.split_once("]."))
        .and_then(|(i, rest)| Some((i.parse::<usize>().ok()?, rest)));
    match item {
        Some((i, rest)) => format!("第 {} 条工单（下标 {i}）的 {rest}", i + 1),
        None => format!("参数 {path}"),
    }
}

/// Our own field deserializers already speak Chinese; serde's structural messages
/// ("invalid type: …, expected …") are rephrased.
fn describe(serde_msg: &str) -> String {
    match serde_msg.split_once(", expected ") {
        Some((_, expected)) if serde_msg.starts_with("invalid type") => format!("类型错误：应为{expected}"),
        _ => serde_msg.to_string(),
    }
}

/// An enveloped answer with its own HTTP status (404, 405), outside the handlers.
pub fn status(status: StatusCode, code: i32, msg: &str) -> Response {
    (status, EnvelopeCode(code), Json(Envelope { code, msg: msg.to_string(), data: () })).into_response()
}

/// Every answer that is not a success: `data` is null and `code` says what went wrong.
/// A schema only: those answers are built by `ApiError` and `envelope::status`.
pub struct ErrorEnvelope;

impl PartialSchema for ErrorEnvelope {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .description(Some(Self::DESCRIPTION))
            .property(
                "code",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .enum_values(Some([401, 404, 405, 408, 413, 500]))
                    .description(Some(
                        "405 bad parameters, 500 system error (also when overloaded or timed out), \
                         401 missing or invalid API key, 413 body too large, 408 body not received \
                         in time, 404 no such recording",
                    )),
            )
            .required("code")
            .property("msg", ObjectBuilder::new().schema_type(Type::String))
            .required("msg")
            .property("data", ObjectBuilder::new().schema_type(Type::Null))
            .required("data")
            .into()
    }
}

impl ErrorEnvelope {
    const DESCRIPTION: &str = "The answer when a request fails: `data` is null, `msg` says why in words a \
        person reads.";
}

impl ToSchema for ErrorEnvelope {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ErrorEnvelope")
    }
}

// A schema only: those handlers return `Result<Json<T>, ApiError>`.
/// The HTTP 200 answer of a request the handler may refuse: the success envelope (code 0),
/// or the error envelope with code 405 (bad parameters) or 500 (a failure).
#[derive(ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum Answer<T> {
    Done(T),
    Refused(ErrorEnvelope),
}
