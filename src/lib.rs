//! An AI outbound-call callcenter: takes call tasks over REST, dials them with a voice
//! agent, records every call with its dialogue, and answers list queries.

//TMP pub mod agent;
pub mod api;
pub mod config;
pub mod dialer;
pub mod domain;
//TMP pub mod recording;
pub mod store;
//TMP pub mod telephony;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::api::AppState;
use crate::config::Settings;
use crate::dialer::DialerSignals;
use crate::domain::ApiTime;

/// A built server: store open and migrated, listener bound, not yet serving.
pub struct App {
    listener: TcpListener,
    state: AppState,
}

impl App {
    pub async fn build(settings: Settings, listener: TcpListener) -> anyhow::Result<App> {
        let store = store::connect(&settings.database.url)
            .await
            .with_context(|| format!("opening database {}", settings.database.url))?;
        let state = AppState {
            store,
            time: ApiTime(settings.timezone.0),
            settings: Arc::new(settings),
            dialer: DialerSignals::default(),
        };
        Ok(App { listener, state })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Serves until `shutdown` resolves, then drains requests in flight.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let router = api::router(self.state.clone());
        axum::serve(self.listener, router).with_graceful_shutdown(shutdown).await?;
        Ok(())
    }
}
