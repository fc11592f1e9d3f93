//! Calls to us through a trunk: an out-of-dialog INVITE from an allowed address becomes
//! an `IncomingCall`; answering it rings (180), answers (200 with our SDP: the codec
//! chosen from the caller's offer, SRTP when it offered a key), waits for the ACK, and
//! gives the same `SipSession` an outbound call has. A CANCEL before our 200 gets 487 and
//! the call is not answered; BYE either way ends it.
//!
//! Only INVITEs from `inbound.allow` (by default the trunks' own addresses) are taken;
//! anything else gets 403, so nobody can have the server answer (or place) calls on
//! their behalf.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::rsip::prelude::{HeadersExt, ToTypedHeader};
use rsipstack::rsip::{Header, Param, StatusCode, Uri};
use rsipstack::transaction::transaction::Transaction;
use tokio::sync::{mpsc, watch};

use super::SipCarrier;
use super::recorder::Recorder;
use super::rtp::{KEY_BACKLOG, Media, PacketPath, RtpTimeout};
use super::sdp;
use super::session::SipSession;
use super::signalling::{self, DialogEvents, Ua};
use super::srtp::{SdesKey, Srtp};
use crate::domain::HangupCause;
use crate::telephony::{Answer, CallSession, IncomingCall};

/// How long we wait for the caller's ACK to our 200 (RFC 3261's Timer H, 64 × T1).
const ACK_WAIT: Duration = Duration::from_secs(32);

impl SipCarrier {
    /// Whether INVITEs from `ip` are taken (`inbound.allow`; empty = the trunks' addresses).
    fn allows(&self, ip: IpAddr) -> bool {
        if !self.allow.is_empty() {
            return self.allow.iter().any(|net| net.contains(&ip));
        }
        self.trunks.all.iter().any(|trunk| {
            trunk.target.get().is_some_and(|target| target.addr.host.to_string() == ip.to_string())
        })
    }
}

/// Turns the INVITEs `serve_requests` hands over into calls for the dialer, until either
/// side is gone.
pub async fn serve(
    ua: Arc<Ua>,
    carrier: SipCarrier,
    mut invites: mpsc::UnboundedReceiver<Transaction>,
    calls: mpsc::Sender<IncomingCall>,
) {
    while let Some(mut tx) = invites.recv().await {
        let source = source_ip(&tx);
        if !source.is_some_and(|ip| carrier.allows(ip)) {
            crate::metrics::inbound_refused("not_allowed");
            tracing::warn!(source = ?source, "sip: INVITE from an address not in inbound.allow: 403");
            tokio::spawn(async move {
                let _ = tx.reply(StatusCode::Forbidden).await;
            });
            continue;
        }
        let source = source.map(|ip| ip.to_string()).unwrap_or_default();
        let request = &tx.original;
        let called = request.uri.user().map(str::to_string).unwrap_or_default();
        let caller = request
            .from_header()
            .ok()
            .and_then(|from| from.uri().ok())
            .and_then(|uri| uri.user().map(str::to_string))
            .unwrap_or_default();
        let (state_tx, state_rx) = ua.layer.new_dialog_state_channel();
        let contact = Uri::try_from(format!("sip:{called}@{}", ua.contact_host()).as_str()).ok();
        let dialog = match ua.layer.get_or_create_server_invite(&tx, state_tx, None, contact) {
            Ok(dialog) => dialog,
            Err(e) => {
                tracing::warn!(error = %e, "sip: cannot take an INVITE");
                tokio::spawn(async move {
                    let _ = tx.reply(StatusCode::ServerInternalError).await;
                });
                continue;
            }
        };
        let (ended_tx, ended_rx) = watch::channel(None);
        let (confirmed_tx, confirmed_rx) = watch::channel(false);
        let (keys, keys_rx) = mpsc::channel(KEY_BACKLOG);
        let remote = Arc::new(Mutex::new(None));
        let offer = String::from_utf8_lossy(&request.body).into_owned();
        let call = SipAnswer {
            ua: ua.clone(),
            carrier: carrier.clone(),
            dialog: dialog.clone(),
            offer,
            remote: remote.clone(),
            ended: (ended_tx.clone(), ended_rx),
            confirmed: confirmed_rx,
            keys: (keys.clone(), keys_rx),
            local_sdp: Arc::new(std::sync::OnceLock::new()),
        };
        let events = DialogEvents {
            layer: ua.layer.clone(),
            call_id: request.call_id_header().map(|h| h.value().to_string()).unwrap_or_default(),
            local_sdp: call.local_sdp.clone(),
            codecs: carrier.settings.codecs.clone(),
            remote,
            ended: ended_tx,
            timer: Arc::new(std::sync::OnceLock::new()),
            keys,
            responded: watch::channel(false).0,
            confirmed: confirmed_tx,
        };
        tokio::spawn(events.run(state_rx));
        // The INVITE's transaction: 100 Trying now, our answers as they come, the ACK or
        // the CANCEL.
        let mut serving = dialog.clone();
        tokio::spawn(async move {
            if let Err(e) = serving.handle(&mut tx).await {
                tracing::debug!(error = %e, "sip: inbound INVITE transaction");
            }
        });
        tracing::info!(%source, "sip: inbound call");
        let incoming = IncomingCall { caller, called, source, answer: Box::new(call) };
        if calls.send(incoming).await.is_err() {
            return;
        }
    }
}

/// Where a request came from: the `received` address its top Via got on arrival, else
/// the Via's own host (which then is where it came from).
fn source_ip(tx: &Transaction) -> Option<IpAddr> {
    let via = tx.original.via_header().ok()?.typed().ok()?;
    via.params
        .iter()
        .find_map(|p| match p {
            Param::Received(received) => received.value().parse().ok(),
            _ => None,
        })
        .or_else(|| via.uri.host_with_port.host.to_string().trim_matches(['[', ']']).parse().ok())
}

/// Whether the offer's audio stream is RTP/SAVP (SRTP only).
fn offers_savp(offer: &str) -> bool {
    offer
        .lines()
        .find(|line| line.starts_with("m=audio"))
        .is_some_and(|line| line.split_whitespace().nth(2) == Some("RTP/SAVP"))
}

/// One ringing call, until it is answered or turned away.
struct SipAnswer {
    ua: Arc<Ua>,
    /// The carrier the call came in on: it also places a transfer's second leg.
    carrier: SipCarrier,
    dialog: InviteDialog,
    /// The INVITE's SDP.
    offer: String,
    remote: Arc<Mutex<Option<sdp::RemoteMedia>>>,
    ended: (watch::Sender<Option<HangupCause>>, watch::Receiver<Option<HangupCause>>),
    confirmed: watch::Receiver<bool>,
    keys: (mpsc::Sender<char>, mpsc::Receiver<char>),
    /// Our SDP once answered, for re-INVITEs.
    local_sdp: Arc<std::sync::OnceLock<String>>,
}

impl SipAnswer {
    /// Turns the call away (the caller has not hung up yet); the cause to record.
    fn reject(&self, code: u16) -> HangupCause {
        if let Err(e) = self.dialog.reject(Some(StatusCode::from(code)), None) {
            tracing::debug!(error = %e, "sip: rejecting an INVITE");
        }
        HangupCause::from_sip(code)
    }
}

#[async_trait]
impl Answer for SipAnswer {
    async fn answer(
        self: Box<Self>,
        call_id: &str,
        recording: Option<PathBuf>,
    ) -> Result<Box<dyn CallSession>, HangupCause> {
        let mut ended = self.ended.1.clone();
        if let Some(cause) = ended.borrow().clone() {
            return Err(cause);
        }
        let s = &self.carrier.settings;
        let media = match sdp::parse_remote(&self.offer, &s.codecs) {
            Ok(media) => media,
            Err(e) => {
                tracing::warn!(call_id, error = %e, "sip: inbound offer we cannot take: 488");
                return Err(self.reject(488));
            }
        };
        let socket = match self.carrier.ports.bind(self.ua.media_bind_ip).await {
            Ok(socket) => socket,
            Err(e) => {
                tracing::error!(call_id, error = %e, "sip: no free RTP port");
                return Err(self.reject(503));
            }
        };
        let rtp_port = socket.local_addr().map(|a| a.port()).unwrap_or_default();
        // SRTP when the caller offered a key: ours in the answer, on the offer's profile
        // (RTP/SAVP, or RTP/AVP for SRTP offered as optional).
        let key = media.crypto.as_ref().map(|_| SdesKey::random());
        let srtp = key.as_ref().zip(media.crypto.as_ref()).map(|(ours, theirs)| Srtp::new(ours, theirs));
        let crypto = key.map(|k| (k, offers_savp(&self.offer)));
        let mut local = signalling::local_sdp(self.ua.advertised_ip, rtp_port, &[media.codec], false, crypto);
        // Keys, on the payload type the caller chose (RFC 3264 §6.1).
        local.telephone_event = media.telephone_event.filter(|_| s.telephone_event);
        let local = local.render();
        let _ = self.local_sdp.set(local.clone());
        *self.remote.lock().expect("remote lock") = Some(media);
        if let Err(e) = self.dialog.ringing(None, None) {
            tracing::debug!(call_id, error = %e, "sip: 180");
        }
        let content_type = vec![Header::ContentType("application/sdp".into())];
        if let Err(e) = self.dialog.accept(Some(content_type), Some(local.into_bytes())) {
            tracing::warn!(call_id, error = %e, "sip: cannot answer");
            return Err(HangupCause::from_sip(500));
        }
        // Up once the caller's ACK comes; a CANCEL that crossed our 200, or no ACK at all,
        // ends it.
        let mut confirmed = self.confirmed.clone();
        tokio::select! {
            up = tokio::time::timeout(ACK_WAIT, confirmed.wait_for(|c| *c)) => {
                if !matches!(up, Ok(Ok(_))) {
                    tracing::warn!(call_id, "sip: no ACK to our 200; hanging up");
                    let dialog = self.dialog.clone();
                    tokio::spawn(async move { let _ = dialog.bye().await; });
                    return Err(HangupCause::from_sip(408));
                }
            }
            cause = ended.wait_for(Option::is_some) => {
                let cause = cause.ok().and_then(|c| c.clone()).unwrap_or_else(|| HangupCause::from_sip(487));
                return Err(cause);
            }
        }
        let answered_at = tokio::time::Instant::now();
        let recorder = Recorder::new(recording.as_deref(), self.carrier.recording_limit);
        let timeout = (s.rtp_timeout_secs > 0).then(|| RtpTimeout {
            after: Duration::from_secs(s.rtp_timeout_secs),
            ended: self.ended.0.clone(),
        });
        let path = PacketPath { symmetric: s.symmetric_rtp, srtp };
        let media = match Media::start(socket, self.remote.clone(), recorder, self.keys, timeout, path) {
            Ok(media) => media,
            Err(e) => {
                tracing::warn!(call_id, error = %e, "sip: cannot start the call's media; hanging up");
                let dialog = self.dialog.clone();
                tokio::spawn(async move {
                    let _ = dialog.bye().await;
                });
                return Err(HangupCause::from_sip(500));
            }
        };
        tracing::debug!(call_id, "sip: inbound call answered");
        let session = SipSession::new(
            call_id.to_string(),
            self.dialog,
            media,
            self.ended.1,
            self.carrier.engines.clone(),
            answered_at,
        )
        .with_legs(self.carrier.clone());
        Ok(Box::new(session))
    }

    async fn refuse(self: Box<Self>, status: u16) {
        self.reject(status);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_keeps_the_offers_srtp_profile() {
        let offer = |profile: &str| format!("v=0\r\nc=IN IP4 10.0.0.9\r\nm=audio 4000 {profile} 8 0\r\n");
        assert!(offers_savp(&offer("RTP/SAVP")));
        assert!(!offers_savp(&offer("RTP/AVP")));
        assert!(!offers_savp("v=0\r\n"));
    }
}
