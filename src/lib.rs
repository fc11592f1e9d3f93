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
pub mod server;
pub mod store;
pub mod telephony;
pub mod views;
pub mod webhook;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::agent::{Agent, AgentKind};
use crate::api::{ApiConfig, AppState};
use crate::config::Settings;
use crate::dialer::{Dialer, DialerSignals, Inbound, InboundNumber};
use crate::domain::ApiTime;
use crate::server::ConnectionLimits;
use crate::store::StoreOptions;
use crate::telephony::asr::AsrEngine;
use crate::telephony::hearing::Ear;
use crate::telephony::tts;
use crate::telephony::{Carrier, CarrierKind};

/// A built server: store open and migrated, listener bound, not yet serving.
pub struct App {
    listener: TcpListener,
    state: AppState,
    connections: ConnectionLimits,
    dialer: Option<Dialer>,
    carrier: Option<Arc<dyn Carrier>>,
    webhooks: Option<(webhook::Deliverer, Arc<tokio::sync::Notify>)>,
}

impl App {
    /// The composition root: each part is built from its own section of the settings.
    pub async fn build(settings: Settings, listener: TcpListener) -> anyhow::Result<App> {
        metrics::handle();
        let time = ApiTime(settings.timezone.0);
        let events_written = Arc::new(tokio::sync::Notify::new());
        let options = StoreOptions {
            emit_events: !settings.webhook.url.is_empty(),
            events_written: events_written.clone(),
            ..StoreOptions::in_zone(settings.timezone.0)
        };
        let store = store::connect(&settings.database.url, options).await.with_context(|| {
            format!("opening database {}", store::redact_password(&settings.database.url))
        })?;
        let signals = DialerSignals::default();
        store.watch_changes(signals.wake.clone(), signals.stop_check.clone());
        let carrier = match settings.dialer.enabled {
            true => Some(carrier(&settings)?),
            false => None,
        };
        let dialer = match &carrier {
            Some(carrier) => {
                let dialer = Dialer::new(
                    store.clone(),
                    carrier.clone(),
                    agent(&settings.agent),
                    settings.dialer.clone(),
                    settings.inbound.reserved_calls,
                    time,
                    settings.recordings.dir.clone(),
                )
                .with_transfer(settings.transfer.clone());
                Some(match inbound(&settings, carrier.as_ref()) {
                    Some(inbound) => dialer.with_inbound(inbound),
                    None => dialer,
                })
            }
            None => None,
        };
        if let Some(dialer) = &dialer {
            let _ = signals.manual.set(dialer.manual_calls());
        }
        let webhooks = match settings.webhook.url.is_empty() {
            true => None,
            false => {
                let deliverer = webhook::Deliverer::new(
                    store.clone(),
                    settings.webhook.clone(),
                    time,
                    settings.server.public_url.clone(),
                )?;
                Some((deliverer, events_written))
            }
        };
        let connections = ConnectionLimits::from(&settings.server);
        let state = AppState {
            store,
            time,
            config: Arc::new(api_config(settings)),
            dialer: signals,
            carrier: carrier.clone(),
        };
        Ok(App { listener, state, connections, dialer, carrier, webhooks })
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
        let served = server::serve(self.listener, router, self.connections, stop.clone()).await;
        // The server may also stop on its own (an accept error): the dialer stops with it.
        stop.cancel();
        if let Some(dialer) = dialer {
            dialer.await??;
        }
        // The calls are over: the carrier leaves the network (un-REGISTER).
        if let Some(carrier) = &self.carrier {
            carrier.shutdown().await;
        }
        if let Some(webhooks) = webhooks {
            webhooks.await?;
        }
        Ok(served?)
    }
}

/// The carrier that `dialer.carrier` names, built from its own section.
fn carrier(settings: &Settings) -> anyhow::Result<Arc<dyn Carrier>> {
    use telephony::{freeswitch::FreeswitchCarrier, sim, sim::SimCarrier, sip::SipCarrier};
    let max_call = Duration::from_secs(settings.dialer.max_call_secs);
    if settings.dialer.carrier != CarrierKind::Sim && settings.dialer.calling_hours.is_always() {
        tracing::warn!(
            "dialer.calling_hours is \"00:00-24:00\" with a real carrier: people will be called at any \
             hour, at night too; set a window such as \"08:00-21:00\""
        );
    }
    match (settings.dialer.carrier, settings.asr.engine) {
        (CarrierKind::Sip, AsrEngine::None) => tracing::warn!(
            "asr.engine is \"none\" with a SIP trunk: the agent hears what callees say only as \
             [语音 N秒]; set [asr] (an OpenAI-compatible transcription server, FunASR, or a command)"
        ),
        (CarrierKind::Freeswitch, engine)
            if engine != AsrEngine::None && settings.freeswitch.audio_listen.is_empty() =>
        {
            tracing::warn!(
                "[asr] hears FreeSWITCH calls only when FreeSWITCH streams their audio to the server: \
                 set freeswitch.audio_listen (and load mod_audio_stream or mod_audio_fork)"
            )
        }
        _ => {}
    }
    Ok(match settings.dialer.carrier {
        CarrierKind::Sim => {
            let to = settings.inbound.numbers.iter().map(|n| n.number.as_str()).find(|n| *n != "*");
            Arc::new(SimCarrier::new(&settings.sim).calling_in_to(to.unwrap_or(sim::DEFAULT_INBOUND_NUMBER)))
        }
        CarrierKind::Sip => {
            let allow = settings.inbound.allow_list().map_err(anyhow::Error::msg)?;
            let sip = SipCarrier::new(&settings.sip, max_call, tts::voice(&settings.tts), ear(settings));
            Arc::new(sip.taking_calls_from(allow))
        }
        CarrierKind::Freeswitch => {
            let fs = &settings.freeswitch;
            tracing::info!(host = %fs.host, port = fs.port, gateway = %fs.gateway, "carrier: FreeSWITCH");
            let carrier = FreeswitchCarrier::new(fs, &settings.recordings.dir, max_call, ear(settings))
                .with_context(|| format!("listening for FreeSWITCH audio on {}", fs.audio_listen))?;
            Arc::new(carrier)
        }
    })
}

/// What the carriers carrying the call's audio hear it with.
fn ear(settings: &Settings) -> Ear {
    Ear::new(&settings.asr, settings.agent.barge_in())
}

/// What the API reads of the settings.
fn api_config(s: Settings) -> ApiConfig {
    ApiConfig {
        api: s.api,
        auth: s.auth,
        public_url: s.server.public_url,
        cors_origins: s.server.cors_origins,
        recordings: s.recordings,
        dialer_enabled: s.dialer.enabled,
    }
}

/// The numbers the agent answers and the carrier's calls to them;
/// `None` when no number is answered. The sim answers its own inbound calls with the
/// default greeting when no number is configured.
fn inbound(settings: &Settings, carrier: &dyn Carrier) -> Option<Inbound> {
    let mut numbers = settings.inbound.numbers.clone();
    if numbers.is_empty() && settings.dialer.carrier == CarrierKind::Sim {
        numbers.push(InboundNumber::any());
    }
    if numbers.is_empty() {
        return None;
    }
    let calls = carrier.incoming()?;
    Some(Inbound::new(numbers, calls))
}

/// The agent that `agent.kind` names.
fn agent(a: &agent::AgentSettings) -> Arc<dyn Agent> {
    match a.kind {
        AgentKind::Script => Arc::new(agent::script::ScriptAgent::new(&a.script)),
        AgentKind::Llm => Arc::new(agent::llm::LlmAgent::new(&a.llm, &a.script)),
    }
}
