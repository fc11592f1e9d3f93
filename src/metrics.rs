//! Prometheus metrics: one process-wide recorder, rendered by `GET /metrics`.
//! Names are the contract of dashboards and alerts; keep them stable.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::domain::HangupCause;

/// Installs the recorder once per process (tests start many servers in one process).
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("_seconds".into()),
                    &[
                        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                        60.0, 300.0,
                    ],
                )
                .expect("bucket list is not empty")
                // A frame is due every 20 ms: its lateness matters from a tenth of a
                // millisecond, and 5 ms is already a late frame.
                .set_buckets_for_metric(
                    Matcher::Full("callcenter_rtp_send_lateness_seconds".into()),
                    &[
                        0.0001, 0.00025, 0.0005, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02,
                        0.05, 0.1, 0.2, 0.5,
                    ],
                )
                .expect("bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (an embedding program): then ours
            // still renders what it is given directly, which is nothing; say so.
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
            }
            describe();
            // Histogram samples pile up until drained: render() drains them on a scrape,
            // and this drains them when nobody scrapes (else memory grows with traffic).
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(std::time::Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                })
                .expect("a thread starts");
            handle
        })
        .clone()
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!("http_requests_total", "HTTP requests by route, method and envelope code");
    describe_histogram!("http_request_duration_seconds", Unit::Seconds, "HTTP request latency by route");
    describe_gauge!("callcenter_calls_in_progress", "Calls in progress on this node");
    describe_counter!("callcenter_calls_started_total", "Call attempts started on this node");
    describe_counter!("callcenter_call_attempts_ended_total", "Call attempts ended, by hangup class");
    describe_gauge!("callcenter_answer_rate", "Share of ended attempts that were answered, since start");
    describe_histogram!("callcenter_call_talk_seconds", Unit::Seconds, "Talk time of answered calls");
    describe_histogram!(
        "callcenter_dialer_pacing_delay_seconds",
        Unit::Seconds,
        "Time a call waited for a free line and a pacing token"
    );
    describe_counter!(
        "callcenter_recording_failures_total",
        "Answered calls whose recording could not be written"
    );
    describe_counter!(
        "callcenter_recording_chunks_dropped_total",
        "Chunks of recorded audio (about 200 ms of a call) lost because the disk could not keep up"
    );
    describe_histogram!(
        "callcenter_turn_latency_seconds",
        Unit::Seconds,
        "From the end of the callee's speech to the agent's first audio packet, by part: end_of_turn \
         (the quiet that ends a turn), recognition, agent (the model's first sentence, or the next \
         scripted line), synthesis, sending; and total"
    );
    describe_counter!(
        "callcenter_asr_failures_total",
        "Callee turns the recogniser could not hear (each stored as [语音 N秒]), by engine"
    );
    describe_counter!(
        "callcenter_fenced_writes_total",
        "Writes about a call refused because its lease is held by another claim, by write"
    );
    describe_counter!(
        "callcenter_transfers_total",
        "Calls the agent tried to hand to a person, by outcome: answered, not_answered (busy, no \
         answer in transfer.ring_timeout_secs, failed), unsupported, callee_gone"
    );
    describe_counter!(
        "callcenter_self_fenced_calls_total",
        "Calls hung up by this node because it could not renew their lease in time"
    );
    describe_histogram!(
        "callcenter_self_fenced_lease_age_seconds",
        Unit::Seconds,
        "Time since the last lease renewal when this node hung a call up for it"
    );
    describe_histogram!(
        "callcenter_rtp_send_lateness_seconds",
        Unit::Seconds,
        "How late each RTP frame of a SIP call went out, against its slot on the call's 20 ms grid"
    );
    describe_counter!(
        "callcenter_rtp_frames_skipped_total",
        "RTP frames never made because their call's sender was more than 200 ms behind its grid"
    );
    describe_counter!(
        "callcenter_inbound_calls_total",
        "Inbound calls taken (given a line and answered) on this node"
    );
    describe_counter!(
        "callcenter_inbound_refused_total",
        "Inbound calls turned away, by reason: no_line (486), unknown_number (404), not_allowed (403), shutting_down (503)"
    );
    describe_gauge!("callcenter_tasks_waiting", "Tasks waiting to be called (待呼叫 and 等待重呼)");
    describe_gauge!("callcenter_webhook_backlog", "Webhook events not yet delivered");
    describe_gauge!("callcenter_db_pool_connections", "Database connections open, by state");
}

pub fn http_request(route: &str, method: &str, code: &str, elapsed: Duration) {
    counter!("http_requests_total", "route" => route.to_string(), "method" => method.to_string(), "code" => code.to_string())
        .increment(1);
    histogram!("http_request_duration_seconds", "route" => route.to_string()).record(elapsed.as_secs_f64());
}

pub fn call_started(pacing_delay: Duration) {
    counter!("callcenter_calls_started_total").increment(1);
    gauge!("callcenter_calls_in_progress").increment(1.0);
    histogram!("callcenter_dialer_pacing_delay_seconds").record(pacing_delay.as_secs_f64());
}

/// An inbound call took a line: it is in progress until its `call_ended`.
pub fn inbound_started() {
    counter!("callcenter_inbound_calls_total").increment(1);
    gauge!("callcenter_calls_in_progress").increment(1.0);
}

/// An inbound call turned away, and why (`no_line`, `unknown_number`, `not_allowed`,
/// `shutting_down`).
pub fn inbound_refused(reason: &'static str) {
    counter!("callcenter_inbound_refused_total", "reason" => reason).increment(1);
}

/// An attempt ended; `talk` is its talk time when it was answered.
pub fn call_ended(cause: &HangupCause, talk: Option<Duration>) {
    static ENDED: AtomicU64 = AtomicU64::new(0);
    static ANSWERED: AtomicU64 = AtomicU64::new(0);
    gauge!("callcenter_calls_in_progress").decrement(1.0);
    let class = crate::domain::outcome_class(&cause.name, talk.is_some());
    counter!("callcenter_call_attempts_ended_total", "class" => class).increment(1);
    let ended = ENDED.fetch_add(1, Ordering::Relaxed) + 1;
    let answered =
        ANSWERED.fetch_add(u64::from(talk.is_some()), Ordering::Relaxed) + u64::from(talk.is_some());
    gauge!("callcenter_answer_rate").set(answered as f64 / ended as f64);
    if let Some(talk) = talk {
        histogram!("callcenter_call_talk_seconds").record(talk.as_secs_f64());
    }
}

/// One part of the time from the end of the callee's speech to the agent's answer going out.
pub fn turn_latency(part: &'static str, took: Duration) {
    histogram!("callcenter_turn_latency_seconds", "part" => part).record(took.as_secs_f64());
}

pub fn asr_failed(engine: &'static str) {
    counter!("callcenter_asr_failures_total", "engine" => engine).increment(1);
}

pub fn recording_failed() {
    counter!("callcenter_recording_failures_total").increment(1);
}

pub fn recording_audio_dropped() {
    counter!("callcenter_recording_chunks_dropped_total").increment(1);
}

/// The lateness histogram of RTP frames, taken once per stream (one lookup, not one a frame).
pub fn rtp_send_lateness() -> metrics::Histogram {
    histogram!("callcenter_rtp_send_lateness_seconds")
}

pub fn rtp_frames_skipped(frames: u64) {
    counter!("callcenter_rtp_frames_skipped_total").increment(frames);
}

pub fn tasks_waiting(n: i64) {
    gauge!("callcenter_tasks_waiting").set(n as f64);
}

pub fn webhook_backlog(n: i64) {
    gauge!("callcenter_webhook_backlog").set(n as f64);
}

pub fn db_pool(open: u32, idle: u32) {
    gauge!("callcenter_db_pool_connections", "state" => "open").set(f64::from(open));
    gauge!("callcenter_db_pool_connections", "state" => "idle").set(f64::from(idle));
}

/// A write about a call (`answer`, `finish`, `renew`) refused: another claim holds its lease.
pub fn fenced_write(write: &'static str) {
    counter!("callcenter_fenced_writes_total", "write" => write).increment(1);
}

/// A transfer to a person, and how it went.
pub fn transfer(outcome: &'static str) {
    counter!("callcenter_transfers_total", "outcome" => outcome).increment(1);
}

/// A call hung up because its lease was last renewed `age` ago.
pub fn self_fenced(age: Duration) {
    counter!("callcenter_self_fenced_calls_total").increment(1);
    histogram!("callcenter_self_fenced_lease_age_seconds").record(age.as_secs_f64());
}
