//! The phone network, behind one trait: the dialer places calls only through `Carrier`,
//! and a call in progress is one `CallSession`. The sim carrier is the default; a SIP
//! trunk or FreeSWITCH fits behind the same traits.

pub mod asr;
pub mod dtmf;
pub mod freeswitch;
pub mod hearing;
pub mod latency;
pub mod sim;
pub mod sip;
pub mod tts;
pub mod vad;

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::domain::{HangupCause, Phone};

/// Which carrier places the calls (`dialer.carrier`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CarrierKind {
    Sim,
    Sip,
    Freeswitch,
}

/// One attempt to place.
#[derive(Debug, Clone)]
pub struct DialRequest {
    /// The attempt's 19-digit uuid (also the recording's file name).
    pub call_id: String,
    pub phone: Phone,
    /// Give up ringing after this long: the result is `NO_ANSWER:sip:480`.
    pub ring_timeout: Duration,
    /// Where the WAV goes; `None` records nothing.
    pub recording: Option<PathBuf>,
    /// The number shown to the callee, chosen by the task's campaign; `None`: the
    /// carrier's own (a trunk's `caller_ids`, `freeswitch.caller_id_number`).
    pub caller_id: Option<String>,
}

/// A call to a person at an extension: the first leg of a click-to-call (`03`).
#[derive(Debug, Clone)]
pub struct ExtensionRequest {
    /// The call's 19-digit uuid (also the recording's file name).
    pub call_id: String,
    /// As a transfer's destination: a SIP URI, or an extension/number.
    pub to: String,
    pub ring_timeout: Duration,
    /// Where the WAV goes; `None` records nothing.
    pub recording: Option<PathBuf>,
}

pub enum DialResult {
    Answered(Box<dyn CallSession>),
    Failed(HangupCause),
}

/// A call to us, ringing: who calls, which of our numbers, and the way to answer it.
pub struct IncomingCall {
    /// The caller's number (SIP From user, FreeSWITCH caller id).
    pub caller: String,
    /// The number called (DID): the Request-URI's user, FreeSWITCH's destination number.
    pub called: String,
    /// Where it came from, for logs (never a phone number): an address, or the
    /// FreeSWITCH channel.
    pub source: String,
    pub answer: Box<dyn Answer>,
}

/// Answers or turns away one incoming call; whichever is called first decides.
#[async_trait]
pub trait Answer: Send {
    /// Rings (180), answers (200) and, once the call is up (the ACK), gives the same
    /// session an outbound call has; the call's uuid names it in logs, and its recording
    /// goes to `recording`. Fails with the cause to record when the caller hangs up first
    /// (`ORIGINATOR_CANCEL:sip:487`) or the call cannot be set up.
    async fn answer(
        self: Box<Self>,
        call_id: &str,
        recording: Option<PathBuf>,
    ) -> Result<Box<dyn CallSession>, HangupCause>;

    /// Turns the call away with a SIP status: 404 (no such number), 486 (no line free),
    /// 503 (shutting down).
    async fn refuse(self: Box<Self>, status: u16);
}

#[async_trait]
pub trait Carrier: Send + Sync + 'static {
    /// Places a call and resolves once it is answered or has failed (busy, rang out,
    /// unallocated, network error, ring timeout). Dropping the future abandons the
    /// attempt; a carrier that must tell the network (SIP CANCEL) does so on drop.
    async fn dial(&self, request: DialRequest) -> DialResult;

    /// Calls a person at an extension (click-to-call); the session can then `transfer`
    /// them to the customer. A carrier that cannot says so (`FACILITY_NOT_IMPLEMENTED`).
    async fn dial_extension(&self, request: ExtensionRequest) -> DialResult {
        let _ = request;
        DialResult::Failed(HangupCause { name: "FACILITY_NOT_IMPLEMENTED".into(), sip: None })
    }

    /// How long the far end keeps an answered call up after a `KeepAlive::keep_alive` that
    /// it took, at most: the dialer's lease is derived from it. A carrier whose timer takes
    /// any length (the sim, FreeSWITCH) is given `FAR_END_EXPIRY`; one whose timer has a
    /// floor (a SIP session timer, at least 90 s) says how long it is.
    fn far_end_expiry(&self) -> Duration {
        FAR_END_EXPIRY
    }

    /// The carrier's trunks and where each stands, for /readyz (`ok`, `registering`,
    /// `not registered: …`, `out of rotation`); empty for a carrier without trunks.
    fn trunk_status(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    /// The server stops, its calls over: leave the network (a SIP trunk's un-REGISTER).
    async fn shutdown(&self) {}

    /// Starts taking calls to us: they arrive on the receiver, to be answered or refused.
    /// The first call takes the receiver; `None` from a carrier that takes no calls or
    /// after the first call.
    fn incoming(&self) -> Option<tokio::sync::mpsc::Receiver<IncomingCall>> {
        None
    }
}

/// The far end's timer for a carrier that can set any: within the shortest lease (30 s)
/// less the clock margin between nodes (5 s).
pub const FAR_END_EXPIRY: Duration = Duration::from_secs(20);

/// What became of a line given to `say`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Said {
    /// Played to its end.
    Whole,
    /// The callee spoke over it (barge-in) and it stopped: `played` is the share of its
    /// audio that went out, 0…1. The callee's speech is the next `listen`'s turn.
    Interrupted { played: f64 },
}

impl Said {
    /// What the callee heard of `line`: all of it, or its first `played` share marked `…`.
    pub fn heard_of(&self, line: &str) -> String {
        match *self {
            Said::Whole => line.to_string(),
            Said::Interrupted { played } => {
                let chars = line.chars().count();
                let kept = ((chars as f64) * played.clamp(0.0, 1.0)).round() as usize;
                let head: String = line.chars().take(kept).collect();
                let head =
                    head.trim_end_matches(|c: char| c.is_whitespace() || "，。！？、；：,.!?;:…".contains(c));
                format!("{head}…")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Said;

    #[test]
    fn an_interrupted_line_keeps_the_share_played_marked_as_cut() {
        let line = "关于您的维修工单：明天上午九点上门维修";
        assert_eq!(Said::Whole.heard_of(line), line);
        assert_eq!(Said::Interrupted { played: 0.5 }.heard_of(line), "关于您的维修工单：明…");
        // Punctuation at the cut is not kept before the mark.
        assert_eq!(Said::Interrupted { played: 0.45 }.heard_of(line), "关于您的维修工单…");
        assert_eq!(Said::Interrupted { played: 0.0 }.heard_of(line), "…");
        assert_eq!(Said::Interrupted { played: 1.0 }.heard_of("Hello there."), "Hello there…");
    }
}

/// What `listen` heard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// The callee said something (recognised text, or a placeholder such as `[语音 3秒]`
    /// when no speech recogniser is configured), or pressed a key (`[按键 1]`, see `dtmf`).
    Speech(String),
    /// Nothing within the wait.
    Silence,
}

/// The callee hung up; carries the cause to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HungUp(pub HangupCause);

/// Why we end a call from our side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HangupReason {
    /// The conversation is over.
    Completed,
    /// stopTasks asked for it.
    Stopped,
    /// `dialer.max_call_secs` passed.
    MaxDuration,
    /// The node is shutting down.
    Shutdown,
    /// The node could not renew the call's lease in time: it must end before another
    /// node may take the task over.
    LeaseLost,
}

/// How a call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallEnd {
    pub cause: HangupCause,
    /// Whether the WAV at `DialRequest::recording` was written.
    pub recorded: bool,
    /// The median, over the agent's answers in this call, of the time from the callee's
    /// last word to the answer's first audio; `None` when no answer was measured.
    pub turn_latency: Option<Duration>,
}

/// The far end's dead man's switch for one answered call: the carrier's side ends the
/// call by itself unless it is kept alive, so the call of a node that died or stalled
/// does not outlive the node's lease.
#[async_trait]
pub trait KeepAlive: Send + Sync {
    /// Lets the call live at most `for_` from now, unless kept alive again.
    async fn keep_alive(&self, for_: Duration);
}

/// One answered call. The agent drives it with `say` and `listen`; the dialer ends it
/// with `hang_up`, also after the callee hung up (to close the recording).
#[async_trait]
pub trait CallSession: Send {
    /// The far end's dead man's switch, where the carrier has one. Armed by the first
    /// `keep_alive`.
    fn keep_alive(&self) -> Option<std::sync::Arc<dyn KeepAlive>> {
        None
    }
    /// Speaks a line to the callee; returns when it has been played, or as soon as the
    /// callee speaks over it where the carrier lets them (barge-in).
    async fn say(&mut self, text: &str) -> Result<Said, HungUp>;
    /// Waits up to `max_wait` for the callee to speak and finish a turn.
    async fn listen(&mut self, max_wait: Duration) -> Result<Heard, HungUp>;
    /// Places a second leg to a human at `to` (a SIP URI, or an extension or number
    /// dialled through the carrier's own routes) and, once it answers within
    /// `ring_timeout`, bridges the callee to it: the agent's part is then over, and the
    /// call goes on between the two until either hangs up (`bridged`). The callee hears
    /// a ringback tone meanwhile where the carrier plays one. A carrier that cannot
    /// transfer says so.
    async fn transfer(&mut self, to: &str, ring_timeout: Duration) -> Result<Transferred, TransferFailed> {
        let _ = (to, ring_timeout);
        Err(TransferFailed::Unsupported)
    }
    /// After a transfer: resolves when either side of the bridged call hangs up, with
    /// the cause to record (hang_up then ends the other side).
    async fn bridged(&mut self) -> HungUp {
        std::future::pending().await
    }
    /// Ends the call (if the callee has not already) and closes the recording.
    /// The cause is the callee's own if they hung up first.
    async fn hang_up(self: Box<Self>, reason: HangupReason) -> CallEnd;
}

/// A transfer the human answered: the callee is bridged to them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transferred {
    /// The destination as dialled.
    pub to: String,
    /// When the human answered (epoch ms).
    pub answered_ms: i64,
}

/// Why a transfer did not happen; the callee is still on the line with the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferFailed {
    /// The human's side was busy, did not answer within the ring timeout, or failed:
    /// the cause the second leg ended with.
    NotAnswered(HangupCause),
    /// The carrier cannot transfer calls.
    Unsupported,
    /// The callee hung up while the human's side rang.
    CalleeGone(HangupCause),
}

/// The extension a transfer destination names: the user part of a SIP URI
/// (`sip:8001@pbx.example.com` → `8001`) or of a FreeSWITCH dial string (`user/8001`,
/// `sofia/internal/8001@pbx` → `8001`), or the number itself.
pub fn extension_of(destination: &str) -> &str {
    let destination = destination.rsplit('/').next().unwrap_or(destination);
    let rest =
        destination.strip_prefix("sips:").or_else(|| destination.strip_prefix("sip:")).unwrap_or(destination);
    match rest.split_once('@') {
        Some((user, _)) => user,
        None => rest.split([';', ':']).next().unwrap_or(rest),
    }
}

#[cfg(test)]
mod transfer_tests {
    use super::extension_of;

    #[test]
    fn the_extension_is_the_user_part_of_a_uri_or_the_number_itself() {
        assert_eq!(extension_of("sip:8001@127.0.0.1:5070"), "8001");
        assert_eq!(extension_of("sips:8002@pbx.example.com;transport=tls"), "8002");
        assert_eq!(extension_of("8003"), "8003");
        assert_eq!(extension_of("user/8004"), "8004");
        assert_eq!(extension_of("sofia/internal/8005@pbx.example.com"), "8005");
        assert_eq!(extension_of("user/8004"), "8004");
        assert_eq!(extension_of("sofia/internal/8005@pbx.example.com"), "8005");
        assert_eq!(extension_of("+8613800138000"), "+8613800138000");
    }
}
