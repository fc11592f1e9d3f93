//! The rows of `callcenter seed`: calls spread over the 90 days before now (AI outbound
//! most, then inbound and manual outbound), their outcomes, talk times, phone numbers,
//! recordings and dialogues, and finished tasks. Row `i` depends only on `i` and the
//! plan, so the same plan makes the same rows. PostgreSQL makes them in SQL instead (see
//! `postgres::seed`).

use chrono::{DateTime, Datelike, FixedOffset, Timelike};

use super::CallRecord;
use crate::domain::CallType;

/// The campaign of every seeded AI call and task: the one tasks of no named campaign are in.
pub(super) const SEED_CAMPAIGN: &str = crate::domain::DEFAULT_CAMPAIGN;

/// Seeded data spreads over this many days before now.
pub(super) const SPAN_MS: i64 = 90 * 24 * 3600 * 1000;

/// Canned dialogues of seeded answered AI calls, with the intent each ends in.
pub(super) const DIALOGUES: [(&str, &str); 3] = [
    (
        r#"[{"role":"assistant","content":"您好，请问是张三吗？这里是客服中心的智能助理。"},{"role":"assistant","content":"关于您的活动通知：提醒您参加本周末的线下优惠活动。"},{"role":"user","content":"好的，我知道了。"},{"role":"assistant","content":"好的，感谢您的确认。祝您生活愉快，再见。"}]"#,
        "已确认",
    ),
    (
        r#"[{"role":"assistant","content":"您好，请问是李四吗？这里是客服中心的智能助理。"},{"role":"user","content":"请问具体是什么时间？"},{"role":"assistant","content":"您的问题我们已记录，稍后会有专人回电为您解答。"}]"#,
        "需回访",
    ),
    (
        r#"[{"role":"assistant","content":"您好，请问是王五吗？"},{"role":"user","content":"不需要，谢谢。"},{"role":"assistant","content":"好的，打扰您了。"}]"#,
        "拒绝",
    ),
];

/// How many rows to make and where they fall in time.
#[derive(Debug, Clone, Copy)]
pub(super) struct SeedPlan {
    pub records: u64,
    pub tasks: u64,
    start_ms: i64,
    record_step_ms: i64,
    task_step_ms: i64,
    /// The zone of uuids and recording paths.
    offset: FixedOffset,
}

/// A finished task, as `callcenter seed` stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SeedTask {
    pub ticket_no: String,
    pub phone: String,
    pub username: String,
    pub ticket_type: &'static str,
    pub ticket_content: &'static str,
    /// `completed` or `stopped`.
    pub status: &'static str,
    pub created_ms: i64,
    pub stopped_ms: i64,
    pub connected: bool,
    pub call_count: i64,
    pub last_hangup_cause: &'static str,
}

impl SeedPlan {
    pub(super) fn new(records: u64, tasks: u64, now_ms: i64, utc_offset_secs: i32) -> SeedPlan {
        let step = |rows: u64| (SPAN_MS / rows.max(1) as i64).max(1);
        SeedPlan {
            records,
            tasks,
            start_ms: now_ms - SPAN_MS,
            record_step_ms: step(records),
            task_step_ms: step(tasks),
            offset: FixedOffset::east_opt(utc_offset_secs).expect("a zone's offset is under a day"),
        }
    }

    /// Call record `i`. Record `i` is placed in `[start + i*step, start + (i+1)*step)`:
    /// times rise with `i`, so the rows come in uuid order and, within a second, their
    /// counters are distinct.
    pub(super) fn record(&self, i: u64) -> CallRecord {
        let h = hash(i);
        let callout_ms =
            self.start_ms + i as i64 * self.record_step_ms + (h % self.record_step_ms as u64) as i64;
        let call_type = match h % 10 {
            0..7 => CallType::AiOutbound,
            7..9 => CallType::Inbound,
            _ => CallType::ManualOutbound,
        };
        let outcome = h / 10 % 100;
        let talk_secs = 5 + (h / 1000 % 175) as i64;
        let ring_secs = 2 + (h / 175_000 % 20) as i64;
        let pick = h / 7;
        let answered = outcome < 65;
        let local =
            DateTime::from_timestamp_millis(callout_ms).expect("seed time").with_timezone(&self.offset);
        let uuid = format!(
            "{:02}{:02}{:02}{:02}{:02}{:02}99{:05}",
            local.year() % 100,
            local.month(),
            local.day(),
            local.hour(),
            local.minute(),
            local.second(),
            10001 + i % 89999
        );
        let answered_ms = answered.then_some(callout_ms + ring_secs * 1000);
        let ai_answered = answered && call_type == CallType::AiOutbound;
        let (dialogue, intent) = if ai_answered { DIALOGUES[(pick % 3) as usize] } else { ("[]", "") };
        CallRecord {
            wav_path: if ai_answered {
                // `recording::relative_path`, written out: it takes a zone, the seed an offset.
                format!(
                    "ai_call/{:04}/{:02}/{:02}/{:02}/{uuid}.wav",
                    local.year(),
                    local.month(),
                    local.day(),
                    local.hour()
                )
            } else {
                String::new()
            },
            uuid,
            call_type,
            batch_id: None,
            telephone: phone(pick),
            extnum: (call_type != CallType::AiOutbound).then(|| format!("8{:03}", pick % 1000)),
            callout_ms,
            answered_ms,
            ended_ms: callout_ms + ring_secs * 1000 + if answered { talk_secs * 1000 } else { 0 },
            time_len: if answered { ring_secs + talk_secs } else { 0 },
            hangup_cause: match outcome {
                0..65 => "NORMAL_CLEARING:sip:200",
                65..75 => "USER_BUSY:sip:486",
                75..90 => "NO_ANSWER:sip:480",
                90..95 => "NORMAL_TEMPORARY_FAILURE:sip:503",
                95..98 => "UNALLOCATED_NUMBER:sip:404",
                _ => "MANAGER_REQUEST:null",
            }
            .to_string(),
            wav_url: String::new(),
            dialogue_json: dialogue.to_string(),
            intent: intent.to_string(),
            turn_latency_ms: None,
            batch_name: (call_type == CallType::AiOutbound).then(|| SEED_CAMPAIGN.to_string()),
        }
    }

    /// Task `i`: finished (completed, one in twenty stopped), created in order over the span.
    pub(super) fn task(&self, i: u64) -> SeedTask {
        let created_ms = self.start_ms + i as i64 * self.task_step_ms;
        let pick = hash(i) / 7;
        let connected = pick % 3 != 0;
        SeedTask {
            ticket_no: format!("SEED-{created_ms}-{i}"),
            phone: phone(pick),
            username: format!("客户{}", pick % 10000),
            ticket_type: "活动通知",
            ticket_content: "尊敬的客户，提醒您参加本周末的线下优惠活动。",
            status: if pick % 20 == 0 { "stopped" } else { "completed" },
            created_ms,
            stopped_ms: created_ms + 600_000,
            connected,
            call_count: 1 + (pick % 3) as i64,
            last_hangup_cause: if connected { "NORMAL_CLEARING:sip:200" } else { "NO_ANSWER:sip:480" },
        }
    }
}

/// A well-spread 32-bit hash of the row number (Knuth's multiplicative hash).
fn hash(i: u64) -> u64 {
    (i.wrapping_mul(2_654_435_761).wrapping_add(40503)) % (1 << 32)
}

/// A mobile number: `1`, a second digit 3–9, nine more digits.
fn phone(pick: u64) -> String {
    format!("1{}{:09}", 3 + pick % 7, pick % 1_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_755_349_919_000; // 2025-08-16 13:11:59 UTC

    #[test]
    fn records_spread_over_the_span_in_uuid_order() {
        let plan = SeedPlan::new(10_000, 0, NOW, 8 * 3600);
        let rows: Vec<CallRecord> = (0..plan.records).map(|i| plan.record(i)).collect();
        assert!(rows.windows(2).all(|w| w[0].uuid < w[1].uuid && w[0].callout_ms <= w[1].callout_ms));
        assert!(rows[0].callout_ms >= NOW - SPAN_MS && rows[9_999].callout_ms < NOW);
        let share = |f: &dyn Fn(&CallRecord) -> bool| rows.iter().filter(|r| f(r)).count() as f64 / 10_000.0;
        assert!((share(&|r| r.call_type == CallType::AiOutbound) - 0.7).abs() < 0.03);
        assert!((share(&|r| r.answered_ms.is_some()) - 0.65).abs() < 0.03);
        // every answered AI call has its recording and dialogue, no other call has either
        for r in &rows {
            let ai_answered = r.answered_ms.is_some() && r.call_type == CallType::AiOutbound;
            assert_eq!(!r.wav_path.is_empty(), ai_answered, "{r:?}");
            assert_eq!(r.dialogue_json != "[]", ai_answered, "{r:?}");
            assert_eq!(r.extnum.is_none(), r.call_type == CallType::AiOutbound, "{r:?}");
            assert_eq!(r.time_len, CallRecord::time_len_of(r.callout_ms, r.answered_ms, r.ended_ms), "{r:?}");
            assert!(r.telephone.len() == 11 && r.telephone.starts_with('1'), "{r:?}");
        }
    }

    #[test]
    fn uuids_and_paths_are_local_time() {
        let plan = SeedPlan::new(100, 0, NOW, 8 * 3600);
        let r =
            (0..plan.records).map(|i| plan.record(i)).find(|r| !r.wav_path.is_empty()).expect("a recording");
        let local =
            DateTime::from_timestamp_millis(r.callout_ms).unwrap().with_timezone(&chrono_tz::Asia::Shanghai);
        assert_eq!(&r.uuid[..12], local.format("%y%m%d%H%M%S").to_string());
        assert_eq!(&r.uuid[12..14], "99");
        assert_eq!(r.wav_path, crate::recording::relative_path(&r.uuid, local));
    }
}
