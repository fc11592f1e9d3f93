//! What stands around every route: refusals when overloaded or too slow, CORS, and the
//! request metrics.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower::BoxError;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};

use super::envelope::{self, ApiError, EnvelopeCode};

/// The answer when the concurrency cap or the request timeout refuses a request.
pub async fn refused(err: BoxError) -> Response {
    if err.is::<tower::timeout::error::Elapsed>() {
        envelope::status(StatusCode::SERVICE_UNAVAILABLE, 500, "请求超时，请稍后重试")
    } else if err.is::<tower::load_shed::error::Overloaded>() {
        envelope::status(StatusCode::SERVICE_UNAVAILABLE, 500, "服务繁忙，请稍后重试")
    } else {
        tracing::error!(error = %err, "request failed in a middleware");
        envelope::status(StatusCode::INTERNAL_SERVER_ERROR, 500, "系统异常，请稍后重试")
    }
}

/// How long a request's body may take to arrive, and how large it may be.
#[derive(Clone, Copy)]
pub struct BodyRead {
    pub timeout: Duration,
    pub max_bytes: usize,
}

/// Receives the whole body before the request takes a place among the concurrent ones,
/// within `api.body_read_timeout_secs` of its head: a client that sends its body a byte
/// now and then holds its connection for that long, never a place.
///
/// Too slow is HTTP 408 with code 408 (like 413, a status the client's own request earned),
/// and the connection is closed: the rest of that body is not waited for.
pub async fn read_body(State(limit): State<BodyRead>, req: Request, next: Next) -> Response {
    use axum::body::HttpBody;
    use http_body_util::{BodyExt, LengthLimitError, Limited};
    // A GET's empty body: nothing to wait for.
    if req.body().is_end_stream() {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    match tokio::time::timeout(limit.timeout, Limited::new(body, limit.max_bytes).collect()).await {
        Ok(Ok(collected)) => next.run(Request::from_parts(parts, Body::from(collected.to_bytes()))).await,
        Ok(Err(e)) if e.is::<LengthLimitError>() => ApiError::TooLarge(limit.max_bytes).into_response(),
        Ok(Err(e)) => ApiError::bad(format!("读取请求体失败：{e}")).into_response(),
        Err(_) => {
            let mut res =
                envelope::status(StatusCode::REQUEST_TIMEOUT, 408, "请求体接收超时，请检查网络后重试");
            res.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            res
        }
    }
}

/// A handler that panicked: the 500 envelope, and the panic in the log as one error line
/// (the server goes on serving; the panic hook has logged where it happened).
pub fn panicked(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = crate::logging::panic_message(panic.as_ref());
    ApiError::Internal(anyhow::anyhow!("the request's handler panicked: {detail}")).into_response()
}

/// CORS for dashboards that call from a browser: the listed origins, or any with `*`;
/// none when the list is empty (then an OPTIONS request is just a wrong method).
pub fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let layer = CorsLayer::new().allow_methods([Method::GET, Method::POST]).allow_headers(Any);
    Some(if origins.iter().any(|o| o == "*") {
        layer.allow_origin(Any)
    } else {
        let list: Vec<HeaderValue> = origins.iter().filter_map(|o| o.parse().ok()).collect();
        layer.allow_origin(AllowOrigin::list(list))
    })
}

/// Counts every request by route (the pattern, not the path: bounded labels) and by
/// envelope code, and times it.
pub async fn record_metrics(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_string();
    let method = method_label(req.method());
    let started = Instant::now();
    let res = next.run(req).await;
    let code = match res.extensions().get::<EnvelopeCode>() {
        Some(EnvelopeCode(code)) => code.to_string(),
        None if res.status().is_success() => "0".to_string(),
        None => res.status().as_u16().to_string(),
    };
    crate::metrics::http_request(&route, method, &code, started.elapsed());
    res
}

/// The method as a metric label: the standard ones by name, any other as `other`, so that
/// a client inventing methods cannot create new series without end.
fn method_label(method: &Method) -> &'static str {
    static KNOWN: [Method; 9] = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
        Method::PATCH,
        Method::CONNECT,
        Method::TRACE,
    ];
    KNOWN.iter().find(|m| *m == method).map_or("other", Method::as_str)
}
