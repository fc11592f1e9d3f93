//! Completion webhooks: events written to the outbox in the same transaction as the
//! change they tell of are POSTed to `webhook.url`, signed, at least once, with
//! exponential backoff and jitter, until a receiver answers 2xx or `max_age_secs` passes.
//! Several nodes may deliver from one database: each event is leased to one of them.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::domain::{ApiTime, now_ms};
use crate::store::{EventOutcome, OutboxEvent, Store};
use crate::views::{RecordRow, TaskRowJson};

/// Completion webhooks. Empty `url`: none are sent (and no events are kept).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookSettings {
    pub url: String,
    /// HMAC-SHA256 key of `X-Callcenter-Signature`.
    pub secret: String,
    /// Give an event up when it could not be delivered for this long.
    pub max_age_secs: u64,
    /// How long one delivery may take.
    pub timeout_secs: u64,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings { url: String::new(), secret: String::new(), max_age_secs: 86_400, timeout_secs: 10 }
    }
}

impl std::fmt::Debug for WebhookSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSettings")
            .field("url", &self.url)
            .field("secret", &if self.secret.is_empty() { "" } else { "(hidden)" })
            .field("max_age_secs", &self.max_age_secs)
            .field("timeout_secs", &self.timeout_secs)
            .finish()
    }
}

/// How long a node holds an event it is delivering before another may take it.
const LEASE: Duration = Duration::from_secs(60);
/// Events delivered at once.
const BATCH: u32 = 32;
/// Polling fallback for events written by other nodes.
const POLL: Duration = Duration::from_secs(1);
/// Backoff: 1 s, 2 s, 4 s … up to an hour, each with jitter.
const FIRST_RETRY: Duration = Duration::from_secs(1);
const LAST_RETRY: Duration = Duration::from_secs(3600);

/// What a receiver gets: the task and the attempt's record exactly as the list
/// endpoints show them.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub event_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    /// When the change happened, `yyyy-MM-dd HH:mm:ss`.
    pub occurred_at: String,
    /// The task, as calltask/list shows it; null for a call with no task (an inbound call).
    pub task: Option<TaskRowJson>,
    /// The attempt's record for `call.ended`; null for `task.ended`.
    pub record: Option<RecordRow>,
    /// For `call.ended`, the call's median voice-to-voice latency in milliseconds (from
    /// the callee's last word to the first audio of the agent's answer); null when no
    /// answer was measured, and for `task.ended`. Beside the record, which is exactly
    /// records/list's row.
    pub turn_latency_ms: Option<i64>,
    /// For `call.transferred` only: the call's `uuid`, where it went (`to`, and its
    /// `extnum`) and when the person answered (`answeredTime`, `yyyy-MM-dd HH:mm:ss`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transfer: Option<serde_json::Value>,
}

pub struct Deliverer {
    store: Arc<dyn Store>,
    settings: WebhookSettings,
    client: reqwest::Client,
    time: ApiTime,
    /// `server.public_url`, for the record's `wavFileUrl`.
    public_url: String,
}

impl Deliverer {
    pub fn new(
        store: Arc<dyn Store>,
        settings: WebhookSettings,
        time: ApiTime,
        public_url: String,
    ) -> anyhow::Result<Deliverer> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(settings.timeout_secs))
            .user_agent(concat!("callcenter/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Deliverer { store, settings, client, time, public_url })
    }

    /// Delivers until `shutdown`; `written` wakes it when this node wrote events.
    pub async fn run(self, written: Arc<Notify>, shutdown: CancellationToken) {
        loop {
            let now = now_ms();
            let events = match self.store.claim_events(now, now + LEASE.as_millis() as i64, BATCH).await {
                Ok(events) => events,
                Err(e) => {
                    tracing::warn!(error = %e, "webhook: reading the outbox failed");
                    Vec::new()
                }
            };
            if events.is_empty() {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = written.notified() => {}
                    _ = tokio::time::sleep(POLL) => {}
                }
                continue;
            }
            futures::future::join_all(events.into_iter().map(|e| self.deliver(e))).await;
        }
    }

    async fn deliver(&self, event: OutboxEvent) {
        let max_age = Duration::from_secs(self.settings.max_age_secs);
        let age = || Duration::from_millis((now_ms() - event.created_ms).max(0) as u64);
        // Past max_age an event is not tried again: a receiver that comes back later
        // must not get it then.
        let result = if age() >= max_age {
            Err("older than webhook.max_age_secs".to_string())
        } else {
            self.attempt(&event).await
        };
        let outcome = match result {
            Ok(()) => EventOutcome::Delivered,
            Err(error) => {
                if age() >= max_age {
                    tracing::error!(event_id = %event.event_id, attempts = event.attempts + 1, %error,
                        "webhook: giving the event up, it could not be delivered in time");
                    EventOutcome::Expired
                } else {
                    let wait = backoff(event.attempts);
                    tracing::warn!(event_id = %event.event_id, attempts = event.attempts + 1, %error,
                        retry_in = ?wait, "webhook: delivery failed");
                    EventOutcome::RetryAt { next_attempt_ms: now_ms() + wait.as_millis() as i64, error }
                }
            }
        };
        if let Err(e) = self.store.settle_event(event.id, &outcome).await {
            // The lease runs out and the event is delivered again: at least once.
            tracing::warn!(event_id = %event.event_id, error = %e, "webhook: could not settle the event");
        }
    }

    async fn attempt(&self, event: &OutboxEvent) -> Result<(), String> {
        let (record, turn_latency_ms) = match &event.record_uuid {
            Some(uuid) => {
                let record = self.store.record(uuid).await.map_err(|e| e.to_string())?;
                let record = record.ok_or_else(|| format!("record {uuid} not found"))?;
                let latency = record.turn_latency_ms;
                (
                    Some(RecordRow::new(record, &self.time, &self.public_url).map_err(|e| e.to_string())?),
                    latency,
                )
            }
            None => (None, None),
        };
        let body = serde_json::to_vec(&Event {
            event_id: event.event_id.clone(),
            event_type: event.event_type.clone(),
            occurred_at: self.time.format(event.created_ms).map_err(|e| e.to_string())?,
            task: event.task.clone().map(TaskRowJson::from),
            record,
            turn_latency_ms,
            transfer: event.detail.as_ref().map(|d| self.transfer_view(d)).transpose()?,
        })
        .expect("event serializes");
        let timestamp = (now_ms() / 1000).to_string();
        let res = self
            .client
            .post(&self.settings.url)
            .header("content-type", "application/json")
            .header("x-callcenter-event-id", &event.event_id)
            .header("x-callcenter-event", &event.event_type)
            .header("x-callcenter-timestamp", &timestamp)
            .header("x-callcenter-signature", signature(&self.settings.secret, &timestamp, &body))
            .body(body)
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        if res.status().is_success() {
            Ok(())
        } else {
            Err(format!("receiver answered HTTP {}", res.status()))
        }
    }
}

impl Deliverer {
    /// A transfer as stored, with its answer time as the records show times.
    fn transfer_view(&self, detail: &serde_json::Value) -> Result<serde_json::Value, String> {
        let mut view = detail.clone();
        if let Some(ms) = detail["answeredMs"].as_i64() {
            let at = self.time.format(ms).map_err(|e| e.to_string())?;
            let fields = view.as_object_mut().ok_or("a transfer's detail is not an object")?;
            fields.remove("answeredMs");
            fields.insert("answeredTime".into(), at.into());
        }
        Ok(view)
    }
}

/// `sha256=<hex of HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub fn signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// The wait before the next try after `attempts` failures: doubling, capped, with
/// "equal jitter" (between half and all of it), so receivers coming back are not
/// hit by every node at once.
fn backoff(attempts: i64) -> Duration {
    let full = FIRST_RETRY.saturating_mul(1u32 << attempts.clamp(0, 20)).min(LAST_RETRY);
    full.mul_f64(rand::rng().random_range(0.5..=1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Computed independently: printf '1700000000.{}' | openssl dgst -sha256 -hmac s3cret
        assert_eq!(
            signature("s3cret", "1700000000", b"{}"),
            "sha256=97926816e98fbb41ccb1673225ff29a2f35369099990e1b1561651e7bd097ebf"
        );
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        for attempts in 0..30 {
            let full = FIRST_RETRY.saturating_mul(1 << attempts.min(20)).min(LAST_RETRY);
            let wait = backoff(attempts);
            assert!(wait >= full / 2 && wait <= full, "{attempts}: {wait:?}");
        }
        assert!(backoff(40) <= LAST_RETRY);
    }
}
