//! Health for load balancers and orchestrators, and metrics for Prometheus.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::envelope::Envelope;

/// Alive: the process answers HTTP.
#[utoipa::path(get, path = "/healthz", tag = "operations", operation_id = "healthz",
    responses((status = 200, description = "data \"alive\" (no key needed)", body = Envelope<String>)))]
pub async fn healthz() -> Json<Envelope<&'static str>> {
    Envelope::ok("alive")
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    /// `ok` or `unreachable`.
    #[schema(example = "ok")]
    database: String,
    /// `running`, `disabled`, or `stopped` (not ready).
    #[schema(value_type = String, example = "running")]
    dialer: &'static str,
    /// `ok`, or `failing` after `recordings.failing_after` answered calls in a row without
    /// a recording (not ready only with `recordings.unready_when_failing`).
    #[schema(value_type = String, example = "ok")]
    recordings: &'static str,
    /// With the SIP carrier, each trunk by name: `ok`, `registering`, `not registered: …`
    /// (the registrar's answer), or `out of rotation`. Reported, not a condition of ready.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    trunks: BTreeMap<String, String>,
}

/// readyz's answer, ready or not.
#[derive(Serialize, ToSchema)]
pub struct ReadyAnswer {
    /// 0 ready, 500 not ready.
    #[schema(minimum = 0, maximum = 500)]
    code: i32,
    /// `ready` or `not ready`.
    #[schema(value_type = String)]
    msg: &'static str,
    data: Readiness,
}

/// Ready: the database answers (its migrations were applied at start, or the start
/// failed), the dialer is running, if it is enabled, and — when
/// `recordings.unready_when_failing` — recordings are being written. 503 otherwise.
#[utoipa::path(get, path = "/readyz", tag = "operations", operation_id = "readyz",
    responses(
        (status = 200, description = "Ready: code 0 (no key needed)", body = ReadyAnswer),
        (status = 503, description = "Not ready: code 500, and data says what is not", body = ReadyAnswer),
    ))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let database = match state.store.next_due_ms(&[]).await {
        Ok(_) => "ok".to_string(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: database unreachable");
            "unreachable".to_string()
        }
    };
    let dialer = match (state.config.dialer_enabled, state.dialer.running.load(Ordering::Relaxed)) {
        (false, _) => "disabled",
        (true, true) => "running",
        (true, false) => "stopped",
    };
    let r = &state.config.recordings;
    let recordings_failing = state.dialer.recordings.failures_in_a_row() >= r.failing_after;
    let recordings = if recordings_failing { "failing" } else { "ok" };
    let ready = database == "ok" && dialer != "stopped" && !(recordings_failing && r.unready_when_failing);
    let (status, code, msg) = if ready {
        (StatusCode::OK, 0, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, 500, "not ready")
    };
    let trunks = state.carrier.as_ref().map(|c| c.trunk_status().into_iter().collect()).unwrap_or_default();
    (status, Json(ReadyAnswer { code, msg, data: Readiness { database, dialer, recordings, trunks } }))
        .into_response()
}

/// The Prometheus text format. Database gauges are read at scrape time, so they are exact.
#[utoipa::path(get, path = "/metrics", tag = "operations", operation_id = "metrics",
    responses((status = 200, description = "Prometheus' text exposition format (no key needed)",
        content_type = "text/plain", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    match state.store.gauges().await {
        Ok(g) => {
            crate::metrics::tasks_waiting(g.tasks_waiting);
            crate::metrics::webhook_backlog(g.webhook_backlog);
            crate::metrics::db_pool(g.pool_open, g.pool_idle);
        }
        Err(e) => tracing::warn!(error = %e, "metrics: database gauges unavailable"),
    }
    let body = crate::metrics::handle().render();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response()
}
