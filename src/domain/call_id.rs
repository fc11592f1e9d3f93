use std::sync::Mutex;

use chrono_tz::Tz;

use super::ApiTime;

const FIRST: u32 = 10001;
const LAST: u32 = 99999;

/// Call uuids: `yyMMddHHmmss` + two-digit node id + a five-digit counter that starts at
/// 10001 each second, e.g. `2508162111590110001`. Unique per node as long as the node id is.
pub struct CallIdGenerator {
    node: String,
    time: ApiTime,
    /// The second (epoch) and counter of the last uuid issued.
    last: Mutex<(i64, u32)>,
}

impl CallIdGenerator {
    pub fn new(node: &str, tz: Tz) -> CallIdGenerator {
        CallIdGenerator { node: node.to_string(), time: ApiTime(tz), last: Mutex::new((i64::MIN, 0)) }
    }

    /// The uuid for a call placed at `now_ms`. In the unlikely case of more than 89,999
    /// calls in one second on one node, uuids borrow the following second.
    pub fn next(&self, now_ms: i64) -> String {
        let mut last = self.last.lock().expect("call id lock");
        let sec = now_ms.div_euclid(1000);
        *last = if sec > last.0 {
            (sec, FIRST)
        } else if last.1 < LAST {
            (last.0, last.1 + 1)
        } else {
            (last.0 + 1, FIRST)
        };
        self.format(last.0, last.1)
    }

    /// Continues after a uuid issued by an earlier run of this node, so that a quick
    /// restart within the same second cannot issue it again.
    pub fn resume_after(&self, issued: &str) {
        // Any stored uuid may come here (imports choose their own): digits only, or none.
        if issued.len() != 19 || !issued.bytes().all(|b| b.is_ascii_digit()) || issued[12..14] != self.node {
            return;
        }
        let Ok(counter) = issued[14..].parse::<u32>() else { return };
        let Some(ms) = self.time.parse(&format!(
            "20{}-{}-{} {}:{}:{}",
            &issued[0..2],
            &issued[2..4],
            &issued[4..6],
            &issued[6..8],
            &issued[8..10],
            &issued[10..12]
        )) else {
            return;
        };
        let mut last = self.last.lock().expect("call id lock");
        if (ms / 1000, counter) > *last {
            *last = (ms / 1000, counter);
        }
    }

    /// The smallest and largest uuid this node can issue in the second of `now_ms`,
    /// to look up what an earlier run issued.
    pub fn range_of_second(&self, now_ms: i64) -> (String, String) {
        let sec = now_ms.div_euclid(1000);
        (self.format(sec, FIRST), self.format(sec, LAST))
    }

    fn format(&self, sec: i64, counter: u32) -> String {
        // `sec` is this node's clock (or a second after one it issued), always in range.
        let stamp = self.time.local(sec * 1000).expect("the clock's time is in range").format("%y%m%d%H%M%S");
        format!("{stamp}{}{counter:05}", self.node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1755349919000; // 2025-08-16 21:11:59 in Shanghai

    #[test]
    fn matches_the_spec_example_and_counts_within_a_second() {
        let g = CallIdGenerator::new("01", chrono_tz::Asia::Shanghai);
        assert_eq!(g.next(T), "2508162111590110001");
        assert_eq!(g.next(T + 500), "2508162111590110002");
        assert_eq!(g.next(T + 1000), "2508162112000110001");
    }

    #[test]
    fn a_restart_in_the_same_second_continues_the_counter() {
        let g = CallIdGenerator::new("07", chrono_tz::Asia::Shanghai);
        g.resume_after("2508162111590710042");
        assert_eq!(g.next(T), "2508162111590710043");
        // another node's uuid says nothing about ours
        let h = CallIdGenerator::new("01", chrono_tz::Asia::Shanghai);
        h.resume_after("2508162111590710042");
        assert_eq!(h.next(T), "2508162111590110001");
    }

    #[test]
    fn a_full_second_borrows_the_next() {
        let g = CallIdGenerator::new("01", chrono_tz::Asia::Shanghai);
        g.resume_after("2508162111590199999");
        assert_eq!(g.next(T), "2508162112000110001");
    }
}
