//! The worker that turns tasks into calls, inside the server process.
//!
//! It claims due tasks with a lease (so a crashed node's calls are found again), paces
//! them (at most `max_concurrent_calls` at once, `calls_per_second` started, only within
//! `calling_hours`), places each through the `Carrier`, lets the `Agent` talk, and writes
//! the attempt's record and the task's next state in one transaction.

mod call;
mod campaigns;
mod group_commit;
mod hours;
mod inbound;
mod lines;
mod manual;
mod settings;
mod transfer;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::{Quota, RateLimiter};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::agent::Agent;
use crate::domain::{ApiTime, CallIdGenerator, now_ms};
use crate::recording::RecordingHealth;
use crate::store::{ClaimRules, ClaimedCall, Store};
use crate::telephony::{Carrier, HangupReason};
pub use campaigns::CampaignSettings;
use campaigns::{CampaignPermit, Campaigns};
use group_commit::{Answers, Finishes, GroupCommit};
pub use hours::CallingHours;
pub use inbound::{Inbound, InboundNumber, InboundSettings};
use lines::{Line, Lines};
pub use manual::ManualCalls;
pub use settings::{DialerSettings, NodeId};
pub use transfer::TransferSettings;

/// The shortest lease: how long a claim holds without a heartbeat; another node takes the
/// call over after.
const MIN_LEASE: Duration = Duration::from_secs(30);
/// How often leases are renewed and expired ones looked for.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);
/// How far apart two nodes' clocks may be (NTP keeps them within milliseconds).
const CLOCK_MARGIN: Duration = Duration::from_secs(5);

/// The lease and the times that follow from it, derived here only, from the carrier's
/// far-end timer (`Carrier::far_end_expiry`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timing {
    /// How long a claim holds without a heartbeat. 30 s, or longer when the network's own
    /// timer for an answered call is (SIP session timers cannot be shorter than 90 s): a
    /// node that stalls or dies leaves its calls up for `far_end` after its last renewal,
    /// and no node, even one whose clock runs CLOCK_MARGIN ahead, may take them over
    /// before that. A longer lease means a dead node's calls are taken over later.
    pub lease: Duration,
    /// A call whose lease was last renewed this long ago (by this node's monotonic clock,
    /// from when the renewal was sent) is hung up by this node: two renewals may fail in
    /// a row, and the hang-up still has lease − fence_after − CLOCK_MARGIN to reach the
    /// network before another node, whose clock may run CLOCK_MARGIN ahead, can take the
    /// task over.
    /// 30 − 2 × 5 − 5 = 15 s with the shortest lease.
    pub fence_after: Duration,
    /// The network's own timer for an answered call (sim, FreeSWITCH `sched_api`, SIP
    /// session timer), moved on with every renewal; longer than `fence_after` so that a
    /// node alive hangs up its calls itself first.
    pub far_end: Duration,
}

impl Timing {
    pub(crate) fn new(far_end: Duration) -> Timing {
        let lease = MIN_LEASE.max(far_end + CLOCK_MARGIN);
        let fence_after = lease.saturating_sub(UPKEEP_EVERY * 2 + CLOCK_MARGIN);
        let timing = Timing { lease, fence_after, far_end };
        assert!(
            fence_after >= UPKEEP_EVERY * 2 && fence_after < far_end && far_end + CLOCK_MARGIN <= lease,
            "inconsistent lease timing {timing:?}"
        );
        timing
    }
}
/// How often stop requests made on other nodes are looked for.
const STOP_POLL_EVERY: Duration = Duration::from_millis(250);
/// Longest sleep while idle: a fallback for work created by another process.
const IDLE_POLL: Duration = Duration::from_secs(2);
/// Most tasks claimed in one transaction.
const CLAIM_BATCH: usize = 64;
/// A claim takes no more tasks than `calls_per_second` starts in this long: their starts
/// are paced after the claim, so a record's calloutTime precedes its dial by at most this.
const CLAIM_SPAN: Duration = Duration::from_millis(5);

/// How the API nudges the dialer in this process.
#[derive(Clone, Default)]
pub struct DialerSignals {
    /// Tasks were created: look for due work now.
    pub wake: Arc<Notify>,
    /// Tasks with calls in progress were stopped: hang them up now.
    pub stop_check: Arc<Notify>,
    /// Whether the dialer is running (for /readyz).
    pub running: Arc<AtomicBool>,
    /// Whether answered calls' recordings are being written (for /readyz).
    pub recordings: Arc<RecordingHealth>,
    /// Click-to-call, when this server dials.
    pub manual: Arc<std::sync::OnceLock<ManualCalls>>,
}

/// The calls in progress on this node, each with the channel that ends it early and its
/// lease: the claim's generation and when it was last renewed.
#[derive(Clone, Default)]
struct Calls(Arc<Mutex<HashMap<i64, CallEntry>>>);

struct CallEntry {
    end: watch::Sender<Option<HangupReason>>,
    lease_gen: i64,
    renewed: watch::Sender<Instant>,
}

/// What a call's task holds of its entry in `Calls`.
pub(super) struct CallHandles {
    pub ended: watch::Receiver<Option<HangupReason>>,
    /// When the lease was last renewed (sent), by the monotonic clock.
    pub renewed: watch::Receiver<Instant>,
}

impl Calls {
    fn add(&self, batch_id: i64, lease_gen: i64, claimed_at: Instant) -> CallHandles {
        let (end, ended) = watch::channel(None);
        let (renewed_tx, renewed) = watch::channel(claimed_at);
        self.0
            .lock()
            .expect("calls lock")
            .insert(batch_id, CallEntry { end, lease_gen, renewed: renewed_tx });
        CallHandles { ended, renewed }
    }

    /// The leases of the calls this node still holds, for renewal; a call past
    /// `fence_after` is being hung up and is not renewed.
    fn leases(&self, now: Instant, fence_after: Duration) -> Vec<(i64, i64)> {
        let calls = self.0.lock().expect("calls lock");
        calls
            .iter()
            .filter(|(_, c)| now.duration_since(*c.renewed.borrow()) < fence_after)
            .map(|(id, c)| (*id, c.lease_gen))
            .collect()
    }

    /// Notes renewals sent at `sent_at` that the store accepted.
    fn renewed(&self, batch_ids: &[i64], sent_at: Instant) {
        let calls = self.0.lock().expect("calls lock");
        for c in batch_ids.iter().filter_map(|id| calls.get(id)) {
            c.renewed.send_if_modified(|at| (sent_at > *at).then(|| *at = sent_at).is_some());
        }
    }

    /// Forgets the call of this claim (the same task may have been claimed again since).
    fn remove(&self, batch_id: i64, lease_gen: i64) {
        let mut calls = self.0.lock().expect("calls lock");
        if calls.get(&batch_id).is_some_and(|c| c.lease_gen == lease_gen) {
            calls.remove(&batch_id);
        }
    }

    fn ids(&self) -> Vec<i64> {
        self.0.lock().expect("calls lock").keys().copied().collect()
    }

    fn is_empty(&self) -> bool {
        self.0.lock().expect("calls lock").is_empty()
    }

    fn end(&self, batch_id: i64, reason: HangupReason) {
        if let Some(c) = self.0.lock().expect("calls lock").get(&batch_id) {
            c.end.send_if_modified(|r| r.is_none() && r.replace(reason).is_none());
        }
    }

    fn end_all(&self, reason: HangupReason) {
        for id in self.ids() {
            self.end(id, reason);
        }
    }
}

pub struct Dialer {
    inner: Arc<Inner>,
    inbound: Option<Inbound>,
    /// The calls under way, claimed and click-to-call.
    tracker: TaskTracker,
    /// Cancelled when the shutdown grace is over: click-to-calls still up hang up.
    ending: CancellationToken,
}

/// What every call task shares.
struct Inner {
    store: Arc<dyn Store>,
    carrier: Arc<dyn Carrier>,
    agent: Arc<dyn Agent>,
    settings: DialerSettings,
    /// `recordings.dir`: where answered calls' recordings go.
    recordings_dir: PathBuf,
    time: ApiTime,
    ids: CallIdGenerator,
    calls: Calls,
    /// Each campaign's settings, and its share of each claim.
    campaigns: Campaigns,
    /// The lines outbound calls (claimed and click-to-call) and inbound ones share.
    lines: Lines,
    node: String,
    timing: Timing,
    /// Where calls are handed to a person (`[transfer]`).
    transfer: TransferSettings,
    /// Answers noted and attempts recorded, many calls to a transaction.
    answers: GroupCommit<Answers>,
    finishes: GroupCommit<Finishes>,
}

impl Dialer {
    pub fn new(
        store: Arc<dyn Store>,
        carrier: Arc<dyn Carrier>,
        agent: Arc<dyn Agent>,
        settings: DialerSettings,
        reserved_for_inbound: u32,
        time: ApiTime,
        recordings_dir: PathBuf,
    ) -> Dialer {
        let node = settings.node_id.0.clone();
        let timing = Timing::new(carrier.far_end_expiry());
        Dialer {
            inner: Arc::new(Inner {
                store: store.clone(),
                carrier,
                agent,
                ids: CallIdGenerator::new(&node, time.0),
                campaigns: Campaigns::new(campaigns::Defaults {
                    calling_hours: settings.calling_hours,
                    time,
                    max_attempts: settings.max_attempts,
                    retry_delay_secs: settings.retry_delay_secs,
                }),
                time,
                lines: Lines::new(settings.max_concurrent_calls, reserved_for_inbound),
                settings,
                recordings_dir,
                calls: Calls::default(),
                transfer: TransferSettings::default(),
                answers: GroupCommit::spawn(Answers { store: store.clone(), node: node.clone() }),
                finishes: GroupCommit::spawn(Finishes(store.clone())),
                node,
                timing,
            }),
            inbound: None,
            tracker: TaskTracker::new(),
            ending: CancellationToken::new(),
        }
    }

    /// Click-to-call on this dialer: calls may be placed from now on; they take its lines
    /// and end with its shutdown.
    pub fn manual_calls(&self) -> ManualCalls {
        ManualCalls::new(self.inner.clone(), self.tracker.clone(), self.ending.clone())
    }

    /// Hands calls to people as `[transfer]` says (by default nowhere: the callee is
    /// told someone will call back).
    pub fn with_transfer(mut self, transfer: TransferSettings) -> Dialer {
        Arc::get_mut(&mut self.inner).expect("set before the dialer runs").transfer = transfer;
        self
    }

    /// Dials until `shutdown` is cancelled, then lets calls in progress end for up to
    /// `shutdown_grace_secs`, hangs up the rest and records them.
    pub async fn run(self, signals: DialerSignals, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Dialer { inner, inbound, tracker, ending } = self;
        let (first, last) = inner.ids.range_of_second(now_ms());
        if let Some(issued) = inner.store.max_call_uuid_between(&first, &last).await? {
            inner.ids.resume_after(&issued);
        }
        // Calls this node was making when it last died are over: record them first.
        call::recover_orphans(&inner, true).await;

        signals.running.store(true, Ordering::Relaxed);
        let taking =
            inbound.map(|i| inbound::start(&inner, i, &tracker, &shutdown, signals.recordings.clone()));
        let upkeep_stop = CancellationToken::new();
        let upkeep = tokio::spawn(upkeep(inner.clone(), signals.clone(), upkeep_stop.clone()));
        claim_loop(&inner, &tracker, &signals, &shutdown).await;
        signals.running.store(false, Ordering::Relaxed);

        let grace = Duration::from_secs(inner.settings.shutdown_grace_secs);
        if !inner.calls.is_empty() {
            tracing::info!(calls = inner.calls.ids().len(), ?grace, "waiting for calls in progress to end");
        }
        tracker.close();
        if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
            tracing::warn!(calls = inner.calls.ids().len(), "grace period over: hanging up the calls left");
            inner.calls.end_all(HangupReason::Shutdown);
            if let Some(taking) = &taking {
                taking.hang_up_all();
            }
            ending.cancel();
            tracker.wait().await;
        }
        upkeep_stop.cancel();
        let _ = upkeep.await;
        Ok(())
    }
}

/// Claims due tasks as concurrency, pace and calling hours allow, and starts their calls.
async fn claim_loop(
    inner: &Arc<Inner>,
    tracker: &TaskTracker,
    signals: &DialerSignals,
    shutdown: &CancellationToken,
) {
    let d = &inner.settings;
    let cps = NonZeroU32::new(d.calls_per_second).unwrap_or(NonZeroU32::MIN);
    // No burst: starts are spaced 1/cps apart, so no one-second window (a carrier's CPS
    // limit, or a calendar second in the records) sees more than `calls_per_second`.
    // Quota::per_second's default burst of `cps` would let almost twice as many through.
    let pace = RateLimiter::direct(Quota::per_second(cps).allow_burst(NonZeroU32::MIN));
    // With no burst, tokens never pile up, so batching by "tokens ready now" would claim
    // one task per transaction. Instead a claim takes what `CLAIM_SPAN` of pace allows (1
    // at 5 calls a second, 64 at 100,000) and each start after the first waits its token.
    let batch = ((cps.get() as f64 * CLAIM_SPAN.as_secs_f64()) as usize).clamp(1, CLAIM_BATCH);
    // Calls stamped (calloutTime, uuid) in one calendar second: a batch claimed late in a
    // second would otherwise let a record's second hold a few more than `cps`.
    let mut stamped: (i64, u32) = (0, 0);
    // Whether the log says that every campaign is outside its calling hours.
    let mut said_closed = false;
    loop {
        let waiting_since = tokio::time::Instant::now();
        let first = tokio::select! {
            _ = shutdown.cancelled() => return,
            line = inner.lines.outbound() => line,
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = pace.until_ready() => {}
        }
        let pacing_delay = waiting_since.elapsed();
        let mut now = now_ms();
        if stamped.0 == now.div_euclid(1000) && stamped.1 >= cps.get() {
            let next_second = Duration::from_millis((1000 - now.rem_euclid(1000)) as u64);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(next_second) => {}
            }
            now = now_ms();
        }
        if stamped.0 != now.div_euclid(1000) {
            stamped = (now.div_euclid(1000), 0);
        }
        let room = cps.get().saturating_sub(stamped.1).max(1) as usize;
        // Take as many more slots as are free right now, to claim in one transaction.
        let mut permits = vec![first];
        while permits.len() < batch.min(room)
            && let Some(p) = inner.lines.try_outbound()
        {
            permits.push(p);
        }
        // A wake (tasks created, a campaign saved, paused or resumed, here or on another
        // node) reads the campaigns again at once; otherwise every second.
        let woken = futures::FutureExt::now_or_never(signals.wake.notified()).is_some();
        inner.campaigns.refresh(inner.store.as_ref(), woken).await;
        let plan = inner.campaigns.plan(permits.len() as u32, now);
        if plan.shares.is_empty() && plan.waiting_for.is_empty() {
            drop(permits);
            let wait = plan.opens_in.unwrap_or(IDLE_POLL).min(IDLE_POLL);
            if plan.opens_in.is_some() && !said_closed {
                let opens = inner.time.format(now + plan.opens_in.unwrap_or_default().as_millis() as i64);
                tracing::info!(
                    calling_hours = %String::from(d.calling_hours),
                    timezone = inner.time.0.name(),
                    "outside calling hours: tasks wait; dialing resumes at {}",
                    opens.unwrap_or_default()
                );
                said_closed = true;
            }
            if !idle(inner, signals, shutdown, wait).await {
                return;
            }
            continue;
        }
        said_closed = false;
        let lease_until = now + inner.timing.lease.as_millis() as i64;
        // The lease's age counts from before the claim was sent.
        let claimed_at = Instant::now();
        let rules = claim_rules(inner, now);
        let claimed = inner
            .store
            .claim_due(&inner.node, permits.len() as u32, &plan.shares, now, lease_until, &rules, &|| {
                inner.ids.next(now)
            })
            .await;
        let claimed = match claimed {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "claiming tasks failed; retrying shortly");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        if claimed.is_empty() {
            drop(permits);
            let wait = idle_wait(inner, &plan.waiting_for).await;
            let wait = plan.opens_in.map_or(wait, |o| o.min(wait));
            if !idle(inner, signals, shutdown, wait).await {
                return;
            }
            continue;
        }
        stamped.1 += claimed.len() as u32;
        for (i, (task, permit)) in claimed.into_iter().zip(permits).enumerate() {
            if i > 0 {
                // Claimed, so started even during shutdown; within `CLAIM_SPAN` anyway.
                pace.until_ready().await;
            }
            crate::metrics::call_started(pacing_delay);
            inner.campaigns.served(&task.batch_name);
            let held = inner.campaigns.permit(&task.batch_name);
            start_call(inner, tracker, task, (permit, held), claimed_at, signals.recordings.clone());
        }
    }
}

/// Waits `wait`, or until tasks are created or a campaign changes (read again at once), or a
/// campaign's own line is freed; `false` once the dialer shuts down.
async fn idle(inner: &Inner, signals: &DialerSignals, shutdown: &CancellationToken, wait: Duration) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = signals.wake.notified() => {
            inner.campaigns.refresh(inner.store.as_ref(), true).await;
            true
        }
        _ = inner.campaigns.freed.notified() => true,
        _ = tokio::time::sleep(wait) => true,
    }
}

fn start_call(
    inner: &Arc<Inner>,
    tracker: &TaskTracker,
    task: ClaimedCall,
    // The node's line and the campaign's own cap, held until the call ends.
    permit: (Line, CampaignPermit),
    claimed_at: Instant,
    recordings: Arc<RecordingHealth>,
) {
    let handles = inner.calls.add(task.batch_id, task.lease_gen, claimed_at);
    let inner = inner.clone();
    tracker.spawn(async move {
        let (batch_id, lease_gen) = (task.batch_id, task.lease_gen);
        call::place(&inner, task, handles, &recordings).await;
        inner.calls.remove(batch_id, lease_gen);
        drop(permit);
    });
}

/// The per-number daily cap and today's bounds in the configured zone.
fn claim_rules(inner: &Inner, now: i64) -> ClaimRules {
    let today = inner.time.local(now).expect("the clock's time is in range").date_naive();
    let midnight =
        |d: chrono::NaiveDate| inner.time.parse(&format!("{} 00:00:00", d.format("%Y-%m-%d"))).unwrap_or(now);
    ClaimRules {
        per_number_daily_cap: inner.settings.max_calls_per_number_per_day,
        today_from_ms: midnight(today),
        today_until_ms: midnight(today.succ_opt().unwrap_or(today)),
    }
}

/// Until the next waiting task of these campaigns is due, within the idle poll.
async fn idle_wait(inner: &Inner, campaigns: &[String]) -> Duration {
    if campaigns.is_empty() {
        return IDLE_POLL;
    }
    match inner.store.next_due_ms(campaigns).await {
        Ok(Some(due)) => {
            Duration::from_millis((due - now_ms()).clamp(10, IDLE_POLL.as_millis() as i64) as u64)
        }
        _ => IDLE_POLL,
    }
}

/// Renews leases, hangs up stopped calls, and takes over calls of dead nodes.
async fn upkeep(inner: Arc<Inner>, signals: DialerSignals, stop: CancellationToken) {
    let mut renew = tokio::time::interval(UPKEEP_EVERY);
    let mut stops = tokio::time::interval(STOP_POLL_EVERY);
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    stops.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = renew.tick() => {
                renew_leases(&inner).await;
                call::recover_orphans(&inner, false).await;
            }
            _ = stops.tick() => check_stops(&inner).await,
            _ = signals.stop_check.notified() => check_stops(&inner).await,
        }
    }
}

/// Renews the leases of the calls in progress; a call whose lease another node has
/// taken over is hung up at once.
async fn renew_leases(inner: &Inner) {
    let sent_at = Instant::now();
    let now = now_ms();
    let leases = inner.calls.leases(sent_at, inner.timing.fence_after);
    if leases.is_empty() {
        return;
    }
    match inner
        .store
        .renew_leases(&inner.node, &leases, now, now + inner.timing.lease.as_millis() as i64)
        .await
    {
        Ok(renewed) => {
            inner.calls.renewed(&renewed, sent_at);
            let renewed: std::collections::HashSet<i64> = renewed.into_iter().collect();
            for (id, lease_gen) in leases.into_iter().filter(|(id, _)| !renewed.contains(id)) {
                // Also a call that ended just now (its task moved on): then nothing to end.
                crate::metrics::fenced_write("renew");
                tracing::warn!(batch_id = id, lease_gen, "lease lost to another claim: hanging up");
                inner.calls.end(id, HangupReason::LeaseLost);
            }
        }
        Err(e) => tracing::error!(error = %e, "renewing leases failed"),
    }
}

async fn check_stops(inner: &Inner) {
    if inner.calls.is_empty() {
        return;
    }
    match inner.store.stop_requested(&inner.node).await {
        Ok(ids) => ids.into_iter().for_each(|id| inner.calls.end(id, HangupReason::Stopped)),
        Err(e) => tracing::error!(error = %e, "looking for stop requests failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telephony::asr::AsrSettings;
    use crate::telephony::hearing::Ear;
    use crate::telephony::sim::{SimCarrier, SimSettings};
    use crate::telephony::sip::{SipCarrier, SipSettings};
    use crate::telephony::tts::Synthetic;

    fn sip_timing(session_expires_secs: u64) -> Timing {
        let settings = SipSettings { session_expires_secs, ..SipSettings::default() };
        let max_call = Duration::from_secs(300);
        let carrier = SipCarrier::new(
            &settings,
            max_call,
            Arc::new(Synthetic),
            Ear::new(&AsrSettings::default(), None),
        );
        Timing::new(carrier.far_end_expiry())
    }

    #[test]
    fn a_carrier_that_takes_any_timer_keeps_the_30_s_lease() {
        let sim = SimCarrier::new(&SimSettings::default());
        let t = Timing::new(sim.far_end_expiry());
        let secs = |d: Duration| d.as_secs();
        assert_eq!((secs(t.lease), secs(t.fence_after), secs(t.far_end)), (30, 15, 20));
        assert_eq!(sip_timing(0), t, "SIP without session timers");
    }

    #[test]
    fn the_sip_lease_outlasts_the_session_timer_and_the_clock_margin() {
        for secs in [90, 600, 3600] {
            let t = sip_timing(secs);
            assert!(t.far_end >= Duration::from_secs(secs), "{t:?}");
            assert!(t.lease >= t.far_end + CLOCK_MARGIN, "{t:?}");
            assert!(t.fence_after < t.far_end && t.fence_after >= UPKEEP_EVERY * 2, "{t:?}");
        }
        assert_eq!(sip_timing(90).lease, Duration::from_secs(100));
    }
}
