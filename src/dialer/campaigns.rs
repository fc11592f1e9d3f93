//! Campaigns as the dialer sees them: each one's settings over the `[dialer]` ones, and
//! the share of the lines each claim offers it.
//!
//! Every claim is planned here: campaigns paused, outside their calling hours, at their
//! own cap of calls or past their own pace are left out; the rest are offered highest
//! priority first and, among equal priorities, the one that got the fewest calls first,
//! so that equal campaigns share the lines evenly (`store::CampaignShare`). The store's
//! claim reads the pause itself too, so a pause holds on every node from the next claim.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use utoipa::ToSchema;

use super::CallingHours;
use super::hours::until_open;
use crate::agent::AgentOverrides;
use crate::agent::script::ScriptLines;
use crate::domain::{ApiTime, Timezone};
use crate::store::{CampaignRow, CampaignShare, Store};

/// How often the campaigns are read again while the dialer is busy (it also reads them
/// when woken: a campaign saved, paused or resumed wakes it, on every node).
const REFRESH_EVERY: Duration = Duration::from_secs(1);

/// A campaign's settings: each one given overrides the global setting for its tasks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignSettings {
    /// `HH:MM-HH:MM`, as `dialer.calling_hours`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "09:00-20:00")]
    pub calling_hours: Option<CallingHours>,
    /// The zone of `calling_hours` (an IANA name); the configured `timezone` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "Asia/Shanghai")]
    pub timezone: Option<Timezone>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 100)]
    pub max_attempts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 2592000)]
    pub retry_delay_secs: Option<u64>,
    /// Its own pace, within `dialer.calls_per_second` (on each node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub calls_per_second: Option<u32>,
    /// Its own cap of calls at once, within `dialer.max_concurrent_calls` (on each node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub max_concurrent_calls: Option<u32>,
    /// Higher drains first; equal priorities share the lines evenly. 0 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = -1000, maximum = 1000)]
    pub priority: Option<i32>,
    /// Script lines said instead of `agent.script`'s (those not given stay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<ScriptLines>,
    /// The language model's system prompt instead of `agent.llm.system_prompt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    /// Caller ids (the From user) for its calls, used in turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_ids: Option<Vec<String>>,
    /// Where to transfer a call of this campaign.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer_to: Option<String>,
}

impl CampaignSettings {
    /// What the types do not check; the error names the setting.
    pub fn validate(&self) -> Result<(), String> {
        let bad = |name: &str, why: &str| Err(format!("settings.{name} {why}"));
        if self.max_attempts.is_some_and(|n| !(1..=100).contains(&n)) {
            return bad("max_attempts", "应在 1 到 100 之间");
        }
        if self.retry_delay_secs.is_some_and(|n| n > 30 * 24 * 3600) {
            return bad("retry_delay_secs", "不能超过 2592000（30 天）");
        }
        if self.calls_per_second == Some(0) {
            return bad("calls_per_second", "应至少为 1");
        }
        if self.max_concurrent_calls == Some(0) {
            return bad("max_concurrent_calls", "应至少为 1");
        }
        if self.priority.is_some_and(|p| !(-1000..=1000).contains(&p)) {
            return bad("priority", "应在 -1000 到 1000 之间");
        }
        let text = |name: &str, v: &str, max: usize| {
            if v.trim().is_empty() {
                bad(name, "不能为空")
            } else if v.chars().count() > max {
                bad(name, &format!("不能超过 {max} 个字符"))
            } else {
                Ok(())
            }
        };
        for (name, line) in self.script.iter().flat_map(ScriptLines::given) {
            text(&format!("script.{name}"), line, 2000)?;
        }
        if let Some(prompt) = &self.system_prompt {
            text("system_prompt", prompt, 20_000)?;
        }
        if let Some(ids) = &self.caller_ids {
            if ids.is_empty() {
                return bad("caller_ids", "不能为空列表");
            }
            if let Some(id) = ids.iter().find(|id| !super::transfer::is_caller_id(id)) {
                return bad("caller_ids", &format!("`{id}` 应为 1 到 32 个数字、字母或 + * # . _ -"));
            }
        }
        if let Some(to) = &self.transfer_to {
            if !super::transfer::is_destination(to) {
                return bad("transfer_to", "应为 SIP URI（sip:8001@pbx.example.com）、分机号或号码");
            }
        }
        Ok(())
    }
}

/// The global settings a campaign's override.
#[derive(Debug, Clone, Copy)]
pub(super) struct Defaults {
    pub calling_hours: CallingHours,
    pub time: ApiTime,
    pub max_attempts: u32,
    pub retry_delay_secs: u64,
}

/// A campaign's settings as its calls follow them.
pub(super) struct Campaign {
    /// The settings as stored, to know when they changed.
    stored: String,
    paused: AtomicBool,
    priority: i32,
    hours: CallingHours,
    time: ApiTime,
    pub max_attempts: u32,
    pub retry_delay: Duration,
    pace: Option<DefaultDirectRateLimiter>,
    /// Its own cap of calls on this node.
    slots: Option<Arc<Semaphore>>,
    pub agent: Arc<AgentOverrides>,
    /// Where its calls are handed to a person, before `[transfer]`'s destinations.
    pub transfer_to: Option<String>,
    /// The numbers its calls show, in turn; empty: the carrier's own.
    caller_ids: Vec<String>,
    next_caller: AtomicUsize,
}

impl Campaign {
    /// The caller id of its next call, in turn over its `caller_ids`; `None`: the
    /// carrier's own.
    pub fn caller_id(&self) -> Option<String> {
        let ids = &self.caller_ids;
        (!ids.is_empty()).then(|| ids[self.next_caller.fetch_add(1, Ordering::Relaxed) % ids.len()].clone())
    }

    fn new(stored: &str, settings: &CampaignSettings, d: &Defaults) -> Campaign {
        Campaign {
            stored: stored.to_string(),
            paused: AtomicBool::new(false),
            priority: settings.priority.unwrap_or(0),
            hours: settings.calling_hours.unwrap_or(d.calling_hours),
            time: settings.timezone.map_or(d.time, |z| ApiTime(z.0)),
            max_attempts: settings.max_attempts.unwrap_or(d.max_attempts),
            retry_delay: Duration::from_secs(settings.retry_delay_secs.unwrap_or(d.retry_delay_secs)),
            // No burst, as the global pace: starts spaced 1/cps apart.
            pace: settings
                .calls_per_second
                .and_then(NonZeroU32::new)
                .map(|cps| RateLimiter::direct(Quota::per_second(cps).allow_burst(NonZeroU32::MIN))),
            slots: settings.max_concurrent_calls.map(|n| Arc::new(Semaphore::new(n as usize))),
            agent: Arc::new(AgentOverrides {
                script: settings.script.clone().unwrap_or_default(),
                system_prompt: settings.system_prompt.clone(),
            }),
            transfer_to: settings.transfer_to.clone(),
            caller_ids: settings.caller_ids.clone().unwrap_or_default(),
            next_caller: AtomicUsize::new(0),
        }
    }

    /// How long until its calling hours open at `now_ms`; zero when open.
    fn until_open(&self, now_ms: i64) -> Duration {
        match self.time.local(now_ms) {
            Ok(now) => until_open(self.hours, now.time()),
            Err(_) => Duration::ZERO,
        }
    }
}

/// A call's hold on its campaign's cap; when it goes, the dialer looks for work again.
pub(super) struct CampaignPermit {
    _permit: Option<OwnedSemaphorePermit>,
    freed: Arc<Notify>,
}

impl Drop for CampaignPermit {
    fn drop(&mut self) {
        if self._permit.is_some() {
            self.freed.notify_one();
        }
    }
}

/// What one claim may take: the shares to offer the store, the campaigns whose due
/// tasks the dialer waits for when there is nothing to claim, and when the first
/// closed campaign opens.
#[derive(Debug, Default)]
pub(super) struct Plan {
    pub shares: Vec<CampaignShare>,
    pub waiting_for: Vec<String>,
    pub opens_in: Option<Duration>,
}

/// Every campaign, read from the store now and then.
pub(super) struct Campaigns {
    defaults: Defaults,
    book: Mutex<Book>,
    /// A call of a capped campaign ended: its campaign may take another.
    pub freed: Arc<Notify>,
}

#[derive(Default)]
struct Book {
    by_name: HashMap<String, Arc<Campaign>>,
    read_at: Option<Instant>,
    /// Calls claimed for each campaign: among equal priorities the one served least
    /// is offered first (deficit round robin), so that however claims' sizes vary,
    /// equal campaigns' calls stay even.
    served: HashMap<String, u64>,
}

impl Campaigns {
    pub(super) fn new(defaults: Defaults) -> Campaigns {
        Campaigns { defaults, book: Mutex::new(Book::default()), freed: Arc::new(Notify::new()) }
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the campaigns again when asked (`now`) or after `REFRESH_EVERY`. A
    /// campaign whose settings did not change keeps its pace and its calls' count.
    pub(super) async fn refresh(&self, store: &dyn Store, now: bool) {
        let due = self.book().read_at.is_none_or(|at| now || at.elapsed() >= REFRESH_EVERY);
        if !due {
            return;
        }
        let rows = match store.campaigns().await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!(error = %e, "reading the campaigns failed; keeping the last known");
                return;
            }
        };
        let mut book = self.book();
        let mut by_name = HashMap::with_capacity(rows.len());
        for CampaignRow { name, settings, paused, .. } in rows {
            let campaign = match book.by_name.remove(&name) {
                Some(c) if c.stored == settings => c,
                _ => {
                    let parsed = serde_json::from_str::<CampaignSettings>(&settings).unwrap_or_else(|e| {
                        tracing::error!(campaign = %name, error = %e, "unreadable campaign settings; using the global ones");
                        CampaignSettings::default()
                    });
                    Arc::new(Campaign::new(&settings, &parsed, &self.defaults))
                }
            };
            campaign.paused.store(paused, Ordering::Relaxed);
            by_name.insert(name, campaign);
        }
        book.by_name = by_name;
        book.read_at = Some(Instant::now());
    }

    /// The campaign `name`, or one with the global settings while it is not known yet.
    pub(super) fn get(&self, name: &str) -> Arc<Campaign> {
        self.book()
            .by_name
            .get(name)
            .cloned()
            .unwrap_or_else(|| Arc::new(Campaign::new("", &CampaignSettings::default(), &self.defaults)))
    }

    /// The claim's plan for up to `limit` calls at `now_ms`.
    pub(super) fn plan(&self, limit: u32, now_ms: i64) -> Plan {
        let book = self.book();
        let mut plan = Plan::default();
        let mut offered: Vec<(i32, String, u32)> = Vec::new();
        for (name, c) in &book.by_name {
            if c.paused.load(Ordering::Relaxed) {
                continue;
            }
            let wait = c.until_open(now_ms);
            if !wait.is_zero() {
                plan.opens_in = Some(plan.opens_in.map_or(wait, |w| w.min(wait)));
                continue;
            }
            let room = c.slots.as_ref().map_or(limit, |s| (s.available_permits() as u32).min(limit));
            if room == 0 {
                continue;
            }
            plan.waiting_for.push(name.clone());
            let room = match &c.pace {
                None => room,
                // One start per claim at most, and only with a token.
                Some(pace) if pace.check().is_ok() => 1,
                Some(_) => continue,
            };
            offered.push((c.priority, name.clone(), room));
        }
        // Highest priority first; among equal ones, the least served first.
        let served = |name: &str| book.served.get(name).copied().unwrap_or(0);
        offered.sort_by(|a, b| {
            b.0.cmp(&a.0).then_with(|| served(&a.1).cmp(&served(&b.1))).then_with(|| a.1.cmp(&b.1))
        });
        plan.shares = offered
            .into_iter()
            .map(|(priority, name, limit)| CampaignShare { name, priority, limit })
            .collect();
        plan
    }

    /// Counts a call claimed for `name` (see `Book::served`).
    pub(super) fn served(&self, name: &str) {
        let mut book = self.book();
        // A campaign seen for the first time starts level with the least served, or it
        // would be offered first until it had caught up with campaigns running for days.
        let least = book.served.values().min().copied().unwrap_or(0);
        *book.served.entry(name.to_string()).or_insert(least) += 1;
    }

    /// A hold on the campaign's own cap for a call just claimed.
    pub(super) fn permit(&self, name: &str) -> CampaignPermit {
        let slots = self.book().by_name.get(name).and_then(|c| c.slots.clone());
        CampaignPermit { _permit: slots.and_then(|s| s.try_acquire_owned().ok()), freed: self.freed.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn campaigns(rows: &[(&str, &str)]) -> Campaigns {
        let defaults = Defaults {
            calling_hours: CallingHours::ALWAYS,
            time: ApiTime(chrono_tz::Asia::Shanghai),
            max_attempts: 3,
            retry_delay_secs: 600,
        };
        let c = Campaigns::new(defaults);
        let mut book = c.book();
        for (name, settings) in rows {
            let parsed: CampaignSettings = serde_json::from_str(settings).unwrap();
            book.by_name.insert(name.to_string(), Arc::new(Campaign::new(settings, &parsed, &defaults)));
        }
        drop(book);
        c
    }

    fn names(plan: &Plan) -> Vec<&str> {
        plan.shares.iter().map(|s| s.name.as_str()).collect()
    }

    #[test]
    fn the_least_served_of_equal_priorities_leads_and_a_higher_one_always_leads() {
        let c = campaigns(&[("a", "{}"), ("b", "{}"), ("urgent", r#"{"priority": 5}"#)]);
        let first = c.plan(8, 0);
        assert_eq!(names(&first), ["urgent", "a", "b"]);
        c.served("a");
        let second = c.plan(8, 0);
        assert_eq!(names(&second), ["urgent", "b", "a"], "the one served less leads");
        c.served("b");
        c.served("b");
        assert_eq!(names(&c.plan(8, 0)), ["urgent", "a", "b"]);
    }

    #[test]
    fn paused_closed_and_full_campaigns_are_not_offered() {
        let noon = ApiTime(chrono_tz::Asia::Shanghai).parse("2025-09-01 12:00:00").unwrap();
        let c = campaigns(&[
            ("open", "{}"),
            ("closed", r#"{"calling_hours": "20:00-21:00"}"#),
            ("capped", r#"{"max_concurrent_calls": 1}"#),
            ("paused", "{}"),
        ]);
        c.get("paused").paused.store(true, Ordering::Relaxed);
        let held = c.permit("capped");
        let plan = c.plan(8, noon);
        assert_eq!(names(&plan), ["open"]);
        assert_eq!(plan.opens_in, Some(Duration::from_secs(8 * 3600)));
        drop(held);
        assert_eq!(names(&c.plan(8, noon)).len(), 2);
    }

    #[test]
    fn settings_name_the_bad_one() {
        let bad =
            |json: &str| serde_json::from_str::<CampaignSettings>(json).unwrap().validate().unwrap_err();
        assert!(bad(r#"{"max_attempts": 0}"#).contains("settings.max_attempts"));
        assert!(bad(r#"{"script": {"greeting": " "}}"#).contains("settings.script.greeting"));
        assert!(serde_json::from_str::<CampaignSettings>(r#"{"colour": 1}"#).is_err());
        assert!(serde_json::from_str::<CampaignSettings>(r#"{"calling_hours": "9-5"}"#).is_err());
    }
}
