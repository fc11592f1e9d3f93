//! An AI outbound-call callcenter: takes call tasks over REST, dials them with a voice
//! agent, records every call with its dialogue, and answers list queries.

pub mod agent;
pub mod api;
pub mod config;
pub mod dialer;
pub mod domain;
pub mod logging;
pub mod metrics;
pub mod recording;
pub mod store;
pub mod telephony;
pub mod webhook;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::api::AppState;
use crate::config::{ServerSettings, Settings};
use crate::dialer::{Dialer, DialerSignals};
use crate::domain::ApiTime;
use crate::store::StoreOptions;

/// A built server: store open and migrated, listener bound, not yet serving.
pub struct App {
    listener: TcpListener,
    state: AppState,
    dialer: Option<Dialer>,
    webhooks: Option<(webhook::Deliverer, Arc<tokio::sync::Notify>)>,
}

impl App {
    pub async fn build(settings: Settings, listener: TcpListener) -> anyhow::Result<App> {
        metrics::handle();
        let events_written = Arc::new(tokio::sync::Notify::new());
        let options = StoreOptions {
            emit_events: !settings.webhook.url.is_empty(),
            events_written: events_written.clone(),
        };
        let store = store::connect(&settings.database.url, options).await.with_context(|| {
            format!("opening database {}", store::redact_password(&settings.database.url))
        })?;
        let signals = DialerSignals::default();
        store.watch_changes(signals.wake.clone(), signals.stop_check.clone());
        let state = AppState {
            store,
            time: ApiTime(settings.timezone.0),
            settings: Arc::new(settings),
            dialer: signals,
        };
        let dialer = state.settings.dialer.enabled.then(|| {
            Dialer::new(
                state.store.clone(),
                telephony::carrier(&state.settings),
                agent::agent(&state.settings),
                state.settings.clone(),
            )
        });
        let webhooks = match state.settings.webhook.url.is_empty() {
            true => None,
            false => {
                Some((webhook::Deliverer::new(state.store.clone(), state.settings.clone())?, events_written))
            }
        };
        Ok(App { listener, state, dialer, webhooks })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Serves and dials until `shutdown` resolves, then drains requests in flight and
    /// lets the dialer end its calls (see `Dialer::run`).
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let stop = CancellationToken::new();
        tokio::spawn({
            let stop = stop.clone();
            async move {
                shutdown.await;
                stop.cancel();
            }
        });
        let dialer = self.dialer.map(|d| tokio::spawn(d.run(self.state.dialer.clone(), stop.clone())));
        let webhooks = self.webhooks.map(|(w, written)| tokio::spawn(w.run(written, stop.clone())));
        let connections = ConnectionLimits::from(&self.state.settings.server);
        let router = api::router(self.state);
        let served = serve(self.listener, router, connections, stop.clone()).await;
        // The server may also stop on its own (an accept error): the dialer stops with it.
        stop.cancel();
        if let Some(dialer) = dialer {
            dialer.await??;
        }
        if let Some(webhooks) = webhooks {
            webhooks.await?;
        }
        Ok(served?)
    }
}

/// What bounds the connections themselves, before any request is read.
struct ConnectionLimits {
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
async fn serve(
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
