//! HTTP only: parse requests into domain types, call the store, shape the envelope.

mod auth;
mod console;
mod dnc;
mod envelope;
mod health;
mod imports;
mod lenient;
mod limits;
mod openapi;
mod paging;
mod recordings;
mod records;
mod stats;
mod tasks;

use std::sync::Arc;

use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware;
use axum::response::Response;
use axum::routing::{MethodRouter, get, post};
use tower::ServiceBuilder;
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::config::Settings;
use crate::dialer::DialerSignals;
use crate::domain::ApiTime;
use crate::store::Store;

pub use envelope::{ApiError, Envelope};
pub use openapi::document as openapi_document;
pub use records::RecordRow;
pub use tasks::TaskRowJson;

/// What every handler gets.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub settings: Arc<Settings>,
    pub time: ApiTime,
    pub dialer: DialerSignals,
}

/// The other names of the routes, as the spec's clients use them: (alias, route).
pub const ALIASES: &[(&str, &str)] = &[
    ("/aicall/api/records/list", "/api/aicall/records/list"),
    ("/aicall/api/calltype/uuid", "/api/aicall/calltype/uuid"),
    ("/aicall/api/calltask/list", "/api/aicall/calltask/list"),
    ("/aicall/api/createTasks", "/api/aicall/createTasks"),
    ("/aicall/api/stopTasks", "/api/aicall/stopTasks"),
    ("/aicall/stopTasks", "/api/aicall/stopTasks"),
];

/// Every route under each of its names (the spec's clients use several prefixes),
/// behind the limits: body size, request timeout, concurrent requests, CORS.
pub fn router(state: AppState) -> Router {
    let api = &state.settings.api;
    let limits = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(limits::refused))
        .load_shed()
        .concurrency_limit(api.max_concurrent_requests)
        .timeout(Duration::from_secs(api.request_timeout_secs));
    let endpoints: [(&str, MethodRouter<AppState>); 11] = [
        ("/api/aicall/stats", post(stats::day)),
        ("/api/aicall/records/list", post(records::list)),
        ("/api/aicall/records/import", post(imports::import)),
        ("/api/cdr/freeswitch", post(imports::freeswitch_cdr)),
        ("/api/aicall/dnc/add", post(dnc::add)),
        ("/api/aicall/dnc/remove", post(dnc::remove)),
        ("/api/aicall/dnc/list", post(dnc::list)),
        ("/api/aicall/calltype/uuid", get(records::call_type)),
        ("/api/aicall/calltask/list", post(tasks::list)),
        ("/api/aicall/createTasks", post(tasks::create)),
        ("/api/aicall/stopTasks", post(tasks::stop)),
    ];
    let mut app = Router::new();
    for (path, handler) in endpoints {
        for (alias, _) in ALIASES.iter().filter(|(_, canonical)| *canonical == path) {
            app = app.route(alias, handler.clone());
        }
        app = app.route(path, handler);
    }
    app.route("/recordings/files", get(recordings::file))
        .route("/api/openapi.json", get(openapi::serve))
        .route("/", get(console::index))
        .route("/console/app.js", get(console::script))
        .route("/console/app.css", get(console::style))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(api.max_body_bytes))
        .layer(limits)
        .layer(middleware::from_fn_with_state(state.clone(), auth::require_key))
        .layer(ServiceBuilder::new().option_layer(limits::cors(&state.settings.server.cors_origins)))
        .layer(
            // One line per request at info: method, path, status, latency (no bodies, so
            // no phone numbers).
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(Level::INFO))
                .on_request(())
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .layer(middleware::from_fn(limits::record_metrics))
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
