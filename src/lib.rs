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

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::AppState;
use crate::config::Settings;
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
        let router = api::router(self.state);
        let served =
            axum::serve(self.listener, router).with_graceful_shutdown(stop.clone().cancelled_owned()).await;
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
