//! Several trunks (`[[sip.trunks]]`): which trunk a number goes to (its prefixes, then
//! weighted at random), each trunk's caps (calls at once, calls per second), failover to
//! the next one when a trunk fails (5xx, 408, no answer at all, unreachable), and a trunk
//! that keeps failing taken out of rotation until it answers OPTIONS again.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rand::Rng;
use rsipstack::dialog::authenticate::Credential;
use rsipstack::transport::SipAddr;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::SipTransport;
use super::signalling::split_host_port;
use super::srtp::SrtpPolicy;

/// One `[[sip.trunks]]` table: a carrier's trunk and how much of it we may use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrunkSettings {
    /// The trunk's name in logs and metrics; empty = its address.
    pub name: String,
    /// The trunk (or its SBC / proxy): `host[:port]`, port 5060 by default.
    pub address: String,
    /// An outbound proxy (`host[:port]`) every request to this trunk goes through: sent
    /// there, with a `Route: <sip:proxy;lr>`, the Request-URI still naming the trunk.
    /// Empty = straight to `address`.
    pub outbound_proxy: String,
    pub transport: SipTransport,
    /// SRTP media keyed by SDES: `off`, `optional` (offered, taken if answered) or
    /// `required` (a call answered without it is ended, 488).
    pub srtp: SrtpPolicy,
    /// Host part of request URIs and From/To (`sip:<number>@<domain>`); empty = the address.
    pub domain: String,
    /// Digest authentication (401/407), when the trunk asks; empty = none.
    pub username: String,
    pub password: String,
    /// Caller ids (the From user), used in turn call by call; empty = `username`, or `callcenter`.
    pub caller_ids: Vec<String>,
    /// Put before every number dialled through this trunk (its routing prefix).
    pub dial_prefix: String,
    /// Numbers (as given, before `dial_prefix`) this trunk takes: those starting with one
    /// of these. Empty = any number. A number goes to the trunks with its longest matching
    /// prefix first, and to trunks of shorter (or no) prefixes when those fail.
    pub prefixes: Vec<String>,
    /// Share of calls among trunks of the same prefix: a trunk of weight 2 gets twice the
    /// calls of one of weight 1. 0 = a backup, used only when the others fail.
    pub weight: u32,
    /// Calls through this trunk at once (ringing or talking); 0 = no cap. A call waits
    /// for a free trunk when all it may use are full.
    pub max_concurrent_calls: u32,
    /// New calls per second through this trunk; 0 = no cap.
    pub calls_per_second: f64,
    /// REGISTER with the trunk (to `domain`, sent to `address`, with `username`/`password`)
    /// when the server starts, and keep the registration; calls through it wait for the
    /// first one and fail over (or fail at once) while it is not registered.
    pub register: bool,
    /// The registration lifetime asked for; the registrar may grant less (refreshed at 3/4
    /// of what it grants) or want more (423: its Min-Expires is taken).
    pub register_expires_secs: u32,
}

impl Default for TrunkSettings {
    fn default() -> Self {
        TrunkSettings {
            name: String::new(),
            address: String::new(),
            outbound_proxy: String::new(),
            transport: SipTransport::Udp,
            srtp: SrtpPolicy::Off,
            domain: String::new(),
            username: String::new(),
            password: String::new(),
            caller_ids: Vec::new(),
            dial_prefix: String::new(),
            prefixes: Vec::new(),
            weight: 1,
            max_concurrent_calls: 0,
            calls_per_second: 0.0,
            register: false,
            register_expires_secs: 600,
        }
    }
}

impl TrunkSettings {
    /// The name it goes by: its own, or its address.
    pub fn label(&self) -> &str {
        if self.name.is_empty() { &self.address } else { &self.name }
    }

    /// What the types do not check; `key` is where it is set (`sip.trunks[0]`).
    pub fn validate(&self, key: &str) -> Result<(), String> {
        if self.address.trim().is_empty() {
            return Err(format!("{key}.address must be set (host:port of the SIP trunk)"));
        }
        if split_host_port(&self.address).is_none() {
            return Err(format!("{key}.address `{}` is not host[:port]", self.address));
        }
        if !self.outbound_proxy.is_empty() && split_host_port(&self.outbound_proxy).is_none() {
            return Err(format!("{key}.outbound_proxy `{}` is not host[:port]", self.outbound_proxy));
        }
        if let Some(p) =
            self.prefixes.iter().find(|p| p.is_empty() || !p.chars().all(|c| c.is_ascii_digit() || c == '+'))
        {
            return Err(format!("{key}.prefixes: `{p}` is not a number prefix (digits, and a leading +)"));
        }
        if self.register && self.username.is_empty() {
            return Err(format!("{key}.register needs {key}.username (and password): the user to register"));
        }
        if self.register && !(10..=86_400).contains(&self.register_expires_secs) {
            return Err(format!("{key}.register_expires_secs must be 10…86400"));
        }
        if !(self.calls_per_second.is_finite() && (0.0..=1000.0).contains(&self.calls_per_second)) {
            return Err(format!("{key}.calls_per_second must be 0 (no cap) up to 1000"));
        }
        Ok(())
    }
}

/// What became of an INVITE through a trunk, for its health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrunkOutcome {
    /// Answered (2xx).
    Answered,
    /// A final answer about the callee (4xx, 6xx), or rung out: the trunk works.
    Worked,
    /// The trunk failed (5xx, 408, no answer at all, unreachable): the call fails over.
    Failed,
}

impl TrunkOutcome {
    /// A final SIP status through a trunk: 5xx and 408 are the trunk's failure (RFC 3261
    /// §21.5: the server failed, not the request; 408: nothing answered in time).
    pub fn of_status(code: u16) -> TrunkOutcome {
        match code {
            200..=299 => TrunkOutcome::Answered,
            408 | 500..=599 => TrunkOutcome::Failed,
            _ => TrunkOutcome::Worked,
        }
    }
}

/// Where a trunk that registers stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationState {
    /// The first REGISTER is under way: calls wait for it.
    Registering,
    Registered,
    /// The last REGISTER failed (why): calls do not go through it until one succeeds.
    Failed(String),
    /// Unregistered at shutdown.
    Unregistered,
}

/// A trunk at run time: its settings, where it is, its calls and its health.
pub struct Trunk {
    pub settings: TrunkSettings,
    pub name: String,
    /// Where its INVITEs go (resolved at the user agent's start).
    pub target: OnceLock<SipAddr>,
    pub credential: Option<Credential>,
    next_caller: AtomicUsize,
    calls: AtomicU32,
    /// The earliest time the next call may start under `calls_per_second`.
    next_start: Mutex<Instant>,
    failures_in_a_row: AtomicU32,
    /// Out of rotation: no new calls until an OPTIONS is answered 2xx.
    out_of_rotation: std::sync::atomic::AtomicBool,
    attempts: AtomicU64,
    answered: AtomicU64,
    /// `None` for a trunk that does not register.
    registration: Mutex<Option<RegistrationState>>,
    /// Woken when a call leaves it or its registration changes (shared by all trunks).
    changed: Arc<Notify>,
}

impl Trunk {
    fn new(settings: TrunkSettings, changed: Arc<Notify>) -> Trunk {
        let credential = (!settings.username.is_empty()).then(|| Credential {
            username: settings.username.clone(),
            password: settings.password.clone(),
            realm: None,
            auth_username: None,
        });
        let name = settings.label().to_string();
        let trunk = Trunk {
            settings,
            name,
            target: OnceLock::new(),
            credential,
            next_caller: AtomicUsize::new(0),
            calls: AtomicU32::new(0),
            next_start: Mutex::new(Instant::now()),
            failures_in_a_row: AtomicU32::new(0),
            out_of_rotation: false.into(),
            attempts: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            registration: Mutex::new(None),
            changed,
        };
        if trunk.settings.register {
            trunk.set_registration(RegistrationState::Registering);
        }
        trunk.gauge_rotation();
        trunk
    }

    /// Where its requests are sent: the outbound proxy, or the address.
    pub fn next_hop(&self) -> &str {
        if self.settings.outbound_proxy.is_empty() {
            &self.settings.address
        } else {
            &self.settings.outbound_proxy
        }
    }

    /// The `Route` header of its requests: the outbound proxy, loose-routing.
    pub fn route_header(&self) -> Option<rsipstack::rsip::Header> {
        let proxy = &self.settings.outbound_proxy;
        (!proxy.is_empty()).then(|| rsipstack::rsip::Header::Route(format!("<sip:{proxy};lr>").into()))
    }

    /// The host of request URIs: the domain, or the address.
    pub fn domain(&self) -> &str {
        if self.settings.domain.is_empty() { &self.settings.address } else { &self.settings.domain }
    }

    /// The next caller id of this trunk's pool.
    pub fn caller_id(&self) -> String {
        let pool = &self.settings.caller_ids;
        if pool.is_empty() {
            return if self.settings.username.is_empty() {
                "callcenter".into()
            } else {
                self.settings.username.clone()
            };
        }
        pool[self.next_caller.fetch_add(1, Ordering::Relaxed) % pool.len()].clone()
    }

    pub fn in_rotation(&self) -> bool {
        !self.out_of_rotation.load(Ordering::Relaxed)
    }

    /// Where its registration stands (`Registered` for a trunk that does not register).
    pub fn registration(&self) -> RegistrationState {
        self.registration.lock().expect("registration lock").clone().unwrap_or(RegistrationState::Registered)
    }

    pub fn set_registration(&self, state: RegistrationState) {
        let registered = if state == RegistrationState::Registered { 1.0 } else { 0.0 };
        metrics::gauge!("callcenter_sip_trunk_registered", "trunk" => self.name.clone()).set(registered);
        *self.registration.lock().expect("registration lock") = Some(state);
        self.changed.notify_waiters();
    }

    /// What /readyz says of it: `ok`, `out of rotation`, `registering`, `unregistered`, or
    /// `not registered: <why>`.
    pub fn status(&self) -> String {
        if !self.in_rotation() {
            return "out of rotation".into();
        }
        match self.registration() {
            RegistrationState::Registered => "ok".into(),
            RegistrationState::Registering => "registering".into(),
            RegistrationState::Unregistered => "unregistered".into(),
            RegistrationState::Failed(why) => format!("not registered: {why}"),
        }
    }

    /// How long the longest of its prefixes matching `number` is; `None` if it does not
    /// take the number.
    fn matches(&self, number: &str) -> Option<usize> {
        if self.settings.prefixes.is_empty() {
            return Some(0);
        }
        self.settings.prefixes.iter().filter(|p| number.starts_with(p.as_str())).map(|p| p.len()).max()
    }

    /// A call's place on this trunk, if it has one free now.
    fn try_take(&self) -> bool {
        let cap = self.settings.max_concurrent_calls;
        let took = self
            .calls
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (cap == 0 || n < cap).then_some(n + 1))
            .is_ok();
        if !took {
            return false;
        }
        if self.settings.calls_per_second > 0.0 {
            let mut next = self.next_start.lock().expect("trunk rate lock");
            let now = Instant::now();
            if *next > now {
                self.calls.fetch_sub(1, Ordering::AcqRel);
                return false;
            }
            *next = now + Duration::from_secs_f64(1.0 / self.settings.calls_per_second);
        }
        metrics::gauge!("callcenter_sip_trunk_calls", "trunk" => self.name.clone()).increment(1.0);
        true
    }

    /// When its `calls_per_second` lets the next call start, if later than now.
    fn rate_free_at(&self) -> Option<Instant> {
        (self.settings.calls_per_second > 0.0)
            .then(|| *self.next_start.lock().expect("trunk rate lock"))
            .filter(|at| *at > Instant::now())
    }

    fn gauge_rotation(&self) {
        let value = if self.in_rotation() { 1.0 } else { 0.0 };
        metrics::gauge!("callcenter_sip_trunk_in_rotation", "trunk" => self.name.clone()).set(value);
    }

    /// Counts an INVITE sent through it.
    pub fn attempted(&self) {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("callcenter_sip_trunk_attempts_total", "trunk" => self.name.clone()).increment(1);
    }

    /// Takes what became of an INVITE through it; true when this takes it out of rotation.
    pub fn outcome(&self, outcome: TrunkOutcome, out_after: u32) -> bool {
        let trunk = self.name.clone();
        match outcome {
            TrunkOutcome::Answered => {
                self.answered.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("callcenter_sip_trunk_answered_total", "trunk" => trunk.clone())
                    .increment(1);
                self.failures_in_a_row.store(0, Ordering::Relaxed);
            }
            TrunkOutcome::Worked => self.failures_in_a_row.store(0, Ordering::Relaxed),
            TrunkOutcome::Failed => {
                metrics::counter!("callcenter_sip_trunk_failures_total", "trunk" => trunk.clone())
                    .increment(1);
            }
        }
        let attempts = self.attempts.load(Ordering::Relaxed).max(1);
        let rate = self.answered.load(Ordering::Relaxed) as f64 / attempts as f64;
        metrics::gauge!("callcenter_sip_trunk_answer_rate", "trunk" => trunk).set(rate);
        if outcome != TrunkOutcome::Failed {
            return false;
        }
        let in_a_row = self.failures_in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
        if out_after == 0 || in_a_row < out_after {
            return false;
        }
        let taken_out = !self.out_of_rotation.swap(true, Ordering::Relaxed);
        if taken_out {
            tracing::warn!(trunk = %self.name, failures = in_a_row, "sip: trunk out of rotation; checking it with OPTIONS");
            self.gauge_rotation();
        }
        taken_out
    }

    /// Its OPTIONS were answered: back in rotation.
    pub fn back_in_rotation(&self) {
        self.failures_in_a_row.store(0, Ordering::Relaxed);
        if self.out_of_rotation.swap(false, Ordering::Relaxed) {
            tracing::info!(trunk = %self.name, "sip: trunk answers OPTIONS again; back in rotation");
            self.gauge_rotation();
        }
    }
}

/// The carrier's trunks, and who waits for a place on one.
pub struct Trunks {
    pub all: Vec<Arc<Trunk>>,
    /// Woken when a call leaves a trunk, or a registration changes.
    changed: Arc<Notify>,
}

/// A call's place on a trunk: given back when dropped (the call over, or failed).
pub struct TrunkSlot {
    pub trunk: Arc<Trunk>,
}

impl Drop for TrunkSlot {
    fn drop(&mut self) {
        self.trunk.calls.fetch_sub(1, Ordering::AcqRel);
        metrics::gauge!("callcenter_sip_trunk_calls", "trunk" => self.trunk.name.clone()).decrement(1.0);
        self.trunk.changed.notify_waiters();
    }
}

/// Why no trunk took a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoTrunk {
    /// No trunk takes this number (its prefixes).
    NoRoute,
    /// Every trunk that takes it was tried, or is out of rotation.
    NoneLeft,
    /// The trunks left are not registered: the first one's name and why.
    NotRegistered(String, String),
}

impl Trunks {
    pub fn new(settings: Vec<TrunkSettings>) -> Trunks {
        let changed = Arc::new(Notify::new());
        let all = settings.into_iter().map(|s| Arc::new(Trunk::new(s, changed.clone()))).collect();
        Trunks { all, changed }
    }

    /// The trunks for `number`, in the order to try them: longest matching prefix first;
    /// among equals, weighted at random, backups (weight 0) last.
    pub fn route(&self, number: &str) -> Vec<Arc<Trunk>> {
        let mut rng = rand::rng();
        let mut ranked: Vec<(usize, bool, f64, Arc<Trunk>)> = self
            .all
            .iter()
            .filter_map(|t| {
                let len = t.matches(number)?;
                let weight = t.settings.weight;
                // Weighted order without replacement: u^(1/w), largest first (Efraimidis–Spirakis).
                let key = if weight == 0 { 0.0 } else { rng.random::<f64>().powf(1.0 / f64::from(weight)) };
                Some((len, weight > 0, key, t.clone()))
            })
            .collect();
        ranked.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)).then(b.2.total_cmp(&a.2)));
        ranked.into_iter().map(|(_, _, _, t)| t).collect()
    }

    /// A place on the first trunk of `route` (from `from` on) that is in rotation and has
    /// one free; waits while all such trunks are full. Returns the slot and the index in
    /// `route` it was found at.
    pub async fn take(&self, route: &[Arc<Trunk>], from: usize) -> Result<(TrunkSlot, usize), NoTrunk> {
        if route.is_empty() {
            return Err(NoTrunk::NoRoute);
        }
        loop {
            // Registered before looking, so that a change meanwhile is not missed.
            let changed = self.changed.notified();
            let in_rotation: Vec<(usize, &Arc<Trunk>)> =
                route.iter().enumerate().skip(from).filter(|(_, t)| t.in_rotation()).collect();
            let usable: Vec<(usize, &Arc<Trunk>)> = in_rotation
                .iter()
                .copied()
                .filter(|(_, t)| t.registration() == RegistrationState::Registered)
                .collect();
            if usable.is_empty() {
                let registering =
                    in_rotation.iter().any(|(_, t)| t.registration() == RegistrationState::Registering);
                match in_rotation.first() {
                    None => return Err(NoTrunk::NoneLeft),
                    Some((_, t)) if !registering => {
                        let why = match t.registration() {
                            RegistrationState::Failed(why) => why,
                            _ => "unregistered".into(),
                        };
                        return Err(NoTrunk::NotRegistered(t.name.clone(), why));
                    }
                    // The first registration is under way: wait for it.
                    Some(_) => {}
                }
            }
            if let Some((at, trunk)) = usable.iter().find(|(_, t)| t.try_take()) {
                return Ok((TrunkSlot { trunk: (*trunk).clone() }, *at));
            }
            // All full (or registering): wait for a call to end, a registration, or for a
            // rate cap to let one start.
            let rate_free = usable.iter().filter_map(|(_, t)| t.rate_free_at()).min();
            let recheck = rate_free.unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
            tokio::select! {
                _ = changed => {}
                _ = tokio::time::sleep_until(recheck) => {}
            }
        }
    }
}

/// Describes the per-trunk metrics once.
pub fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge};
    describe_counter!(
        "callcenter_sip_trunk_attempts_total",
        "INVITEs sent, by trunk (a failover is one more)"
    );
    describe_counter!("callcenter_sip_trunk_answered_total", "INVITEs answered (2xx), by trunk");
    describe_counter!(
        "callcenter_sip_trunk_failures_total",
        "INVITEs the trunk failed (5xx, 408, no answer at all, unreachable), by trunk"
    );
    describe_gauge!("callcenter_sip_trunk_answer_rate", "Share of a trunk's INVITEs answered, since start");
    describe_gauge!("callcenter_sip_trunk_calls", "Calls on a trunk now (ringing or talking)");
    describe_gauge!(
        "callcenter_sip_trunk_in_rotation",
        "1 while a trunk takes new calls, 0 while out of rotation"
    );
    describe_gauge!(
        "callcenter_sip_trunk_registered",
        "1 while a trunk that registers is registered, else 0"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trunk(name: &str, prefixes: &[&str], weight: u32) -> TrunkSettings {
        TrunkSettings {
            name: name.into(),
            address: format!("{name}.example.com"),
            prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
            weight,
            ..TrunkSettings::default()
        }
    }

    fn names(route: &[Arc<Trunk>]) -> Vec<&str> {
        route.iter().map(|t| t.name.as_str()).collect()
    }

    #[test]
    fn the_longest_matching_prefix_comes_first_and_backups_last() {
        let trunks = Trunks::new(vec![
            trunk("any", &[], 1),
            trunk("mobile", &["139", "138"], 1),
            trunk("backup", &[], 0),
            trunk("abroad", &["00"], 1),
        ]);
        for _ in 0..20 {
            assert_eq!(names(&trunks.route("13900001111")), ["mobile", "any", "backup"]);
            assert_eq!(names(&trunks.route("0085212345678")), ["abroad", "any", "backup"]);
            assert_eq!(names(&trunks.route("02112345678")), ["any", "backup"]);
        }
        let only_prefixed = Trunks::new(vec![trunk("mobile", &["139"], 1)]);
        assert!(only_prefixed.route("02112345678").is_empty());
    }

    #[test]
    fn weights_share_the_first_place() {
        let trunks = Trunks::new(vec![trunk("heavy", &[], 3), trunk("light", &[], 1)]);
        let heavy_first = (0..4000).filter(|_| trunks.route("1")[0].name == "heavy").count();
        // Expected 3000 of 4000; far outside chance either side of it.
        assert!((2700..3300).contains(&heavy_first), "{heavy_first}");
    }

    #[test]
    fn statuses_that_fail_over_are_the_trunks_failures() {
        assert_eq!(TrunkOutcome::of_status(200), TrunkOutcome::Answered);
        for code in [408, 500, 502, 503, 504] {
            assert_eq!(TrunkOutcome::of_status(code), TrunkOutcome::Failed, "{code}");
        }
        for code in [404, 480, 486, 487, 603] {
            assert_eq!(TrunkOutcome::of_status(code), TrunkOutcome::Worked, "{code}");
        }
    }

    #[test]
    fn a_trunk_failing_in_a_row_goes_out_and_comes_back() {
        let trunks = Trunks::new(vec![trunk("a", &[], 1)]);
        let a = &trunks.all[0];
        assert!(!a.outcome(TrunkOutcome::Failed, 2));
        // A working answer in between starts the count again.
        assert!(!a.outcome(TrunkOutcome::Worked, 2));
        assert!(!a.outcome(TrunkOutcome::Failed, 2));
        assert!(a.outcome(TrunkOutcome::Failed, 2));
        assert!(!a.in_rotation());
        a.back_in_rotation();
        assert!(a.in_rotation());
    }

    #[tokio::test]
    async fn a_full_trunk_passes_calls_to_the_next_and_frees_its_place_when_a_call_ends() {
        let mut capped = trunk("capped", &[], 1);
        capped.max_concurrent_calls = 1;
        let trunks = Trunks::new(vec![capped, trunk("other", &[], 0)]);
        let route = trunks.route("1");
        let (first, _) = trunks.take(&route, 0).await.unwrap();
        assert_eq!(first.trunk.name, "capped");
        let (second, _) = trunks.take(&route, 0).await.unwrap();
        assert_eq!(second.trunk.name, "other");
        drop(first);
        let (third, _) = trunks.take(&route, 0).await.unwrap();
        assert_eq!(third.trunk.name, "capped");
        // Past the last trunk of the route: none left.
        assert_eq!(trunks.take(&route, 2).await.err(), Some(NoTrunk::NoneLeft));
    }

    #[tokio::test]
    async fn a_trunk_at_its_calls_per_second_passes_the_next_call_on() {
        let mut paced = trunk("paced", &[], 1);
        paced.calls_per_second = 0.5;
        let trunks = Trunks::new(vec![paced, trunk("other", &[], 0)]);
        let route = trunks.route("1");
        let (first, _) = trunks.take(&route, 0).await.unwrap();
        // Its place is free again, but its next start is two seconds on.
        drop(first);
        let (second, _) = trunks.take(&route, 0).await.unwrap();
        assert_eq!(second.trunk.name, "other");
        // With only the paced trunk left, a call waits for its next start, then has it.
        use futures::FutureExt;
        let mut waiting = Box::pin(trunks.take(&route[..1], 0));
        assert!((&mut waiting).now_or_never().is_none());
        let (third, _) = waiting.await.unwrap();
        assert_eq!(third.trunk.name, "paced");
    }

    #[tokio::test]
    async fn calls_wait_for_the_first_registration_and_fail_at_once_while_it_fails() {
        let mut registering = trunk("registering", &[], 1);
        registering.register = true;
        let trunks = Arc::new(Trunks::new(vec![registering]));
        let route = trunks.route("1");
        let waiting = tokio::spawn({
            let (trunks, route) = (trunks.clone(), route.clone());
            async move { trunks.take(&route, 0).await.map(|(slot, _)| slot.trunk.name.clone()) }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        trunks.all[0].set_registration(RegistrationState::Registered);
        assert_eq!(waiting.await.unwrap(), Ok("registering".to_string()));

        trunks.all[0].set_registration(RegistrationState::Failed("401 Unauthorized".into()));
        assert_eq!(
            trunks.take(&route, 0).await.err(),
            Some(NoTrunk::NotRegistered("registering".into(), "401 Unauthorized".into()))
        );
        assert_eq!(trunks.all[0].status(), "not registered: 401 Unauthorized");
    }

    #[test]
    fn bad_trunk_settings_are_named() {
        let ok = trunk("a", &["139"], 1);
        assert_eq!(ok.validate("sip.trunks[0]"), Ok(()));
        let cases = [
            (TrunkSettings { address: String::new(), ..ok.clone() }, "sip.trunks[0].address"),
            (TrunkSettings { address: "a:b:c".into(), ..ok.clone() }, "sip.trunks[0].address"),
            (TrunkSettings { prefixes: vec!["13x".into()], ..ok.clone() }, "sip.trunks[0].prefixes"),
            (TrunkSettings { calls_per_second: -1.0, ..ok.clone() }, "sip.trunks[0].calls_per_second"),
        ];
        for (s, key) in cases {
            assert!(s.validate("sip.trunks[0]").unwrap_err().contains(key), "{key}");
        }
    }
}
