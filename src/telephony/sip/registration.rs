//! Registration (RFC 3261 §10) for trunks that want one (`register = true`): REGISTER with
//! digest auth when the user agent starts, refreshed before the lifetime the registrar
//! granted runs out, the registrar's 423 (Min-Expires) followed, re-registered with backoff
//! after a failure, and un-registered (Expires: 0) at shutdown.
//!
//! rsipstack's `Registration` builds the REGISTER, answers the 401/407 challenge and reads
//! the granted lifetime; ours is the loop around it and the trunk's state.

use std::sync::Arc;
use std::time::Duration;

use rsipstack::dialog::registration::{Registration, backoff_interval, refresh_interval};
use rsipstack::rsip::{Response, Uri};
use rsipstack::transaction::endpoint::EndpointInnerRef;
use tokio_util::sync::CancellationToken;

use super::timer::header_value;
use super::trunks::{RegistrationState, Trunk};

/// How long the un-REGISTER at shutdown may take.
const UNREGISTER_WAIT: Duration = Duration::from_secs(3);

/// One trunk's registration, kept by a task of its own.
pub struct Registrar {
    trunk: Arc<Trunk>,
    registration: tokio::sync::Mutex<Registration>,
    /// The registrar's URI: `sip:<domain>`.
    server: Uri,
    stop: CancellationToken,
}

impl Registrar {
    /// Registers `trunk` now and keeps it registered until `unregister`.
    pub fn start(endpoint: EndpointInnerRef, trunk: Arc<Trunk>) -> Result<Arc<Registrar>, String> {
        let transport = trunk.settings.transport.uri_param();
        let server = format!("sip:{}{transport}", trunk.domain());
        let server =
            Uri::try_from(server.as_str()).map_err(|e| format!("bad registrar URI `{server}`: {e}"))?;
        let mut registration = Registration::new(endpoint, trunk.credential.clone());
        // The REGISTER goes to the trunk's address (or its outbound proxy, named in a Route)
        // whatever its domain resolves to.
        registration.outbound_proxy = trunk.target.get().and_then(|t| t.get_socketaddr().ok());
        registration.extra_headers.extend(trunk.route_header());
        let registrar = Arc::new(Registrar {
            trunk,
            registration: tokio::sync::Mutex::new(registration),
            server,
            stop: CancellationToken::new(),
        });
        tokio::spawn(registrar.clone().keep());
        Ok(registrar)
    }

    /// REGISTER, then refresh at 3/4 of the granted lifetime; after a failure, again after
    /// 1, 2, 4 … 60 s. A 423 is retried at once with the registrar's Min-Expires.
    async fn keep(self: Arc<Self>) {
        let name = self.trunk.name.clone();
        let mut expires = self.trunk.settings.register_expires_secs;
        let mut failures = 0u32;
        loop {
            let answer = tokio::select! {
                answer = self.register(expires) => answer,
                _ = self.stop.cancelled() => return,
            };
            let wait = match answer {
                Ok(response) if response.status_code.code() / 100 == 2 => {
                    failures = 0;
                    let granted = self.registration.lock().await.expires();
                    tracing::info!(trunk = %name, granted, "sip: registered");
                    self.trunk.set_registration(RegistrationState::Registered);
                    refresh_interval(granted.max(1))
                }
                Ok(response) if response.status_code.code() == 423 => match min_expires(&response) {
                    Some(min) if min > expires => {
                        tracing::info!(trunk = %name, min, "sip: the registrar wants a longer registration (423)");
                        expires = min;
                        continue;
                    }
                    _ => {
                        failures += 1;
                        self.failed(format!(
                            "423 Interval Too Brief without a usable Min-Expires (asked {expires} s)"
                        ));
                        backoff_interval(failures - 1)
                    }
                },
                Ok(response) => {
                    failures += 1;
                    let code = response.status_code.code();
                    let why = match code {
                        401 | 407 => format!(
                            "{code} {}: the registrar refused the credentials (check the trunk's username \
                             and password)",
                            response.status_code
                        ),
                        _ => format!("{code} {}", response.status_code),
                    };
                    self.failed(why);
                    backoff_interval(failures - 1)
                }
                Err(e) => {
                    failures += 1;
                    self.failed(format!("no answer: {e}"));
                    backoff_interval(failures - 1)
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.stop.cancelled() => return,
            }
        }
    }

    async fn register(&self, expires: u32) -> Result<Response, rsipstack::Error> {
        self.registration.lock().await.register(self.server.clone(), Some(expires)).await
    }

    fn failed(&self, why: String) {
        tracing::error!(trunk = %self.trunk.name, error = %why, "sip: registration failed; calls through this trunk fail until it registers");
        self.trunk.set_registration(RegistrationState::Failed(why));
    }

    /// Stops refreshing and removes the binding (Expires: 0), waiting a little for it.
    pub async fn unregister(&self) {
        self.stop.cancel();
        if self.trunk.registration() != RegistrationState::Registered {
            return;
        }
        match tokio::time::timeout(UNREGISTER_WAIT, self.register(0)).await {
            Ok(Ok(response)) => {
                tracing::info!(trunk = %self.trunk.name, code = response.status_code.code(), "sip: unregistered")
            }
            Ok(Err(e)) => tracing::warn!(trunk = %self.trunk.name, error = %e, "sip: un-REGISTER failed"),
            Err(_) => tracing::warn!(trunk = %self.trunk.name, "sip: un-REGISTER unanswered"),
        }
        self.trunk.set_registration(RegistrationState::Unregistered);
    }
}

fn min_expires(response: &Response) -> Option<u32> {
    header_value(response, "Min-Expires")?.trim().parse().ok()
}
