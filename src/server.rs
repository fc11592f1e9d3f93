//! The HTTP server's own loop: accepts connections within the `[server]` limits and serves
//! the API's router on each, until told to stop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// The `[server]` section: where to listen, and the limits on connections.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    pub bind: String,
    /// Prefix of `wavFileUrl`; empty gives the relative `/recordings/files?filename=…`.
    pub public_url: String,
    /// Origins allowed to call the API from a browser (CORS); `["*"]` allows any.
    pub cors_origins: Vec<String>,
    /// A connection that has not sent a whole request head this long after it opened (or
    /// after its last answer) is closed.
    pub header_read_timeout_secs: u64,
    /// Connections open at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            bind: "127.0.0.1:8899".into(),
            public_url: String::new(),
            cors_origins: Vec::new(),
            header_read_timeout_secs: 10,
            max_connections: 10_000,
        }
    }
}

/// What bounds the connections themselves, before any request is read.
pub struct ConnectionLimits {
    header_read_timeout: Duration,
    max_connections: usize,
}

impl From<&ServerSettings> for ConnectionLimits {
    fn from(s: &ServerSettings) -> Self {
        let allowed = connections_the_fd_limit_allows();
        if s.max_connections > allowed {
            tracing::warn!(
                configured = s.max_connections,
                used = allowed,
                "server.max_connections is above half the open-file limit: the lower figure is used"
            );
        }
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(s.header_read_timeout_secs),
            max_connections: s.max_connections.min(allowed),
        }
    }
}

/// Half the soft open-file limit: the other half is left for the database, recordings and
/// calls, so that a flood of connections is refused by the cap, not by `accept` failing
/// for everyone.
fn connections_the_fd_limit_allows() -> usize {
    #[cfg(unix)]
    if let Ok((soft, _)) = rlimit::getrlimit(rlimit::Resource::NOFILE) {
        return usize::try_from(soft / 2).unwrap_or(usize::MAX).max(1);
    }
    usize::MAX
}

/// Serves HTTP/1.1 until `stop`, then stops accepting and lets every connection finish the
/// request it is on. Unlike `axum::serve` it bounds the time a request head may take and
/// the number of open connections: a client that opens connections and sends nothing (or
/// a byte now and then) can hold neither descriptors nor places for long.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: ConnectionLimits,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut refused = Refusals::default();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            _ = stop.cancelled() => break,
        };
        // Beyond the cap the connection is closed at once rather than left in the listen
        // queue (which would hold back every client behind it) or answered (a 503 would
        // have to wait for the request, holding the descriptor the cap is there to save).
        let Ok(place) = open.clone().try_acquire_owned() else {
            drop(stream);
            refused.one_more(limits.max_connections);
            continue;
        };
        let conn = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router.clone()));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                // A header read timeout, a reset, a malformed request: the client's business.
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(place);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Connections refused by the cap, logged at most once every ten seconds.
#[derive(Default)]
struct Refusals {
    count: u64,
    logged: Option<Instant>,
}

impl Refusals {
    fn one_more(&mut self, max_connections: usize) {
        self.count += 1;
        if self.logged.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
            tracing::warn!(
                refused = self.count,
                max_connections,
                "connection cap reached: closing new connections"
            );
            self.count = 0;
            self.logged = Some(Instant::now());
        }
    }
}

/// A failed `accept`. One that concerns only that connection is ignored; any other (out of
/// file descriptors) is logged and waited out for a second rather than spun on.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(e.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
        return;
    }
    tracing::error!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
