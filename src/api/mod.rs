//! HTTP only: parse requests into domain types, call the store, shape the envelope.

mod auth;
mod campaigns;
mod console;
mod dnc;
mod envelope;
mod health;
mod imports;
mod lenient;
mod limits;
mod manual;
mod openapi;
mod paging;
mod recordings;
mod records;
mod settings;
mod stats;
mod tasks;

use std::sync::Arc;

use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::DefaultBodyLimit;
use axum::handler::Handler;
use axum::http::Method;
use axum::http::StatusCode;
use axum::middleware;
use axum::response::Response;
use axum::routing::{MethodFilter, MethodRouter, on};
use tower::ServiceBuilder;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::dialer::DialerSignals;
use crate::domain::ApiTime;
use crate::store::Store;

pub use envelope::{ApiError, Envelope};
pub use openapi::document as openapi_document;
pub use settings::{ApiConfig, ApiSettings, AuthSettings};

/// What every handler gets.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub config: Arc<ApiConfig>,
    pub time: ApiTime,
    pub dialer: DialerSignals,
    /// The dialer's carrier, when the dialer runs: its trunks' state for /readyz.
    pub carrier: Option<Arc<dyn crate::telephony::Carrier>>,
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

/// The routing table: each route once, under its own name, with its method. `router()`
/// serves it and `routes()` lists it, so a test can hold the OpenAPI document to what is
/// really served.
fn endpoints() -> [Endpoint; 25] {
    [
        endpoint("/api/aicall/stats", Method::POST, stats::day),
        endpoint("/api/aicall/records/list", Method::POST, records::list),
        endpoint("/api/aicall/records/import", Method::POST, imports::import),
        endpoint("/api/cdr/freeswitch", Method::POST, imports::freeswitch_cdr),
        endpoint("/api/aicall/dnc/add", Method::POST, dnc::add),
        endpoint("/api/aicall/dnc/remove", Method::POST, dnc::remove),
        endpoint("/api/aicall/dnc/list", Method::POST, dnc::list),
        endpoint("/api/aicall/calltype/uuid", Method::GET, records::call_type),
        endpoint("/api/aicall/calltask/list", Method::POST, tasks::list),
        endpoint("/api/aicall/createTasks", Method::POST, tasks::create),
        endpoint("/api/aicall/stopTasks", Method::POST, tasks::stop),
        endpoint("/api/aicall/campaign/save", Method::POST, campaigns::save),
        endpoint("/api/aicall/campaign/list", Method::POST, campaigns::list),
        endpoint("/api/aicall/campaign/pause", Method::POST, campaigns::pause),
        endpoint("/api/aicall/campaign/resume", Method::POST, campaigns::resume),
        endpoint("/api/aicall/campaign/stop", Method::POST, campaigns::stop),
        endpoint("/api/aicall/call/manual", Method::POST, manual::call),
        endpoint("/recordings/files", Method::GET, recordings::file),
        endpoint("/api/openapi.json", Method::GET, openapi::serve),
        endpoint("/", Method::GET, console::index),
        endpoint("/console/app.js", Method::GET, console::script),
        endpoint("/console/app.css", Method::GET, console::style),
        endpoint("/healthz", Method::GET, health::healthz),
        endpoint("/readyz", Method::GET, health::readyz),
        endpoint("/metrics", Method::GET, health::metrics),
    ]
}

/// (path, method, handler).
type Endpoint = (&'static str, Method, MethodRouter<AppState>);

/// One row of the table; the handler is routed for exactly the method the row names (a
/// GET also answers HEAD, as axum's `get` does).
fn endpoint<H, T>(path: &'static str, method: Method, handler: H) -> Endpoint
where
    H: Handler<T, AppState>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone()).expect("a method the router can route");
    (path, method, on(filter, handler))
}

/// A route's names: its aliases, then its own.
fn names(path: &'static str) -> impl Iterator<Item = &'static str> {
    ALIASES
        .iter()
        .filter(move |(_, canonical)| *canonical == path)
        .map(|(alias, _)| *alias)
        .chain(std::iter::once(path))
}

/// Every (path, method) the router serves, aliases included.
pub fn routes() -> Vec<(&'static str, Method)> {
    endpoints()
        .into_iter()
        .flat_map(|(path, method, _)| names(path).map(move |name| (name, method.clone())))
        .collect()
}

/// Every route under each of its names (the spec's clients use several prefixes),
/// behind the limits: body size, request timeout, concurrent requests, CORS.
pub fn router(state: AppState) -> Router {
    let mut app = Router::new();
    for (path, _, handler) in endpoints() {
        for name in names(path) {
            app = app.route(name, handler.clone());
        }
    }
    around(app, state)
}

/// What stands around every route, innermost first: the body limit, the limits on
/// time and concurrency, API keys, CORS, panics caught, the access log and the metrics.
fn around(app: Router<AppState>, state: AppState) -> Router {
    let api = &state.config.api;
    let limits = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(limits::refused))
        .load_shed()
        // One cap for the whole server: `Router::layer` wraps each route in its own copy of
        // a layer, and a plain concurrency limit would then cap each route separately.
        .layer(GlobalConcurrencyLimitLayer::new(api.max_concurrent_requests))
        .timeout(Duration::from_secs(api.request_timeout_secs));
    let body_read = limits::BodyRead {
        timeout: Duration::from_secs(api.body_read_timeout_secs),
        max_bytes: api.max_body_bytes,
    };
    app.fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(api.max_body_bytes))
        .layer(limits)
        // Outside the concurrency cap: a body that arrives slowly holds a connection (up to
        // `server.max_connections`) until `body_read_timeout_secs`, never a place among the
        // requests being served, so slow uploads cannot make the server refuse the rest.
        .layer(middleware::from_fn_with_state(body_read, limits::read_body))
        .layer(middleware::from_fn_with_state(state.clone(), auth::require_key))
        .layer(ServiceBuilder::new().option_layer(limits::cors(&state.config.cors_origins)))
        .layer(CatchPanicLayer::custom(limits::panicked))
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

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn a_handler_that_panics_answers_the_500_envelope_and_the_next_request_is_served() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let state = AppState {
            store: crate::store::connect(&url, Default::default()).await.unwrap(),
            time: ApiTime(chrono_tz::UTC),
            config: Arc::new(ApiConfig::default()),
            dialer: DialerSignals::default(),
            carrier: None,
        };
        async fn boom() -> &'static str {
            panic!("a row no calendar can show")
        }
        let app = Router::new().route("/boom", get(boom));
        let app = around(app, state);
        for _ in 0..2 {
            let res = app.clone().oneshot(Request::get("/boom").body(Body::empty()).unwrap()).await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            let body = axum::body::to_bytes(res.into_body(), 1 << 16).await.unwrap();
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(
                (v["code"].as_i64(), v["msg"].as_str()),
                (Some(500), Some("系统异常，请稍后重试")),
                "{v}"
            );
        }
    }
}
