//! The dialer's side: claims of due tasks, leases, and the attempts that end them. The
//! claim's rules (the do-not-call list, the daily cap per number, the order calls fall
//! due) are here once; each backend gives the statements they run (`ClaimSql`).

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use serde::Serialize;

use super::{CallRecord, Result, TaskRow};
use crate::domain::{CallType, HangupCause, TaskStatus, Turn};

/// What the dialer must respect when it claims, beyond due time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimRules {
    /// Most calls one number may get per day (0 = no cap); a task over it waits for
    /// `today_until_ms` without spending an attempt.
    pub per_number_daily_cap: u32,
    /// Today in the configured zone: `[from, until)`, epoch ms.
    pub today_from_ms: i64,
    pub today_until_ms: i64,
}

/// A call in progress that was answered, noted while it lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnsweredCall {
    pub batch_id: i64,
    /// The claim's fencing token (`ClaimedCall::lease_gen`).
    pub lease_gen: i64,
    pub answered_ms: i64,
}

/// A task claimed for one call attempt, with the attempt's uuid.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ClaimedCall {
    pub batch_id: i64,
    pub ticket_no: String,
    pub phone: String,
    pub username: String,
    pub ticket_type: String,
    pub ticket_content: String,
    /// Attempts so far, this one included.
    pub attempt: i64,
    pub call_uuid: String,
    pub call_started_ms: i64,
    /// For a call taken over from a dead node: when it was answered, if it was.
    pub call_answered_ms: Option<i64>,
    /// For a call taken over from a dead node: its last heartbeat.
    pub heartbeat_ms: Option<i64>,
    /// The lease's fencing token: every write about this attempt holds only while the
    /// task still carries it (another claim bumps it).
    pub lease_gen: i64,
    /// The task's campaign, whose settings the call follows.
    pub batch_name: String,
}

/// Where the task goes after an attempt. A stop requested meanwhile wins over it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    /// 已完成.
    Complete,
    /// 等待重呼 until this time (epoch ms).
    RetryAt(i64),
    /// 已停止.
    Stop,
}

/// An attempt that has ended: its record and what becomes of its task.
#[derive(Debug, Clone)]
pub struct FinishedAttempt {
    pub batch_id: i64,
    pub node: String,
    /// The claim's fencing token (`ClaimedCall::lease_gen`).
    pub lease_gen: i64,
    pub uuid: String,
    pub telephone: String,
    /// The extension of the person the call was handed to, if it was.
    pub extnum: Option<String>,
    pub callout_ms: i64,
    pub answered_ms: Option<i64>,
    pub ended_ms: i64,
    pub hangup_cause: HangupCause,
    pub wav_path: String,
    pub dialogue: Vec<Turn>,
    /// The outcome of an answered call; empty otherwise.
    pub intent: String,
    /// The call's median voice-to-voice latency; `None` when no answer was measured.
    pub turn_latency: Option<Duration>,
    pub next: NextStep,
}

impl FinishedAttempt {
    /// The record the attempt leaves.
    pub(super) fn record(&self) -> CallRecord {
        CallRecord {
            uuid: self.uuid.clone(),
            call_type: CallType::AiOutbound,
            batch_id: Some(self.batch_id),
            telephone: self.telephone.clone(),
            extnum: self.extnum.clone(),
            callout_ms: self.callout_ms,
            answered_ms: self.answered_ms,
            ended_ms: self.ended_ms,
            time_len: CallRecord::time_len_of(self.callout_ms, self.answered_ms, self.ended_ms),
            hangup_cause: self.hangup_cause.to_string(),
            wav_path: self.wav_path.clone(),
            wav_url: String::new(),
            dialogue_json: serde_json::to_string(&self.dialogue).expect("dialogue serializes"),
            intent: self.intent.clone(),
            turn_latency_ms: self.turn_latency.map(|d| d.as_millis() as i64),
            // The task's, filled in from the task the attempt moved.
            batch_name: None,
        }
    }

    /// The task's status after the attempt (unless a stop was asked for meanwhile) and
    /// its `next_attempt_ms`.
    pub(super) fn next_status(&self) -> (TaskStatus, i64) {
        match self.next {
            NextStep::Complete => (TaskStatus::Completed, self.ended_ms),
            NextStep::RetryAt(ms) => (TaskStatus::RetryWait, ms),
            NextStep::Stop => (TaskStatus::Stopped, self.ended_ms),
        }
    }
}

/// How a finished attempt moves its task on, as an element of a bound list.
#[derive(Serialize)]
pub(super) struct TaskMove<'a> {
    /// The task's batchId (named apart from the table's columns, for `UPDATE … FROM`).
    id: i64,
    node: &'a str,
    lease_gen: i64,
    uuid: &'a str,
    next_status: &'static str,
    ended_ms: i64,
    answered: bool,
    cause: String,
    next_ms: i64,
}

impl<'a> From<&'a FinishedAttempt> for TaskMove<'a> {
    fn from(a: &'a FinishedAttempt) -> TaskMove<'a> {
        let (next, next_ms) = a.next_status();
        TaskMove {
            id: a.batch_id,
            node: &a.node,
            lease_gen: a.lease_gen,
            uuid: &a.uuid,
            next_status: next.db_name(),
            ended_ms: a.ended_ms,
            answered: a.answered_ms.is_some(),
            cause: a.hangup_cause.to_string(),
            next_ms,
        }
    }
}

/// A task due for a call, as a claim finds it: batchId, phone, whether the number is on
/// the do-not-call list.
pub(super) type Due = (i64, String, bool);

/// The statements a claim's rules run, in the claim's transaction.
pub(super) trait ClaimSql: Send {
    /// Ends a due task as 已拦截; the task as it is then.
    fn block(&mut self, batch_id: i64, now_ms: i64) -> impl Future<Output = Result<Option<TaskRow>>> + Send;

    /// Calls `phone` had today plus its calls in progress, on every node.
    fn calls_today(&mut self, phone: &str, rules: &ClaimRules) -> impl Future<Output = Result<i64>> + Send;

    /// Makes a task wait until `until_ms`, without spending an attempt.
    fn postpone(&mut self, batch_id: i64, until_ms: i64) -> impl Future<Output = Result<()>> + Send;
}

/// What a claim makes of the tasks due.
#[derive(Default)]
pub(super) struct Sifted {
    /// The tasks to call, in the order they fell due, each with its attempt's uuid.
    pub claim: Vec<(i64, String)>,
    /// The tasks ended as 已拦截.
    pub blocked: Vec<TaskRow>,
}

/// Applies the claim's rules to the tasks `due`: a do-not-call number ends its task as
/// 已拦截; a number that reached its daily cap makes its task wait for tomorrow; every
/// other task is claimed, with a uuid from `next_uuid`.
pub(super) async fn sift(
    sql: &mut impl ClaimSql,
    due: Vec<Due>,
    rules: &ClaimRules,
    now_ms: i64,
    next_uuid: &(dyn Fn() -> String + Send + Sync),
) -> Result<Sifted> {
    let mut sifted = Sifted::default();
    // Calls this claim gives each number, which the counts cannot see yet.
    let mut claimed_phones: HashMap<String, i64> = HashMap::new();
    for (batch_id, phone, do_not_call) in due {
        if do_not_call {
            sifted.blocked.extend(sql.block(batch_id, now_ms).await?);
            continue;
        }
        if rules.per_number_daily_cap > 0 {
            let calls_today = sql.calls_today(&phone, rules).await?;
            let in_this_claim = claimed_phones.entry(phone).or_insert(0);
            if calls_today + *in_this_claim >= i64::from(rules.per_number_daily_cap) {
                sql.postpone(batch_id, rules.today_until_ms).await?;
                continue;
            }
            *in_this_claim += 1;
        }
        sifted.claim.push((batch_id, next_uuid()));
    }
    Ok(sifted)
}

/// The claimed calls (as the UPDATE returned them, in any order) in the order they fell due.
pub(super) fn in_due_order(claim: &[(i64, String)], mut calls: Vec<ClaimedCall>) -> Vec<ClaimedCall> {
    let position: HashMap<i64, usize> = claim.iter().enumerate().map(|(i, (id, _))| (*id, i)).collect();
    calls.sort_by_key(|c| position.get(&c.batch_id).copied());
    calls
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// Numbers' calls today, and what the rules did.
    #[derive(Default)]
    struct Recorded {
        calls_today: HashMap<String, i64>,
        blocked: Vec<i64>,
        postponed: Vec<(i64, i64)>,
    }

    impl ClaimSql for Recorded {
        async fn block(&mut self, batch_id: i64, _now_ms: i64) -> Result<Option<TaskRow>> {
            self.blocked.push(batch_id);
            Ok(None)
        }

        async fn calls_today(&mut self, phone: &str, _rules: &ClaimRules) -> Result<i64> {
            Ok(self.calls_today.get(phone).copied().unwrap_or(0))
        }

        async fn postpone(&mut self, batch_id: i64, until_ms: i64) -> Result<()> {
            self.postponed.push((batch_id, until_ms));
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_claim_blocks_do_not_call_numbers_and_counts_its_own_calls_against_the_cap() {
        let rules = ClaimRules { per_number_daily_cap: 2, today_from_ms: 0, today_until_ms: 86_400_000 };
        let mut sql = Recorded { calls_today: HashMap::from([("b".to_string(), 1)]), ..Recorded::default() };
        let due = [
            (1, "a", false),
            (2, "x", true),
            (3, "b", false),
            (4, "a", false),
            (5, "b", false),
            (6, "a", false),
        ]
        .map(|(id, phone, dnc)| (id, phone.to_string(), dnc));
        let n = AtomicU32::new(0);
        let next_uuid = || format!("u{}", n.fetch_add(1, Ordering::Relaxed));
        let sifted = sift(&mut sql, due.into(), &rules, 5, &next_uuid).await.unwrap();
        assert_eq!(sifted.claim, [(1, "u0".to_string()), (3, "u1".to_string()), (4, "u2".to_string())]);
        assert_eq!(sql.blocked, [2]);
        // b had one call today and got one here; a got two here.
        assert_eq!(sql.postponed, [(5, 86_400_000), (6, 86_400_000)]);
    }

    #[tokio::test]
    async fn without_a_cap_every_due_task_is_claimed_in_order() {
        let rules = ClaimRules { per_number_daily_cap: 0, today_from_ms: 0, today_until_ms: 1 };
        let mut sql = Recorded { calls_today: HashMap::from([("a".to_string(), 99)]), ..Recorded::default() };
        let due = vec![(2, "a".to_string(), false), (1, "a".to_string(), false)];
        let sifted = sift(&mut sql, due, &rules, 5, &|| "u".to_string()).await.unwrap();
        assert_eq!(sifted.claim.iter().map(|c| c.0).collect::<Vec<_>>(), [2, 1]);
        assert!(sql.postponed.is_empty());
    }
}
