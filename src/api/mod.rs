//! HTTP only: parse requests into domain types, call the store, shape the envelope.

mod envelope;
mod lenient;
mod paging;
mod recordings;
mod records;
mod tasks;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use tower_http::trace::TraceLayer;

use crate::config::Settings;
use crate::dialer::DialerSignals;
use crate::domain::ApiTime;
use crate::store::Store;

pub use envelope::{ApiError, Envelope};

/// What every handler gets.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub settings: Arc<Settings>,
    pub time: ApiTime,
    pub dialer: DialerSignals,
}

/// Every route under each of its names (the spec's clients use several prefixes).
pub fn router(state: AppState) -> Router {
    let body_limit = state.settings.api.max_body_bytes;
    let mut app = Router::new();
    for prefix in ["/api/aicall", "/aicall/api"] {
        app = app
            .route(&format!("{prefix}/records/list"), post(records::list))
            .route(&format!("{prefix}/calltype/uuid"), get(records::call_type))
            .route(&format!("{prefix}/calltask/list"), post(tasks::list))
            .route(&format!("{prefix}/createTasks"), post(tasks::create))
            .route(&format!("{prefix}/stopTasks"), post(tasks::stop));
    }
    app.route("/aicall/stopTasks", post(tasks::stop))
        .route("/recordings/files", get(recordings::file))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

async fn not_found() -> Response {
    envelope::status(StatusCode::NOT_FOUND, 404, "接口不存在")
}

async fn method_not_allowed() -> Response {
    envelope::status(
        StatusCode::METHOD_NOT_ALLOWED,
        405,
        "请求方式不支持：查询与创建接口用 POST，录音与 calltype 用 GET",
    )
}
