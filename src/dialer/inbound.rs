//! Inbound calls (`callType` 01), answered by the agent: the carrier reports each call to
//! one of our numbers (DIDs); it takes a free line (the lines outbound calls share, see
//! `lines`), is answered, talks with the agent that number names, and is written down
//! like an outbound attempt (recording, dialogue, intent, `call.ended` webhook), only
//! with no task behind it. Calling hours do not apply: a caller chose the time.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::call::Handover;
use super::{Dialer, Inner};
use crate::agent::script::ScriptLines;
use crate::agent::{AgentOverrides, TRANSFER, TaskContext};
use crate::domain::{CallType, HangupCause, Turn, now_ms};
use crate::recording::{self, RecordingHealth};
use crate::store::CallRecord;
use crate::telephony::{CallSession, HangupReason, IncomingCall, extension_of};

/// The `[inbound]` section: which of our numbers the agent answers, and how.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InboundSettings {
    /// Lines of `dialer.max_concurrent_calls` that outbound calls leave free for inbound
    /// ones, so that a big campaign cannot keep callers out.
    pub reserved_calls: u32,
    /// Where SIP INVITEs are taken from: addresses or CIDRs (`"203.0.113.7"`,
    /// `"198.51.100.0/24"`); empty = the configured trunks' addresses. Any other source
    /// gets 403.
    pub allow: Vec<String>,
    /// The numbers answered (`[[inbound.numbers]]`); none: inbound calls are turned away.
    pub numbers: Vec<InboundNumber>,
}

/// One number (DID) the agent answers, or `*` for any number not listed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InboundNumber {
    /// The number called, as the trunk sends it (the Request-URI's user part), or `*`.
    pub number: String,
    /// The script agent's lines for this number (`agent.script`'s others follow them);
    /// `{username}`, `{ticketType}` and `{ticketContent}` are filled from the fields below.
    pub greeting: String,
    pub body: String,
    pub confirm: String,
    /// The LLM agent's system prompt for this number (with the same placeholders).
    pub system_prompt: String,
    /// What the agent knows of the line, as it knows a task's ticket (e.g. a hotline's
    /// name and what it is for).
    pub username: String,
    pub ticket_type: String,
    pub ticket_content: String,
    /// Where a call to this number is transferred when the caller asks for a person: a
    /// SIP URI (`sip:8001@pbx.example.com`) or an extension (`8001`).
    pub transfer_to: Option<String>,
}

/// What the agent says first to a caller, unless the number says otherwise.
pub const DEFAULT_GREETING: &str = "您好，这里是客服中心的智能助理，请问有什么可以帮您？";

/// The LLM agent's system prompt for a caller, unless the number says otherwise.
pub const DEFAULT_SYSTEM_PROMPT: &str = "\
你是客服中心的电话智能助理，正在接听客户打进来的电话。{ticketContent}

要求：
1. 你说的每句话都会转成语音播放给对方：用简短、礼貌、口语化的中文，每次最多三句话，不要用列表、表情或 Markdown。
2. 先问好，问对方需要什么帮助。
3. 回答对方的问题；不知道的信息不要编造，告诉对方稍后会有专人回电。
4. 问题解决或已记录后，礼貌道别，并调用 end_call 结束通话，intent 填 已确认、拒绝、需回访 或 无效。
5. 对方要求人工服务时，调用 transfer_to_human。
6. 如果不能调用工具，就在道别的话后面写 [END:结果]（例如 [END:需回访]），要求人工时写 [HUMAN]。
7. 对方说的话里的 [按键 N] 表示对方在电话键盘上按了 N 键。";

impl Default for InboundNumber {
    fn default() -> Self {
        InboundNumber {
            number: String::new(),
            greeting: DEFAULT_GREETING.into(),
            body: String::new(),
            confirm: String::new(),
            system_prompt: DEFAULT_SYSTEM_PROMPT.into(),
            username: String::new(),
            ticket_type: String::new(),
            ticket_content: String::new(),
            transfer_to: None,
        }
    }
}

impl InboundNumber {
    /// The number that answers every call: what the sim's inbound calls reach when no
    /// number is configured.
    pub fn any() -> InboundNumber {
        InboundNumber { number: "*".into(), ..InboundNumber::default() }
    }

    /// What the agent says on this number instead of the `[agent]` section's lines and
    /// prompt, as a campaign's words are given for a task.
    pub fn agent_words(&self) -> AgentOverrides {
        AgentOverrides {
            script: ScriptLines {
                greeting: Some(self.greeting.clone()),
                body: Some(self.body.clone()),
                confirm: Some(self.confirm.clone()),
                ..ScriptLines::default()
            },
            system_prompt: Some(self.system_prompt.clone()),
        }
    }
}

impl InboundSettings {
    /// What the types do not check, with `max_calls` = `dialer.max_concurrent_calls`.
    pub fn validate(&self, max_calls: u32) -> Result<(), String> {
        if self.reserved_calls >= max_calls {
            return Err(format!(
                "inbound.reserved_calls ({}) must be below dialer.max_concurrent_calls ({max_calls}): \
                 outbound calls need a line",
                self.reserved_calls
            ));
        }
        self.allow_list()?;
        let mut seen = std::collections::BTreeSet::new();
        for (i, n) in self.numbers.iter().enumerate() {
            let key = format!("inbound.numbers[{i}]");
            let number = n.number.trim();
            let valid = number == "*"
                || (!number.is_empty()
                    && number.len() <= 32
                    && number.chars().all(|c| c.is_ascii_alphanumeric() || "+*#-_.".contains(c)));
            if !valid {
                return Err(format!(
                    "{key}.number `{}` must be the number called (digits, as the trunk sends it) or \"*\"",
                    n.number
                ));
            }
            if !seen.insert(number) {
                return Err(format!("{key}.number `{number}` is listed twice"));
            }
            if let Some(to) = &n.transfer_to {
                if !super::transfer::is_destination(to) {
                    return Err(format!(
                        "{key}.transfer_to `{to}` must be a SIP URI (sip:8001@pbx.example.com) or an extension (8001)"
                    ));
                }
            }
        }
        Ok(())
    }

    /// `allow` as networks: an address alone is a network of one.
    pub fn allow_list(&self) -> Result<Vec<ipnet::IpNet>, String> {
        self.allow
            .iter()
            .map(|entry| {
                let entry = entry.trim();
                entry
                    .parse::<ipnet::IpNet>()
                    .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        format!("inbound.allow `{entry}` is not an IP address or a CIDR (10.0.0.0/8)")
                    })
            })
            .collect()
    }
}

/// A number the agent answers, with its words for the agent.
pub(super) struct Answering {
    number: InboundNumber,
    words: Arc<AgentOverrides>,
}

/// Where the dialer takes inbound calls from, and the numbers it answers.
pub struct Inbound {
    numbers: Vec<Answering>,
    calls: mpsc::Receiver<IncomingCall>,
}

impl Inbound {
    pub fn new(numbers: Vec<InboundNumber>, calls: mpsc::Receiver<IncomingCall>) -> Inbound {
        let numbers = numbers
            .into_iter()
            .map(|number| Answering { words: Arc::new(number.agent_words()), number })
            .collect();
        Inbound { numbers, calls }
    }
}

/// Who answers a call to `called` (its index in `numbers`): its own number, else `*`.
fn answering(numbers: &[Answering], called: &str) -> Option<usize> {
    let called = called.trim();
    let at = |n: &str| numbers.iter().position(|a| a.number.number == n);
    at(called).or_else(|| at("*"))
}

impl Dialer {
    /// Takes inbound calls too, on the same lines as the outbound ones.
    pub fn with_inbound(mut self, inbound: Inbound) -> Dialer {
        self.inbound = Some(inbound);
        self
    }
}

/// The inbound side while the dialer runs: its task, and the way to hang its calls up.
pub(super) struct Taking {
    task: JoinHandle<()>,
    hang_up: CancellationToken,
}

impl Taking {
    /// The grace period is over: hang up the calls in progress.
    pub(super) fn hang_up_all(&self) {
        self.hang_up.cancel();
    }
}

impl Drop for Taking {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts taking calls: each gets a line and a task on `tracker`; once `draining`, new
/// calls are turned away with 503 while those in progress end as outbound ones do.
pub(super) fn start(
    inner: &Arc<Inner>,
    inbound: Inbound,
    tracker: &TaskTracker,
    draining: &CancellationToken,
    recordings: Arc<RecordingHealth>,
) -> Taking {
    let hang_up = CancellationToken::new();
    let task = tokio::spawn(take_calls(
        inner.clone(),
        inbound,
        tracker.clone(),
        draining.clone(),
        hang_up.clone(),
        recordings,
    ));
    Taking { task, hang_up }
}

async fn take_calls(
    inner: Arc<Inner>,
    inbound: Inbound,
    tracker: TaskTracker,
    draining: CancellationToken,
    hang_up: CancellationToken,
    recordings: Arc<RecordingHealth>,
) {
    let Inbound { numbers, mut calls } = inbound;
    let numbers = Arc::new(numbers);
    while let Some(call) = calls.recv().await {
        if draining.is_cancelled() {
            refuse(call, 503, "shutting_down");
            continue;
        }
        let Some(index) = answering(&numbers, &call.called) else {
            refuse(call, 404, "unknown_number");
            continue;
        };
        let (inner, numbers, hang_up, recordings) =
            (inner.clone(), numbers.clone(), hang_up.clone(), recordings.clone());
        tracker.spawn(async move {
            let Some(line) = inner.lines.inbound(LINE_WAIT).await else {
                refuse(call, 486, "no_line");
                return;
            };
            take(&inner, call, &numbers[index], &hang_up, &recordings).await;
            drop(line);
        });
    }
}

/// How long a caller waits for a line before 486 Busy Here.
const LINE_WAIT: Duration = Duration::from_secs(1);

/// Turns `call` away with SIP `status`, counted by `reason`.
fn refuse(call: IncomingCall, status: u16, reason: &'static str) {
    crate::metrics::inbound_refused(reason);
    tracing::info!(source = %call.source, called = %call.called, status, reason, "inbound call turned away");
    tokio::spawn(call.answer.refuse(status));
}

/// What the agent knows of a call to `number`. Inbound calls have no task: each gets its
/// own negative id, so that an agent keeping state per call (the LLM's outcome) never
/// mixes two calls. A transfer goes to the number's `transfer_to`, else where `[transfer]`
/// sends the number's `ticket_type`.
fn call_context(inner: &Inner, answering: &Answering) -> TaskContext {
    let number = &answering.number;
    static NEXT: AtomicI64 = AtomicI64::new(-1);
    TaskContext {
        batch_id: NEXT.fetch_sub(1, Ordering::Relaxed),
        ticket_no: String::new(),
        username: number.username.clone(),
        ticket_type: number.ticket_type.clone(),
        ticket_content: number.ticket_content.clone(),
        overrides: answering.words.clone(),
        transfer_to: number.transfer_to.clone().or_else(|| inner.transfer.destination(&number.ticket_type)),
        transfer_ring_timeout: Duration::from_secs(inner.transfer.ring_timeout_secs),
    }
}

/// Answers one call, lets the agent talk, and writes the call down.
async fn take(
    inner: &Arc<Inner>,
    call: IncomingCall,
    answering: &Answering,
    hang_up: &CancellationToken,
    recordings: &RecordingHealth,
) {
    let rang_ms = now_ms();
    let uuid = inner.ids.next(rang_ms);
    let relative =
        recording::relative_path(&uuid, inner.time.local(rang_ms).expect("the clock's time is in range"));
    crate::metrics::inbound_started();
    tracing::info!(uuid = %uuid, source = %call.source, called = %call.called, "inbound call: answering");
    let context = call_context(inner, answering);
    let mut record = CallRecord {
        uuid: uuid.clone(),
        call_type: CallType::Inbound,
        batch_id: None,
        batch_name: None,
        telephone: call.caller.clone(),
        extnum: Some(call.called.clone()),
        callout_ms: rang_ms,
        answered_ms: None,
        ended_ms: rang_ms,
        time_len: 0,
        hangup_cause: String::new(),
        wav_path: String::new(),
        wav_url: String::new(),
        dialogue_json: "[]".into(),
        intent: String::new(),
        turn_latency_ms: None,
    };
    let session = tokio::select! {
        answered = call.answer.answer(&uuid, Some(inner.recordings_dir.join(&relative))) => answered,
        _ = hang_up.cancelled() => Err(HangupCause::system_shutdown()),
    };
    let session = match session {
        Ok(session) => session,
        Err(cause) => {
            // The caller hung up while it rang (or it could not be set up): a missed call.
            crate::metrics::call_ended(&cause, None);
            record.hangup_cause = cause.to_string();
            record.ended_ms = now_ms().max(rang_ms);
            write(inner, record).await;
            return;
        }
    };
    let answered_ms = now_ms();
    let mut dialogue: Vec<Turn> = Vec::new();
    let max_call = Duration::from_secs(inner.settings.max_call_secs);
    let mut call = Handover::untasked(session, inner, &uuid);
    let reason = tokio::select! {
        _ = async {
            let _ = inner.agent.converse(&context, &mut call, &mut dialogue).await;
            // Handed to a person: the call goes on between them until either hangs up.
            if call.transferred.is_some() {
                call.bridged().await;
            }
        } => HangupReason::Completed,
        _ = hang_up.cancelled() => HangupReason::Shutdown,
        _ = tokio::time::sleep(max_call) => HangupReason::MaxDuration,
    };
    let (asked, transferred) = (call.asked, call.transferred.take());
    let end = call.into_session().hang_up(reason).await;
    let intent = super::call::judge(inner.agent.as_ref(), &context, &dialogue).await;
    // A caller the agent tried to hand to a person is theirs to follow up, answered or not.
    let intent = if asked { TRANSFER.to_string() } else { intent };
    if let Some(transferred) = transferred {
        record.extnum = Some(extension_of(&transferred.to).to_string());
    }
    recordings.note(end.recorded);
    let ended_ms = now_ms().max(answered_ms);
    crate::metrics::call_ended(&end.cause, Some(Duration::from_millis((ended_ms - answered_ms) as u64)));
    record.answered_ms = Some(answered_ms);
    record.ended_ms = ended_ms;
    record.time_len = CallRecord::time_len_of(rang_ms, Some(answered_ms), ended_ms);
    record.hangup_cause = end.cause.to_string();
    record.wav_path = if end.recorded { relative } else { String::new() };
    record.dialogue_json = serde_json::to_string(&dialogue).expect("dialogue serializes");
    record.intent = intent;
    record.turn_latency_ms = end.turn_latency.map(|t| t.as_millis() as i64);
    write(inner, record).await;
}

/// How long an inbound call's record is retried while the database is away.
const WRITE_FOR: Duration = Duration::from_secs(60);

/// Writes the record (and its `call.ended` event), retrying while the database is away.
async fn write(inner: &Inner, record: CallRecord) {
    let give_up = tokio::time::Instant::now() + WRITE_FOR;
    let mut backoff = Duration::from_millis(100);
    loop {
        match inner.store.record_call(&record).await {
            Ok(()) => {
                tracing::info!(uuid = %record.uuid, cause = %record.hangup_cause, "inbound call ended");
                return;
            }
            Err(e) if tokio::time::Instant::now() + backoff < give_up => {
                tracing::warn!(uuid = %record.uuid, error = %e, "writing the inbound call's record failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                tracing::error!(uuid = %record.uuid, error = %e, "could not write the inbound call's record");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(n: &str) -> InboundNumber {
        InboundNumber { number: n.into(), ..InboundNumber::default() }
    }

    #[test]
    fn a_call_goes_to_its_own_number_before_the_catch_all() {
        let (_, calls) = mpsc::channel(1);
        let inbound = Inbound::new(vec![number("*"), number("4008001234")], calls);
        let numbers = &inbound.numbers;
        assert_eq!(answering(numbers, "4008001234"), Some(1));
        assert_eq!(answering(numbers, "4008009999"), Some(0));
        assert!(answering(&numbers[1..], "4008009999").is_none());
    }

    #[test]
    fn bad_settings_are_named() {
        let ok = InboundSettings { numbers: vec![number("4008001234")], ..InboundSettings::default() };
        assert_eq!(ok.validate(30), Ok(()));
        let cases = [
            (InboundSettings { reserved_calls: 30, ..ok.clone() }, "inbound.reserved_calls"),
            (InboundSettings { allow: vec!["10.0.0.300".into()], ..ok.clone() }, "inbound.allow"),
            (InboundSettings { numbers: vec![number("")], ..ok.clone() }, "inbound.numbers[0].number"),
            (InboundSettings { numbers: vec![number("1"), number("1")], ..ok.clone() }, "listed twice"),
            (
                InboundSettings {
                    numbers: vec![InboundNumber { transfer_to: Some("a b".into()), ..number("1") }],
                    ..ok.clone()
                },
                "inbound.numbers[0].transfer_to",
            ),
        ];
        for (settings, key) in cases {
            assert!(settings.validate(30).unwrap_err().contains(key), "{key}");
        }
        let allow = InboundSettings { allow: vec!["10.0.0.1".into(), "192.168.0.0/16".into()], ..ok };
        let nets = allow.allow_list().unwrap();
        assert!(nets[0].contains(&"10.0.0.1".parse::<std::net::IpAddr>().unwrap()));
        assert!(nets[1].contains(&"192.168.4.5".parse::<std::net::IpAddr>().unwrap()));
        let transfer = InboundNumber { transfer_to: Some("sip:8001@pbx.example.com".into()), ..number("2") };
        let ext = InboundNumber { transfer_to: Some("8001".into()), ..number("3") };
        assert_eq!(
            InboundSettings { numbers: vec![transfer, ext], ..InboundSettings::default() }.validate(30),
            Ok(())
        );
    }
}
