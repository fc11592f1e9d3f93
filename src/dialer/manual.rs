//! Click-to-call (`03`): the server rings a person's extension and, once they answer,
//! calls the customer and bridges the two: "dial the extension, then transfer that leg
//! to the customer". The call takes one of the dialer's lines, and its record is written
//! when it ends.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Inner;
use crate::domain::{CallType, HangupCause, Phone, now_ms};
use crate::recording;
use crate::store::CallRecord;
use crate::telephony::{DialResult, ExtensionRequest, HangupReason, TransferFailed, extension_of};

/// Starts click-to-call calls on this node's dialer.
#[derive(Clone)]
pub struct ManualCalls {
    inner: Arc<Inner>,
    tracker: TaskTracker,
    /// Cancelled when the dialer's shutdown grace is over: calls still up are hung up.
    ending: CancellationToken,
}

/// How many times writing a click-to-call's record is tried.
const RECORD_TRIES: u32 = 5;

impl ManualCalls {
    pub(super) fn new(inner: Arc<Inner>, tracker: TaskTracker, ending: CancellationToken) -> ManualCalls {
        ManualCalls { inner, tracker, ending }
    }

    /// Rings `extension` (a SIP URI or an extension/number), then `customer`: the call's
    /// uuid, at once; its record (`03`, extnum = the extension) is written when it ends.
    pub fn call(&self, extension: String, customer: Phone) -> String {
        let uuid = self.inner.ids.next(now_ms());
        let (inner, ending) = (self.inner.clone(), self.ending.clone());
        self.tracker.spawn(place(inner, uuid.clone(), extension, customer, ending));
        uuid
    }
}

async fn place(
    inner: Arc<Inner>,
    uuid: String,
    extension: String,
    customer: Phone,
    ending: CancellationToken,
) {
    // A line of the dialer's, as any call.
    let _line = tokio::select! {
        line = inner.lines.outbound() => line,
        _ = ending.cancelled() => return,
    };
    let callout_ms = now_ms();
    let started = inner.time.local(callout_ms).expect("the clock's time is in range");
    let relative = recording::relative_path(&uuid, started);
    let ring_timeout = Duration::from_secs(inner.settings.ring_timeout_secs);
    let request = ExtensionRequest {
        call_id: uuid.clone(),
        to: extension.clone(),
        ring_timeout,
        recording: Some(inner.recordings_dir.join(&relative)),
    };
    let dialled = tokio::select! {
        dialled = inner.carrier.dial_extension(request) => dialled,
        _ = ending.cancelled() => DialResult::Failed(HangupCause::system_shutdown()),
    };
    let (cause, answered_ms, recorded) = match dialled {
        DialResult::Failed(cause) => (cause, None, false),
        DialResult::Answered(mut session) => {
            let max_call = Duration::from_secs(inner.settings.max_call_secs);
            let mut answered_ms = None;
            let mut not_reached = None;
            let reason = tokio::select! {
                biased;
                _ = ending.cancelled() => HangupReason::Shutdown,
                _ = tokio::time::sleep(max_call) => HangupReason::MaxDuration,
                _ = async {
                    match session.transfer(customer.as_str(), ring_timeout).await {
                        Ok(transferred) => {
                            answered_ms = Some(transferred.answered_ms);
                            session.bridged().await;
                        }
                        Err(TransferFailed::NotAnswered(cause)) => not_reached = Some(cause),
                        Err(TransferFailed::CalleeGone(cause)) => not_reached = Some(cause),
                        Err(TransferFailed::Unsupported) => not_reached = Some(HangupCause::temporary_failure()),
                    }
                } => HangupReason::Completed,
            };
            let end = session.hang_up(reason).await;
            // The customer's side decides the record: how their leg failed, if it did.
            let cause = match answered_ms {
                Some(_) => end.cause,
                None => not_reached.unwrap_or(end.cause),
            };
            (cause, answered_ms, end.recorded && answered_ms.is_some())
        }
    };
    let ended_ms = now_ms();
    let record = CallRecord {
        uuid: uuid.clone(),
        call_type: CallType::ManualOutbound,
        batch_id: None,
        batch_name: None,
        telephone: customer.as_str().to_string(),
        extnum: Some(extension_of(&extension).to_string()),
        callout_ms,
        answered_ms,
        ended_ms,
        time_len: CallRecord::time_len_of(callout_ms, answered_ms, ended_ms),
        hangup_cause: cause.to_string(),
        wav_path: if recorded { relative } else { String::new() },
        wav_url: String::new(),
        dialogue_json: "[]".into(),
        intent: String::new(),
        turn_latency_ms: None,
    };
    tracing::info!(uuid = %uuid, extnum = %extension_of(&extension), phone = %customer.masked(), %cause, "click-to-call ended");
    let mut backoff = Duration::from_millis(200);
    for tries in 1..=RECORD_TRIES {
        match inner.store.import_records(std::slice::from_ref(&record)).await {
            Ok(_) => return,
            Err(e) if tries < RECORD_TRIES => {
                tracing::warn!(uuid = %uuid, error = %e, "writing the click-to-call's record failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
            Err(e) => tracing::error!(uuid = %uuid, error = %e, "could not write the click-to-call's record"),
        }
    }
}
