//! One call attempt, from dial to record, and what becomes of its task.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until, timeout_at};

use super::{CallHandles, Inner, Timing};
use crate::agent::{TRANSFER, TaskContext};
use crate::domain::{HangupCause, Phone, now_ms};
use crate::recording::{self, RecordingHealth};
use crate::store::{AnsweredCall, ClaimedCall, FinishedAttempt, NextStep, TransferNote};
use crate::telephony::{
    CallEnd, CallSession, DialRequest, DialResult, HangupReason, Heard, HungUp, KeepAlive, Said,
    TransferFailed, Transferred, extension_of,
};

/// Longest wait for the agent's judgement of an answered call.
const INTENT_TIMEOUT: Duration = Duration::from_secs(10);

/// How an attempt ended, before it is written down.
struct Outcome {
    answered_ms: Option<i64>,
    cause: HangupCause,
    /// Why we hung up, if we did.
    reason: Option<HangupReason>,
    recorded: bool,
    dialogue: Vec<crate::domain::Turn>,
    intent: String,
    turn_latency: Option<Duration>,
    /// The extension of the person the call was handed to.
    extnum: Option<String>,
}

/// Places the call, lets the agent talk, and records the attempt.
pub(super) async fn place(
    inner: &Arc<Inner>,
    task: ClaimedCall,
    mut handles: CallHandles,
    recordings: &RecordingHealth,
) {
    let d = &inner.settings;
    // The call's start is this node's clock at the claim.
    let started = inner.time.local(task.call_started_ms).expect("the clock's time is in range");
    let relative = recording::relative_path(&task.call_uuid, started);
    let outcome = match Phone::parse(&task.phone) {
        Err(_) => Outcome::failed(HangupCause::from_sip(484)),
        Ok(phone) => {
            let request = DialRequest {
                call_id: task.call_uuid.clone(),
                phone,
                ring_timeout: Duration::from_secs(d.ring_timeout_secs),
                recording: Some(inner.recordings_dir.join(&relative)),
                caller_id: inner.campaigns.get(&task.batch_name).caller_id(),
            };
            converse(inner, &task, request, &mut handles).await
        }
    };
    if outcome.answered_ms.is_some() {
        recordings.note(outcome.recorded);
    }
    let wav_path = if outcome.recorded { relative } else { String::new() };
    let ended_ms = now_ms();
    let talk = outcome.answered_ms.map(|a| Duration::from_millis((ended_ms - a).max(0) as u64));
    crate::metrics::call_ended(&outcome.cause, talk);
    finish(inner, &task, outcome, wav_path, ended_ms).await;
}

impl Outcome {
    fn failed(cause: HangupCause) -> Outcome {
        Outcome {
            answered_ms: None,
            cause,
            reason: None,
            recorded: false,
            dialogue: Vec::new(),
            intent: String::new(),
            turn_latency: None,
            extnum: None,
        }
    }
}

async fn converse(
    inner: &Arc<Inner>,
    task: &ClaimedCall,
    request: DialRequest,
    handles: &mut CallHandles,
) -> Outcome {
    let CallHandles { ended, renewed } = handles;
    let early_end = async |ended: &mut watch::Receiver<Option<HangupReason>>| -> HangupReason {
        // The sender goes only when the call is over; then nothing ends it early.
        let reason = ended.wait_for(Option::is_some).await.map(|r| *r);
        match reason {
            Ok(reason) => reason.expect("waited for Some"),
            Err(_) => std::future::pending().await,
        }
    };
    // Every wait below is biased towards the lease's watchdog: a node resuming from a
    // stall sees its lease's age before anything else it would do for the call.
    let session = tokio::select! {
        biased;
        age = lease_watchdog(&inner.timing, renewed, None) => {
            self_fenced(inner, task, age);
            return Outcome { reason: Some(HangupReason::LeaseLost), ..Outcome::failed(HangupCause::lease_lost()) };
        }
        result = inner.carrier.dial(request) => match result {
            DialResult::Answered(session) => session,
            DialResult::Failed(cause) => return Outcome::failed(cause),
        },
        reason = early_end(ended) => {
            return Outcome { reason: Some(reason), ..Outcome::failed(cause_of(reason)) };
        }
    };
    let answered_ms = now_ms();
    let far_end = session.keep_alive();
    let answered = AnsweredCall { batch_id: task.batch_id, lease_gen: task.lease_gen, answered_ms };
    let mut refused = false;
    let mut fenced = tokio::select! {
        biased;
        age = lease_watchdog(&inner.timing, renewed, far_end.as_ref()) => Some(age),
        noted = inner.answers.submit(answered) => {
            match noted {
                Ok(true) => {}
                Ok(false) => {
                    crate::metrics::fenced_write("answer");
                    tracing::warn!(uuid = %task.call_uuid, batch_id = task.batch_id, "answer not noted: the lease is held by another claim; hanging up");
                    refused = true;
                }
                Err(e) => {
                    tracing::warn!(uuid = %task.call_uuid, error = %e, "could not note the answer; the record will still have it");
                }
            }
            None
        }
    };
    // The campaign's own words and transfer destination, before the global ones.
    let campaign = inner.campaigns.get(&task.batch_name);
    let context = TaskContext {
        batch_id: task.batch_id,
        ticket_no: task.ticket_no.clone(),
        username: task.username.clone(),
        ticket_type: task.ticket_type.clone(),
        ticket_content: task.ticket_content.clone(),
        overrides: campaign.agent.clone(),
        transfer_to: campaign.transfer_to.clone().or_else(|| inner.transfer.destination(&task.ticket_type)),
        transfer_ring_timeout: Duration::from_secs(inner.transfer.ring_timeout_secs),
    };
    let mut session = Handover::new(session, inner, task);
    let mut dialogue = Vec::new();
    let max_call = Duration::from_secs(inner.settings.max_call_secs);
    let reason = match fenced {
        Some(_) => HangupReason::LeaseLost,
        None if refused => HangupReason::LeaseLost,
        None => tokio::select! {
            biased;
            age = lease_watchdog(&inner.timing, renewed, far_end.as_ref()) => {
                fenced = Some(age);
                HangupReason::LeaseLost
            }
            _ = async {
                let _ = inner.agent.converse(&context, &mut session, &mut dialogue).await;
                // Handed to a person: the call goes on between them until either hangs up.
                if session.transferred.is_some() {
                    session.bridged().await;
                }
            } => HangupReason::Completed,
            reason = early_end(ended) => reason,
            _ = tokio::time::sleep(max_call) => HangupReason::MaxDuration,
        },
    };
    let Handover { session, asked, transferred, .. } = session;
    let end = session.hang_up(reason).await;
    if let Some(age) = fenced {
        self_fenced(inner, task, age);
    }
    let intent = judge(inner.agent.as_ref(), &context, &dialogue).await;
    // A call the agent tried to hand to a person is theirs to follow up, answered or not.
    let intent = if asked { TRANSFER.to_string() } else { intent };
    let reason = (reason != HangupReason::Completed).then_some(reason);
    Outcome {
        answered_ms: Some(answered_ms),
        cause: end.cause,
        reason,
        recorded: end.recorded,
        dialogue,
        intent,
        turn_latency: end.turn_latency,
        extnum: transferred.map(|t| extension_of(&t.to).to_string()),
    }
}

/// The answered call as the agent has it: a transfer is noted as it happens, and one the
/// person answered writes its `call.transferred` event at once (a task's call: with the
/// task, and only while the call's lease holds; an inbound call: with no task).
pub(super) struct Handover {
    session: Box<dyn CallSession>,
    inner: Arc<Inner>,
    /// The task's claim (batchId, lease generation); `None` for an inbound call.
    lease: Option<(i64, i64)>,
    uuid: String,
    /// The agent tried to hand the call over.
    pub asked: bool,
    pub transferred: Option<Transferred>,
}

impl Handover {
    fn new(session: Box<dyn CallSession>, inner: &Arc<Inner>, task: &ClaimedCall) -> Handover {
        let mut handover = Handover::untasked(session, inner, &task.call_uuid);
        handover.lease = Some((task.batch_id, task.lease_gen));
        handover
    }

    /// A call with no task (inbound).
    pub(super) fn untasked(session: Box<dyn CallSession>, inner: &Arc<Inner>, uuid: &str) -> Handover {
        Handover {
            session,
            inner: inner.clone(),
            lease: None,
            uuid: uuid.to_string(),
            asked: false,
            transferred: None,
        }
    }

    /// The call as the dialer goes on with it: ended by `hang_up`.
    pub(super) fn into_session(self) -> Box<dyn CallSession> {
        self.session
    }

    /// The `call.transferred` event of a transfer the person answered.
    fn note(&self, transferred: &Transferred) -> TransferNote {
        TransferNote {
            claim: self.lease,
            uuid: self.uuid.clone(),
            to: transferred.to.clone(),
            extnum: extension_of(&transferred.to).to_string(),
            answered_ms: transferred.answered_ms,
        }
    }
}

/// Writes a transfer's event (a task's call: while its lease holds).
async fn note_transfer(inner: &Inner, note: TransferNote) {
    match inner.store.note_transfer(&inner.node, &note).await {
        Ok(true) => {}
        Ok(false) => {
            crate::metrics::fenced_write("transfer");
            tracing::warn!(uuid = %note.uuid, "transfer not noted: the lease is held by another claim");
        }
        Err(e) => {
            tracing::warn!(uuid = %note.uuid, error = %e, "could not note the transfer; its webhook is lost")
        }
    }
}

#[async_trait]
impl CallSession for Handover {
    fn keep_alive(&self) -> Option<Arc<dyn KeepAlive>> {
        self.session.keep_alive()
    }

    async fn say(&mut self, text: &str) -> Result<Said, HungUp> {
        self.session.say(text).await
    }

    async fn listen(&mut self, max_wait: Duration) -> Result<Heard, HungUp> {
        self.session.listen(max_wait).await
    }

    async fn transfer(&mut self, to: &str, ring_timeout: Duration) -> Result<Transferred, TransferFailed> {
        self.asked = true;
        let result = self.session.transfer(to, ring_timeout).await;
        crate::metrics::transfer(match &result {
            Ok(_) => "answered",
            Err(TransferFailed::NotAnswered(_)) => "not_answered",
            Err(TransferFailed::Unsupported) => "unsupported",
            Err(TransferFailed::CalleeGone(_)) => "callee_gone",
        });
        if let Ok(transferred) = &result {
            tracing::info!(uuid = %self.uuid, to = extension_of(to), "call handed to a person");
            note_transfer(&self.inner, self.note(transferred)).await;
            self.transferred = Some(transferred.clone());
        }
        result
    }

    async fn bridged(&mut self) -> HungUp {
        self.session.bridged().await
    }

    async fn hang_up(self: Box<Self>, reason: HangupReason) -> CallEnd {
        self.session.hang_up(reason).await
    }
}

/// The outcome of an answered call. It may take the agent a moment (a model's
/// judgement); never forever: past `INTENT_TIMEOUT` the rules decide.
pub(super) async fn judge(
    agent: &dyn crate::agent::Agent,
    context: &TaskContext,
    dialogue: &[crate::domain::Turn],
) -> String {
    let intent = tokio::time::timeout(INTENT_TIMEOUT, agent.intent(context, dialogue)).await;
    intent.unwrap_or_else(|_| crate::agent::intent_by_rules(dialogue).to_string())
}

/// Resolves once the call's lease was last renewed `fence_after` ago or more, with its
/// age then; until then, moves the network's timer on after each renewal. Reads the
/// monotonic clock each time it runs, not only its timer, so that after a stall it is
/// the first thing to fire.
async fn lease_watchdog(
    timing: &Timing,
    renewed: &mut watch::Receiver<Instant>,
    far_end: Option<&Arc<dyn KeepAlive>>,
) -> Duration {
    loop {
        let last = *renewed.borrow_and_update();
        let deadline = last + timing.fence_after;
        if Instant::now() >= deadline {
            return last.elapsed();
        }
        if let Some(far_end) = far_end {
            // Counted from the renewal, not from now: the network's timer never outlasts
            // the lease. A network slow to take it must not hold the fence up.
            let left = (last + timing.far_end).saturating_duration_since(Instant::now());
            if timeout_at(deadline, far_end.keep_alive(left)).await.is_err() {
                continue;
            }
        }
        tokio::select! {
            biased;
            _ = sleep_until(deadline) => {}
            changed = renewed.changed() => {
                if changed.is_err() {
                    // The call's entry is gone: it is ending anyway.
                    std::future::pending::<()>().await;
                }
            }
        }
    }
}

/// Logs and counts a call this node hung up because it could not renew its lease.
fn self_fenced(inner: &Inner, task: &ClaimedCall, age: Duration) {
    crate::metrics::self_fenced(age);
    inner.calls.remove(task.batch_id, task.lease_gen);
    tracing::warn!(
        uuid = %task.call_uuid,
        batch_id = task.batch_id,
        since_renewal_ms = age.as_millis() as u64,
        "lease not renewed in time: hung up before another node may take the call over"
    );
}

/// The cause recorded when we end a call that was still ringing.
fn cause_of(reason: HangupReason) -> HangupCause {
    match reason {
        HangupReason::LeaseLost => HangupCause::lease_lost(),
        HangupReason::Stopped => HangupCause::manager_request(),
        HangupReason::Shutdown => HangupCause::system_shutdown(),
        HangupReason::MaxDuration => HangupCause::max_duration(),
        HangupReason::Completed => HangupCause::normal_clearing(),
    }
}

/// Where the task goes after an attempt.
pub(super) fn next_step(
    cause: &HangupCause,
    answered: bool,
    reason: Option<HangupReason>,
    attempt: i64,
    max_attempts: u32,
    now_ms: i64,
    retry_delay: Duration,
) -> NextStep {
    let attempts_left = attempt < i64::from(max_attempts);
    match reason {
        Some(HangupReason::Stopped) => NextStep::Stop,
        // Cut off by our own shutdown (or a crash): not the callee's doing, so try again soon.
        Some(HangupReason::Shutdown | HangupReason::LeaseLost) if attempts_left => NextStep::RetryAt(now_ms),
        _ if *cause == HangupCause::crash() && attempts_left => NextStep::RetryAt(now_ms),
        _ if answered => NextStep::Complete,
        _ if cause.is_retryable() && attempts_left => {
            NextStep::RetryAt(now_ms + retry_delay.as_millis() as i64)
        }
        _ => NextStep::Complete,
    }
}

async fn finish(inner: &Inner, task: &ClaimedCall, outcome: Outcome, wav_path: String, ended_ms: i64) {
    // The retry policy of the task's campaign.
    let campaign = inner.campaigns.get(&task.batch_name);
    let next = next_step(
        &outcome.cause,
        outcome.answered_ms.is_some(),
        outcome.reason,
        task.attempt,
        campaign.max_attempts,
        ended_ms,
        campaign.retry_delay,
    );
    let attempt = FinishedAttempt {
        batch_id: task.batch_id,
        node: inner.node.clone(),
        lease_gen: task.lease_gen,
        uuid: task.call_uuid.clone(),
        telephone: task.phone.clone(),
        callout_ms: task.call_started_ms,
        answered_ms: outcome.answered_ms,
        ended_ms,
        hangup_cause: outcome.cause,
        wav_path,
        dialogue: outcome.dialogue,
        intent: outcome.intent,
        turn_latency: outcome.turn_latency,
        extnum: outcome.extnum,
        next,
    };
    // The call happened: keep trying to write it down while our lease lasts. After
    // that, another start finds the task as an orphan and records the attempt itself.
    let give_up = tokio::time::Instant::now() + inner.timing.lease;
    let mut backoff = Duration::from_millis(100);
    loop {
        match inner.finishes.submit(attempt.clone()).await {
            Ok(status) => {
                if status.is_none() {
                    crate::metrics::fenced_write("finish");
                    tracing::warn!(
                        uuid = %attempt.uuid,
                        batch_id = task.batch_id,
                        lease_gen = task.lease_gen,
                        "record not written: the lease is held by another claim, whose record stands"
                    );
                }
                let masked = Phone::parse(&task.phone).map(|p| p.masked()).unwrap_or_default();
                tracing::info!(
                    uuid = %attempt.uuid,
                    batch_id = task.batch_id,
                    attempt = task.attempt,
                    phone = %masked,
                    cause = %attempt.hangup_cause,
                    status = status.map(|s| s.label()).unwrap_or("（租约已失效）"),
                    "call ended"
                );
                return;
            }
            Err(e) if tokio::time::Instant::now() + backoff < give_up => {
                tracing::warn!(uuid = %attempt.uuid, error = %e, "writing the call record failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                tracing::error!(uuid = %attempt.uuid, error = %e, "could not write the call record; the lease will bring it back");
                return;
            }
        }
    }
}

/// Records the calls of dead nodes (leases expired) or, at start, of this node's last
/// run, and moves their tasks on. Whether such a call was answered is known from the
/// note `mark_answered` left; it ended at its last heartbeat (or answer, if later).
pub(super) async fn recover_orphans(inner: &Inner, own_too: bool) {
    let now = now_ms();
    let orphans = match inner
        .store
        .claim_orphans(&inner.node, own_too, now, now + inner.timing.lease.as_millis() as i64)
        .await
    {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(error = %e, "looking for orphaned calls failed");
            return;
        }
    };
    for task in orphans {
        // The last sign of life: the answer may have come after the last heartbeat.
        let last_seen = task.heartbeat_ms.max(task.call_answered_ms).unwrap_or(task.call_started_ms);
        let mut ended_ms = last_seen.clamp(task.call_started_ms, now);
        tracing::warn!(uuid = %task.call_uuid, batch_id = task.batch_id, "taking over a call whose node stopped");
        // The recording written until the crash, made playable; it shows how long the call
        // was still alive (after its last heartbeat, too).
        let mut wav_path = String::new();
        if let Some(answered_ms) = task.call_answered_ms
            && let Some((relative, length)) = recover_recording(inner, &task).await
        {
            wav_path = relative;
            ended_ms = ended_ms.max(answered_ms + length.as_millis() as i64).min(now);
        }
        let outcome = Outcome {
            answered_ms: task.call_answered_ms,
            recorded: !wav_path.is_empty(),
            ..Outcome::failed(HangupCause::crash())
        };
        finish(inner, &task, outcome, wav_path, ended_ms).await;
    }
}

/// The recording a crashed call left unfinished, given its name and a playable header:
/// its path under `recordings.dir` and its length.
async fn recover_recording(inner: &Inner, task: &ClaimedCall) -> Option<(String, Duration)> {
    let started = inner.time.local(task.call_started_ms).ok()?;
    let relative = recording::relative_path(&task.call_uuid, started);
    let path = inner.recordings_dir.join(&relative);
    match tokio::task::spawn_blocking(move || recording::recover(&path)).await {
        Ok(Ok(Some(length))) => Some((relative, length)),
        Ok(Ok(None)) => None,
        Ok(Err(e)) => {
            tracing::warn!(uuid = %task.call_uuid, error = %e, "could not recover the crashed call's recording");
            None
        }
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DELAY: Duration = Duration::from_secs(600);

    fn step(cause: HangupCause, answered: bool, reason: Option<HangupReason>, attempt: i64) -> NextStep {
        next_step(&cause, answered, reason, attempt, 3, 1_000, DELAY)
    }

    #[test]
    fn an_answered_call_completes_the_task() {
        assert_eq!(step(HangupCause::normal_clearing(), true, None, 1), NextStep::Complete);
    }

    #[test]
    fn busy_no_answer_and_gateway_failures_are_retried_until_the_last_attempt() {
        for cause in [HangupCause::user_busy(), HangupCause::no_answer(), HangupCause::temporary_failure()] {
            assert_eq!(step(cause.clone(), false, None, 1), NextStep::RetryAt(601_000));
            assert_eq!(step(cause.clone(), false, None, 2), NextStep::RetryAt(601_000));
            assert_eq!(step(cause, false, None, 3), NextStep::Complete);
        }
    }

    #[test]
    fn an_unallocated_number_is_never_retried() {
        assert_eq!(step(HangupCause::unallocated_number(), false, None, 1), NextStep::Complete);
    }

    #[test]
    fn a_stop_wins_over_everything() {
        assert_eq!(
            step(HangupCause::manager_request(), true, Some(HangupReason::Stopped), 1),
            NextStep::Stop
        );
    }

    #[test]
    fn calls_cut_by_shutdown_or_crash_go_back_at_once_while_attempts_remain() {
        let shutdown = Some(HangupReason::Shutdown);
        assert_eq!(step(HangupCause::system_shutdown(), true, shutdown, 1), NextStep::RetryAt(1_000));
        assert_eq!(step(HangupCause::system_shutdown(), false, shutdown, 3), NextStep::Complete);
        assert_eq!(step(HangupCause::crash(), false, None, 2), NextStep::RetryAt(1_000));
        assert_eq!(step(HangupCause::crash(), true, None, 3), NextStep::Complete);
    }
}
