//! Campaigns (the spec's batchName): their rows, and how a claim shares the lines out
//! among them. Each backend gives the statements (`sqlite/campaigns.rs`,
//! `postgres/campaigns.rs`).

use std::collections::HashMap;

use super::claims::Due;
use super::{CallRecord, Result, StoreError};
use crate::domain::TaskStatus;

/// A campaign as stored: its settings are kept as the JSON the API was given, and read
/// by whoever needs them (the dialer, the API), so the store needs not know them.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CampaignRow {
    pub name: String,
    pub settings: String,
    pub paused: bool,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// A campaign's tasks of one status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignCount {
    pub name: String,
    pub status: TaskStatus,
    pub tasks: i64,
}

/// A campaign's ended calls of one outcome (`domain::OUTCOME_CLASSES`) in a time range.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CampaignCalls {
    pub name: String,
    pub outcome: String,
    pub calls: i64,
}

/// A change to one `campaign_hours` row, as an element of a bound list.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(super) struct CampaignHourDelta {
    pub batch_name: String,
    pub hour_ms: i64,
    pub outcome: &'static str,
    pub calls: i64,
}

/// What replacing the records `removed` by `added` does to `campaign_hours` (records of
/// no campaign count nowhere), in key order, so that concurrent writers lock rows in
/// the same order.
pub(super) fn campaign_deltas(removed: &[CallRecord], added: &[CallRecord]) -> Vec<CampaignHourDelta> {
    let mut sums: std::collections::BTreeMap<(String, i64, &'static str), i64> = Default::default();
    for (records, sign) in [(removed, -1), (added, 1)] {
        for r in records {
            if let Some(name) = &r.batch_name {
                let (hour_ms, outcome) = r.stats_key();
                *sums.entry((name.clone(), hour_ms, outcome)).or_default() += sign;
            }
        }
    }
    sums.into_iter()
        .filter(|(_, calls)| *calls != 0)
        .map(|((batch_name, hour_ms, outcome), calls)| CampaignHourDelta {
            batch_name,
            hour_ms,
            outcome,
            calls,
        })
        .collect()
}

/// A campaign a claim may take tasks of, and how many at most. A claim is given them in
/// the dialer's order of preference: by priority, highest first, and among equal
/// priorities the one it has served least first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignShare {
    pub name: String,
    pub priority: i32,
    pub limit: u32,
}

/// `(campaign, status, tasks)` rows of the counters, decoded.
pub(super) fn counts_of(rows: Vec<(String, String, i64)>) -> Result<Vec<CampaignCount>> {
    rows.into_iter()
        .map(|(name, status, tasks)| match TaskStatus::from_db_name(&status) {
            Some(status) => Ok(CampaignCount { name, status, tasks }),
            None => Err(StoreError::Corrupt(format!("unknown task status `{status}`"))),
        })
        .collect()
}

/// A due task as a claim finds it, with its campaign and when it fell due.
pub(super) type CampaignDue = (i64, String, bool, String, i64);

/// Picks up to `limit` of the tasks `due` (each campaign's in the order they fell due):
/// the campaigns of the highest priority first, and among equal priorities one task of
/// each in turn, in `shares`' order, so that equal campaigns share the lines evenly
/// whatever their backlogs. A campaign gets no more than its own limit.
pub(super) fn share_out(due: Vec<CampaignDue>, shares: &[CampaignShare], limit: u32) -> Vec<Due> {
    let mut queues: HashMap<String, Vec<CampaignDue>> = HashMap::new();
    for d in due {
        queues.entry(d.3.clone()).or_default().push(d);
    }
    for queue in queues.values_mut() {
        // Reversed, so that popping takes the earliest due.
        queue.sort_by_key(|d| std::cmp::Reverse((d.4, d.0)));
    }
    let mut picked = Vec::new();
    let mut rest = shares;
    while let Some(first) = rest.first() {
        let same = rest.iter().take_while(|s| s.priority == first.priority).count();
        let (group, after) = rest.split_at(same);
        rest = after;
        let mut taken = vec![0u32; group.len()];
        loop {
            let mut any = false;
            for (i, share) in group.iter().enumerate() {
                if picked.len() as u32 >= limit {
                    return picked;
                }
                if taken[i] >= share.limit {
                    continue;
                }
                if let Some((id, phone, dnc, _, _)) = queues.get_mut(&share.name).and_then(Vec::pop) {
                    picked.push((id, phone, dnc));
                    taken[i] += 1;
                    any = true;
                }
            }
            if !any {
                break;
            }
        }
    }
    picked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(name: &str, priority: i32, limit: u32) -> CampaignShare {
        CampaignShare { name: name.into(), priority, limit }
    }

    fn due(campaign: &str, ids: std::ops::Range<i64>) -> Vec<CampaignDue> {
        ids.map(|id| (id, format!("p{id}"), false, campaign.to_string(), id)).collect()
    }

    fn ids(picked: &[Due]) -> Vec<i64> {
        picked.iter().map(|d| d.0).collect()
    }

    #[test]
    fn equal_campaigns_take_turns_whatever_their_backlogs() {
        let mut all = due("a", 1..20);
        all.extend(due("b", 100..103));
        let shares = [share("a", 0, 64), share("b", 0, 64)];
        assert_eq!(ids(&share_out(all.clone(), &shares, 6)), [1, 100, 2, 101, 3, 102]);
        // When the dialer offers b first (a served less).
        let rotated = [share("b", 0, 64), share("a", 0, 64)];
        assert_eq!(ids(&share_out(all, &rotated, 3)), [100, 1, 101]);
    }

    #[test]
    fn a_higher_priority_takes_every_line_before_a_lower_one_gets_any() {
        let mut all = due("low", 1..10);
        all.extend(due("urgent", 50..53));
        let shares = [share("urgent", 9, 64), share("low", 0, 64)];
        assert_eq!(ids(&share_out(all.clone(), &shares, 2)), [50, 51]);
        // What the urgent campaign cannot fill goes to the next.
        assert_eq!(ids(&share_out(all, &shares, 5)), [50, 51, 52, 1, 2]);
    }

    #[test]
    fn a_campaign_gets_no_more_than_its_own_limit_and_unknown_campaigns_nothing() {
        let mut all = due("a", 1..10);
        all.extend(due("b", 20..30));
        all.extend(due("paused", 40..45));
        let shares = [share("a", 0, 1), share("b", 0, 64)];
        assert_eq!(ids(&share_out(all, &shares, 4)), [1, 20, 21, 22]);
    }

    #[test]
    fn a_record_replaced_moves_its_campaigns_hour_count_and_records_of_no_campaign_count_nowhere() {
        let record = |uuid: &str, campaign: Option<&str>, answered: bool| CallRecord {
            uuid: uuid.into(),
            call_type: crate::domain::CallType::AiOutbound,
            batch_id: Some(1),
            telephone: "13900000000".into(),
            extnum: None,
            callout_ms: 3_600_000 + 5,
            answered_ms: answered.then_some(3_600_000 + 6),
            ended_ms: 3_600_000 + 9,
            time_len: 0,
            hangup_cause: if answered { "NORMAL_CLEARING:sip:200" } else { "CRASH:null" }.into(),
            wav_path: String::new(),
            wav_url: String::new(),
            dialogue_json: "[]".into(),
            intent: String::new(),
            turn_latency_ms: None,
            batch_name: campaign.map(str::to_string),
        };
        let before = [record("u1", Some("a"), false)];
        let after = [record("u1", Some("a"), true), record("u2", Some("b"), true), record("u3", None, true)];
        let delta = |name: &str, outcome: &'static str, calls: i64| CampaignHourDelta {
            batch_name: name.into(),
            hour_ms: 3_600_000,
            outcome,
            calls,
        };
        assert_eq!(
            campaign_deltas(&before, &after),
            [delta("a", "answered", 1), delta("a", "interrupted", -1), delta("b", "answered", 1)]
        );
    }

    #[test]
    fn each_campaign_gives_its_tasks_in_the_order_they_fell_due() {
        let all = vec![(7, "x".into(), false, "a".into(), 300), (3, "y".into(), true, "a".into(), 100)];
        let picked = share_out(all, &[share("a", 0, 5)], 5);
        assert_eq!(picked, [(3, "y".to_string(), true), (7, "x".to_string(), false)]);
    }
}
