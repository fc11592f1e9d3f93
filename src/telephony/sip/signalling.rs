//! SIP signalling on rsipstack: one user agent per carrier (transport, transaction and
//! dialog layers), INVITEs to the trunk, and a well-behaved answer to whatever the trunk
//! sends us (in-dialog BYE, re-INVITE, UPDATE, OPTIONS, INFO; out-of-dialog OPTIONS).
//!
//! rsipstack does the protocol work: transactions with their UDP retransmissions and
//! timers (A/B/D/E/F/K, RFC 3261 §17), provisional answers, digest authentication on
//! 401/407 (RFC 2617/7616), ACK, CANCEL when an unanswered INVITE's future is dropped
//! (RFC 3261 §9.1: deferred until a provisional arrives; a 2xx that races the CANCEL is
//! ACKed and ended with a BYE), and BYE both ways. What is ours is the policy: what to
//! answer, and how the answers map to a `HangupCause`.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex};

use rsipstack::dialog::DialogId;
use rsipstack::dialog::dialog::{DialogState, DialogStateReceiver, TerminatedReason, TransactionHandle};
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::dialog::invitation::InviteOption;
use rsipstack::rsip::{Header, Method, Request, SipMessage, StatusCode, Transport, Uri};
use rsipstack::transaction::endpoint::Endpoint;
use rsipstack::transaction::key::{TransactionKey, TransactionRole};
use rsipstack::transaction::transaction::Transaction;
use rsipstack::transport::udp::UdpConnection;
use rsipstack::transport::{SipAddr, TcpListenerConnection, TransportLayer};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::SipTransport;
use super::g711::Codec;
use super::registration::Registrar;
use super::sdp::{self, LocalSdp, RemoteMedia};
use super::srtp::SdesKey;
use super::timer::{self, SessionTimer};
use super::trunks::Trunk;
use crate::domain::HangupCause;
use crate::telephony::dtmf;

pub const USER_AGENT: &str = concat!("callcenter/", env!("CARGO_PKG_VERSION"));

/// Where the user agent hands out-of-dialog INVITEs, set once the carrier takes calls.
pub type Invites = Arc<std::sync::OnceLock<mpsc::UnboundedSender<Transaction>>>;

/// The user agent: one SIP socket (plus a TCP listener when a trunk uses TCP) and the
/// dialog layer every call of the carrier goes through, whichever trunk it takes.
pub struct Ua {
    pub layer: Arc<DialogLayer>,
    endpoint: Endpoint,
    cancel: CancellationToken,
    /// The address we are reached at: in Via, Contact and the SDP.
    pub advertised_ip: IpAddr,
    /// Where RTP sockets are bound.
    pub media_bind_ip: IpAddr,
    pub sip_port: u16,
    /// The registrations of the trunks that register.
    pub registrars: Vec<Arc<Registrar>>,
}

/// What the settings say about the user agent.
pub struct UaConfig<'a> {
    pub bind: &'a str,
    pub external_ip: &'a str,
    /// Resolved here: each one's `target`.
    pub trunks: &'a [Arc<Trunk>],
    /// For TLS trunks (PEM files; empty: the system's roots, no client certificate).
    pub tls_ca_file: &'a str,
    pub tls_client_cert_file: &'a str,
    pub tls_client_key_file: &'a str,
    /// Where out-of-dialog INVITEs go once the carrier takes calls; until then they get 480.
    pub invites: Invites,
}

impl Ua {
    /// Resolves the trunks, binds the SIP socket and starts serving it.
    pub async fn start(config: &UaConfig<'_>) -> Result<Ua, String> {
        // A trunk whose address does not resolve now is tried again when a call needs it:
        // one carrier's DNS does not stop the others.
        let mut first_addr = None;
        for trunk in config.trunks {
            match resolve_target(trunk).await {
                Ok(addr) => {
                    first_addr.get_or_insert(addr);
                }
                Err(e) => tracing::error!(trunk = %trunk.name, error = %e, "sip: trunk address"),
            }
        }
        let first_addr = first_addr.ok_or("no trunk's address resolves")?;
        let bind: SocketAddr =
            config.bind.parse().map_err(|_| format!("sip.bind `{}` is not ip:port", config.bind))?;
        let advertised_ip = if !config.external_ip.is_empty() {
            config
                .external_ip
                .parse()
                .map_err(|_| format!("sip.external_ip `{}` is not an IP address", config.external_ip))?
        } else if bind.ip().is_unspecified() {
            local_ip_towards(first_addr).map_err(|e| format!("no local address towards {first_addr}: {e}"))?
        } else {
            bind.ip()
        };

        let cancel = CancellationToken::new();
        let transport_layer = TransportLayer::new(cancel.child_token());
        let mut udp = UdpConnection::create_connection(bind, None, Some(cancel.child_token()))
            .await
            .map_err(|e| format!("cannot bind the SIP socket {bind}: {e}"))?;
        let sip_port = udp.get_addr().get_socketaddr().map(|a| a.port()).unwrap_or(bind.port());
        let advertised = SocketAddr::new(advertised_ip, sip_port);
        udp.external = Some(SipAddr::new(Transport::Udp, advertised.into()));
        transport_layer.add_transport(udp.into());
        if config.trunks.iter().any(|t| t.settings.transport == SipTransport::Tcp) {
            let tcp_bind = SocketAddr::new(bind.ip(), sip_port);
            let tcp = TcpListenerConnection::new(tcp_bind, Some(advertised))
                .await
                .map_err(|e| format!("cannot listen on TCP {tcp_bind}: {e}"))?;
            transport_layer.add_transport(tcp.into());
        }

        if config.trunks.iter().any(|t| t.settings.transport == SipTransport::Tls) {
            transport_layer.set_tls_config(tls_config(config)?);
        }

        let endpoint = rsipstack::EndpointBuilder::new()
            .with_user_agent(USER_AGENT)
            .with_transport_layer(transport_layer)
            .with_cancel_token(cancel.child_token())
            .build();
        let incoming = endpoint.incoming_transactions().map_err(|e| e.to_string())?;
        let serving = endpoint.inner.clone();
        tokio::spawn(async move {
            if let Err(e) = serving.serve().await {
                tracing::error!(error = %e, "sip: the user agent stopped");
            }
        });
        let layer = Arc::new(DialogLayer::new(endpoint.inner.clone()));
        tokio::spawn(serve_requests(layer.clone(), incoming, config.invites.clone()));
        for trunk in config.trunks {
            if trunk.settings.srtp != super::srtp::SrtpPolicy::Off
                && trunk.settings.transport != SipTransport::Tls
            {
                tracing::warn!(
                    trunk = %trunk.name,
                    "sip: SRTP over a trunk without TLS: its keys travel in the clear in the SDP; set transport = \"tls\""
                );
            }
            tracing::info!(
                trunk = %trunk.name,
                at = ?trunk.target.get().map(|t| t.addr.to_string()),
                transport = ?trunk.settings.transport,
                "sip: trunk"
            );
        }
        tracing::info!(local = %SocketAddr::new(bind.ip(), sip_port), %advertised, "sip: user agent started");
        let registrars = config
            .trunks
            .iter()
            .filter(|t| t.settings.register)
            .map(|t| Registrar::start(endpoint.inner.clone(), t.clone()))
            .collect::<Result<_, _>>()?;
        Ok(Ua { layer, endpoint, cancel, advertised_ip, media_bind_ip: bind.ip(), sip_port, registrars })
    }

    /// `host:port` of our Contact.
    pub fn contact_host(&self) -> String {
        format!("{}:{}", host_for_uri(self.advertised_ip), self.sip_port)
    }

    /// The INVITE for `number` through `trunk`, from `caller_id`, offering `sdp`.
    pub fn invite(
        &self,
        trunk: &Trunk,
        number: &str,
        caller_id: &str,
        sdp: String,
        call_id: &str,
        headers: Vec<Header>,
    ) -> Result<InviteOption, String> {
        let uri = |s: String| Uri::try_from(s.as_str()).map_err(|e| format!("bad SIP URI `{s}`: {e}"));
        let transport = trunk.settings.transport.uri_param();
        let host = host_for_uri(self.advertised_ip);
        let domain = trunk.domain();
        Ok(InviteOption {
            caller: uri(format!("sip:{caller_id}@{domain}"))?,
            callee: uri(format!("sip:{number}@{domain}{transport}"))?,
            destination: trunk.target.get().cloned(),
            content_type: Some("application/sdp".into()),
            offer: Some(sdp.into_bytes()),
            contact: uri(format!("sip:{caller_id}@{host}:{}", self.sip_port))?,
            credential: trunk.credential.clone(),
            // The attempt's uuid, for finding the call in a trunk's logs, made unique
            // beyond this node (a restart in the same second, another instance).
            call_id: Some(format!("{call_id}-{:08x}@{host}", rand::random::<u32>())),
            headers: {
                let headers: Vec<Header> = trunk.route_header().into_iter().chain(headers).collect();
                (!headers.is_empty()).then_some(headers)
            },
            ..Default::default()
        })
    }

    /// Resolves the trunk's address if it has not been yet, and opens (or finds) the
    /// connection to a TCP or TLS trunk: its failure (refused, a certificate not trusted)
    /// is known at once, rather than as a silent INVITE.
    pub async fn connect(&self, trunk: &Trunk) -> Result<(), String> {
        if trunk.target.get().is_none() {
            resolve_target(trunk).await?;
        }
        if trunk.settings.transport == SipTransport::Udp {
            return Ok(());
        }
        let target = trunk.target.get().ok_or("the trunk's address is not resolved")?;
        self.endpoint.inner.transport_layer.lookup(target, None).await.map(|_| ()).map_err(|e| e.to_string())
    }

    /// Sends OPTIONS out of dialog to `trunk`: its final status, or why none came.
    pub async fn options(&self, trunk: &Trunk) -> Result<u16, String> {
        if trunk.target.get().is_none() {
            resolve_target(trunk).await?;
        }
        let target = trunk.target.get().cloned().ok_or("the trunk's address is not resolved")?;
        let domain = trunk.domain();
        let uri = |s: String| Uri::try_from(s.as_str()).map_err(|e| format!("bad SIP URI `{s}`: {e}"));
        let request_uri = uri(format!("sip:{domain}"))?;
        let ours = uri(format!("sip:{}@{}", trunk.caller_id(), host_for_uri(self.advertised_ip)))?;
        let inner = &self.endpoint.inner;
        let via = match inner.transport_layer.lookup(&target, None).await {
            Ok((connection, _)) => inner.get_via(Some(connection.get_addr().clone()), None),
            Err(_) => inner.get_via(None, None),
        }
        .map_err(|e| e.to_string())?;
        let from = rsipstack::rsip::typed::From { display_name: None, uri: ours, params: vec![] }
            .with_tag(rsipstack::transaction::make_tag());
        let to = rsipstack::rsip::typed::To { display_name: None, uri: request_uri.clone(), params: vec![] };
        let request = inner.make_request(Method::Options, request_uri, via, from, to, 1, None);
        let key =
            TransactionKey::from_request(&request, TransactionRole::Client).map_err(|e| e.to_string())?;
        let mut tx = Transaction::new_client(key, request, inner.clone(), None);
        tx.destination = Some(target);
        tx.send().await.map_err(|e| e.to_string())?;
        while let Some(message) = tx.receive().await {
            if let SipMessage::Response(response) = message {
                let code = response.status_code.code();
                if code >= 200 {
                    return Ok(code);
                }
            }
        }
        Err("no answer (timeout)".into())
    }
}

impl Drop for Ua {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Requests that reach us. In-dialog ones go to their dialog (which answers BYE itself
/// and hands the rest to `dialog_events`); out of dialog we answer OPTIONS (trunks use it
/// as a keep-alive), hand INVITEs to `invites` when the carrier takes calls (see
/// `inbound`; else 480), and turn away the rest.
async fn serve_requests(
    layer: Arc<DialogLayer>,
    mut incoming: rsipstack::transaction::TransactionReceiver,
    invites: Invites,
) {
    while let Some(mut tx) = incoming.recv().await {
        if let Some(mut dialog) = layer.match_dialog(&tx) {
            tokio::spawn(async move {
                if let Err(e) = dialog.handle(&mut tx).await {
                    tracing::debug!(error = %e, "sip: in-dialog request");
                }
            });
            continue;
        }
        if tx.original.method == Method::Invite
            && let Some(invites) = invites.get()
        {
            match invites.send(tx) {
                Ok(()) => continue,
                Err(mpsc::error::SendError(back)) => tx = back,
            }
        }
        let status = match tx.original.method {
            Method::Ack => continue,
            Method::Options => StatusCode::OK,
            Method::Invite => StatusCode::TemporarilyUnavailable,
            Method::Bye | Method::Cancel | Method::Update | Method::Info => {
                StatusCode::CallTransactionDoesNotExist
            }
            _ => StatusCode::MethodNotAllowed,
        };
        tokio::spawn(async move {
            if let Err(e) = tx.reply(status).await {
                tracing::debug!(error = %e, "sip: answering an out-of-dialog request");
            }
        });
    }
}

/// Follows one call's dialog: answers what the callee's side sends within it, and reports
/// the end of the call on `ended` (the first end only).
pub struct DialogEvents {
    pub layer: Arc<DialogLayer>,
    pub call_id: String,
    /// Our SDP, for re-INVITEs (an inbound call's once it is answered).
    pub local_sdp: Arc<std::sync::OnceLock<String>>,
    pub codecs: Vec<Codec>,
    /// Where our RTP goes: a re-INVITE or UPDATE may move it.
    pub remote: Arc<Mutex<Option<RemoteMedia>>>,
    pub ended: watch::Sender<Option<HangupCause>>,
    /// The call's session timer, once answered with one: a refresh from the peer moves it on.
    pub timer: Arc<std::sync::OnceLock<SessionTimer>>,
    /// Where keys pressed by SIP INFO go (the channel RFC 4733 key presses also feed).
    pub keys: mpsc::Sender<char>,
    /// Set once the trunk answers the INVITE at all (100 Trying, or a provisional).
    pub responded: watch::Sender<bool>,
    /// Set once the call is up: for an inbound call, the caller's ACK to our 200.
    pub confirmed: watch::Sender<bool>,
}

impl DialogEvents {
    pub async fn run(self, mut states: DialogStateReceiver) {
        while let Some(state) = states.recv().await {
            match state {
                DialogState::Trying(_) | DialogState::Early(..) => {
                    self.responded.send_if_modified(|r| !std::mem::replace(r, true));
                }
                DialogState::Confirmed(..) => {
                    self.confirmed.send_if_modified(|c| !std::mem::replace(c, true));
                }
                DialogState::Terminated(id, reason) => {
                    self.terminated(&id, reason);
                    break;
                }
                DialogState::Updated(_, request, handle) => self.update(&request, handle).await,
                DialogState::Info(_, request, handle) => {
                    // Any INFO is taken (a phone sends others too); a key press is heard.
                    if let Some(key) = info_key(&request) {
                        tracing::debug!(call_id = %self.call_id, key = %key, "sip: key pressed (INFO)");
                        let _ = self.keys.try_send(key);
                    }
                    reply(&handle, StatusCode::OK, None).await;
                }
                DialogState::Options(_, _, handle) => {
                    reply(&handle, StatusCode::OK, None).await;
                }
                DialogState::Message(_, _, handle) | DialogState::Notify(_, _, handle) => {
                    reply(&handle, StatusCode::OK, None).await;
                }
                DialogState::Refer(_, _, handle) => {
                    // We do not transfer calls.
                    reply(&handle, StatusCode::Decline, None).await;
                }
                DialogState::Publish(_, _, handle) => {
                    reply(&handle, StatusCode::MethodNotAllowed, None).await;
                }
                _ => {}
            }
        }
    }

    fn terminated(&self, id: &DialogId, reason: TerminatedReason) {
        let cause = match &reason {
            TerminatedReason::UasBye => HangupCause::normal_clearing(),
            // The caller gave up on an inbound call before it was answered.
            TerminatedReason::UacCancel => HangupCause::from_sip(487),
            TerminatedReason::Timeout => HangupCause::from_sip(408),
            TerminatedReason::UasOther(code) | TerminatedReason::UacOther(code) => {
                HangupCause::from_sip(code.code())
            }
            _ => HangupCause::normal_clearing(),
        };
        tracing::debug!(call_id = %self.call_id, ?reason, "sip: dialog ended");
        self.ended.send_if_modified(|ended| {
            if ended.is_none() {
                *ended = Some(cause);
                true
            } else {
                false
            }
        });
        self.layer.remove_dialog(id);
    }

    /// A re-INVITE or UPDATE: keep our media as it is and answer with the same SDP;
    /// follow their RTP address if they moved it.
    async fn update(&self, request: &Request, handle: TransactionHandle) {
        let offer = String::from_utf8_lossy(&request.body);
        if !offer.trim().is_empty() {
            match sdp::parse_remote(&offer, &self.codecs) {
                Ok(media) => {
                    let mut remote = self.remote.lock().expect("remote lock");
                    if remote.as_ref().is_some_and(|r| *r != media) {
                        tracing::info!(call_id = %self.call_id, to = %media.addr, codec = ?media.codec, "sip: media moved");
                    }
                    *remote = Some(media);
                }
                Err(e) => {
                    tracing::warn!(call_id = %self.call_id, error = %e, "sip: refusing a re-offer");
                    reply(&handle, StatusCode::NotAcceptableHere, None).await;
                    return;
                }
            }
        }
        // A session refresh (RFC 4028 §9): the answer carries the interval, which runs anew.
        let session_expires = request
            .headers
            .iter()
            .find(|h| h.name().eq_ignore_ascii_case("Session-Expires"))
            .and_then(|h| timer::parse_session_expires(h.value()));
        let mut headers = Vec::new();
        if let Some((secs, refresher)) = session_expires {
            if let Some(timer) = self.timer.get() {
                timer.peer_refreshed(secs);
            }
            // The peer sends this request: as its UAS we name it the refresher unless it said.
            let refresher = match refresher {
                Some(timer::Refresher::Uac) => "uac",
                Some(timer::Refresher::Uas) => "uas",
                None => "uac",
            };
            headers.push(Header::SessionExpires(format!("{secs};refresher={refresher}").into()));
            if refresher == "uac" {
                headers.push(Header::Require("timer".into()));
            }
        }
        // A re-INVITE always gets our session (as the answer, or as the offer when it came
        // without one); an UPDATE only when it offered one.
        let with_sdp = request.method == Method::Invite || !offer.trim().is_empty();
        let local_sdp = self.local_sdp.get().cloned();
        reply_with(&handle, StatusCode::OK, headers, local_sdp.filter(|_| with_sdp)).await;
    }
}

/// The key of a SIP INFO key press: `application/dtmf-relay` (`Signal=5` and
/// `Duration=160` lines) or `application/dtmf` (the key alone).
fn info_key(request: &Request) -> Option<char> {
    let content_type = request.headers.iter().find(|h| h.name().eq_ignore_ascii_case("Content-Type"))?;
    let media_type = content_type.value().split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    dtmf_body_key(&media_type, &String::from_utf8_lossy(&request.body))
}

fn dtmf_body_key(media_type: &str, body: &str) -> Option<char> {
    match media_type {
        "application/dtmf-relay" => body.lines().find_map(|line| {
            let (name, value) = line.split_once('=')?;
            name.trim().eq_ignore_ascii_case("signal").then(|| dtmf::key_named(value)).flatten()
        }),
        "application/dtmf" => dtmf::key_named(body),
        _ => None,
    }
}

async fn reply(handle: &TransactionHandle, status: StatusCode, sdp: Option<String>) {
    reply_with(handle, status, Vec::new(), sdp).await;
}

async fn reply_with(
    handle: &TransactionHandle,
    status: StatusCode,
    mut headers: Vec<Header>,
    sdp: Option<String>,
) {
    let body = sdp.map(|sdp| {
        headers.push(Header::ContentType("application/sdp".into()));
        sdp.into_bytes()
    });
    let headers = (!headers.is_empty()).then_some(headers);
    if let Err(e) = handle.respond(status, headers, body).await {
        tracing::debug!(error = %e, "sip: in-dialog answer");
    }
}

/// The local SDP for a call; `crypto`: our SRTP key, and whether SRTP is required.
pub fn local_sdp(
    ip: IpAddr,
    rtp_port: u16,
    codecs: &[Codec],
    telephone_event: bool,
    crypto: Option<(SdesKey, bool)>,
) -> LocalSdp {
    LocalSdp {
        ip,
        rtp_port,
        codecs: codecs.to_vec(),
        telephone_event: telephone_event.then_some(sdp::TELEPHONE_EVENT_PT),
        session_id: u64::from(rand::random::<u32>()),
        crypto,
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`; the port defaults to 5060.
pub fn split_host_port(s: &str) -> Option<(String, u16)> {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => 5060,
            None => return None,
        };
        return Some((host.to_string(), port));
    }
    match s.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => Some((host.to_string(), port.parse().ok()?)),
        Some(_) => None,
        None if !s.is_empty() => Some((s.to_string(), 5060)),
        None => None,
    }
}

/// Resolves where `trunk`'s requests go (its outbound proxy, or its address) and sets
/// its `target`; the address it resolved to.
async fn resolve_target(trunk: &Trunk) -> Result<SocketAddr, String> {
    let address = trunk.next_hop();
    let (host, port) =
        split_host_port(address).ok_or_else(|| format!("trunk address `{address}` is not host[:port]"))?;
    let addr = resolve(&host, port).await?;
    let target = match trunk.settings.transport {
        SipTransport::Udp => SipAddr::new(Transport::Udp, addr.into()),
        SipTransport::Tcp => SipAddr::new(Transport::Tcp, addr.into()),
        // By its name, when it has one: the name is the SNI, and what its certificate
        // must name.
        SipTransport::Tls => SipAddr {
            r#type: Some(Transport::Tls),
            addr: rsipstack::rsip::HostWithPort::try_from(format!("{}:{port}", host_for_uri_str(&host)))
                .map_err(|e| format!("trunk address `{address}`: {e}"))?,
        },
    };
    let _ = trunk.target.set(target);
    Ok(addr)
}

async fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    let target = format!("{host}:{port}");
    let addrs = tokio::task::spawn_blocking({
        let target = target.clone();
        move || target.to_socket_addrs().map(Iterator::collect::<Vec<_>>)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("cannot resolve the SIP trunk {target}: {e}"))?;
    // IPv4 first: most trunks and SBCs still speak it.
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("the SIP trunk {target} resolves to no address"))
}

/// The local address the system routes `to` from (a connected UDP socket sends nothing).
fn local_ip_towards(to: SocketAddr) -> std::io::Result<IpAddr> {
    let any: SocketAddr = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().expect("an address");
    let socket = std::net::UdpSocket::bind(any)?;
    socket.connect(to)?;
    Ok(socket.local_addr()?.ip())
}

/// What TLS connections to trunks are made with: the CA file's certificates, or the
/// system's roots; our client certificate, if set.
fn tls_config(config: &UaConfig<'_>) -> Result<rsipstack::transport::tls::TlsConfig, String> {
    // One provider for the process (rsipstack needs one installed); a second install is
    // refused harmlessly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let read = |key: &str, path: &str| {
        std::fs::read(path).map_err(|e| format!("{key} `{path}` cannot be read: {e}"))
    };
    let ca_certs = if config.tls_ca_file.is_empty() {
        let found = rustls_native_certs::load_native_certs();
        if found.certs.is_empty() {
            return Err(format!(
                "no system CA certificates for TLS trunks ({:?}): set sip.tls_ca_file",
                found.errors
            ));
        }
        found.certs.iter().map(|der| pem("CERTIFICATE", der)).collect::<String>().into_bytes()
    } else {
        read("sip.tls_ca_file", config.tls_ca_file)?
    };
    let (client_cert, client_key) = if config.tls_client_cert_file.is_empty() {
        (None, None)
    } else {
        (
            Some(read("sip.tls_client_cert_file", config.tls_client_cert_file)?),
            Some(read("sip.tls_client_key_file", config.tls_client_key_file)?),
        )
    };
    Ok(rsipstack::transport::tls::TlsConfig {
        ca_certs: Some(ca_certs),
        client_cert,
        client_key,
        ..Default::default()
    })
}

/// A DER certificate as PEM (rsipstack takes its trust anchors as PEM).
fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> =
        text.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).expect("base64 is ASCII")).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

/// A host for a URI: an IPv6 address in brackets.
fn host_for_uri_str(host: &str) -> String {
    match host.parse::<IpAddr>() {
        Ok(ip) => host_for_uri(ip),
        Err(_) => host.to_string(),
    }
}

fn host_for_uri(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trunk_addresses_take_a_default_port() {
        assert_eq!(split_host_port("sip.example.com"), Some(("sip.example.com".into(), 5060)));
        assert_eq!(split_host_port("10.0.0.1:5080"), Some(("10.0.0.1".into(), 5080)));
        assert_eq!(split_host_port("[2001:db8::1]:5062"), Some(("2001:db8::1".into(), 5062)));
        assert_eq!(split_host_port("[2001:db8::1]"), Some(("2001:db8::1".into(), 5060)));
        assert_eq!(split_host_port("host:port"), None);
        assert_eq!(split_host_port(""), None);
        assert_eq!(split_host_port("2001:db8::1"), None);
    }

    fn info(content_type: &str, body: &str) -> Request {
        let raw = format!(
            "INFO sip:cc@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n\
             From: <sip:peer@127.0.0.1>;tag=a\r\nTo: <sip:cc@127.0.0.1>;tag=b\r\nCall-ID: x\r\n\
             CSeq: 2 INFO\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        Request::try_from(raw.as_str()).unwrap()
    }

    #[test]
    fn sip_info_key_presses_are_read_from_dtmf_relay_and_dtmf_bodies() {
        assert_eq!(info_key(&info("application/dtmf-relay", "Signal=5\r\nDuration=160\r\n")), Some('5'));
        assert_eq!(info_key(&info("Application/DTMF-Relay", "Duration=250\nsignal= #\n")), Some('#'));
        assert_eq!(info_key(&info("application/dtmf-relay", "Signal=11\r\nDuration=160")), Some('#'));
        assert_eq!(info_key(&info("application/dtmf", "7")), Some('7'));
        assert_eq!(info_key(&info("application/dtmf", "*\r\n")), Some('*'));
        // Not a key: another package, a bad signal, no signal.
        assert_eq!(info_key(&info("application/media_control+xml", "<media_control/>")), None);
        assert_eq!(info_key(&info("application/dtmf-relay", "Signal=X\r\nDuration=160")), None);
        assert_eq!(info_key(&info("application/dtmf-relay", "Duration=160")), None);
    }

    #[test]
    fn the_route_to_loopback_is_from_loopback() {
        let ip = local_ip_towards("127.0.0.1:5060".parse().unwrap()).unwrap();
        assert!(ip.is_loopback());
    }
}
