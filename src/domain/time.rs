use chrono::{DateTime, Datelike, LocalResult, NaiveDateTime, TimeZone, Timelike};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// An IANA time zone name, checked when the settings load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Timezone(pub chrono_tz::Tz);

impl Default for Timezone {
    fn default() -> Self {
        Timezone(chrono_tz::Asia::Shanghai)
    }
}

impl TryFrom<String> for Timezone {
    type Error = String;
    fn try_from(name: String) -> Result<Self, String> {
        name.parse()
            .map(Timezone)
            .map_err(|_| format!("unknown time zone `{name}` (expected an IANA name such as Asia/Shanghai)"))
    }
}

impl From<Timezone> for String {
    fn from(tz: Timezone) -> String {
        tz.0.name().to_string()
    }
}

const FORMAT: &str = "%Y-%m-%d %H:%M:%S";

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The earliest call time taken from outside (2000-01-01 00:00:00 UTC): no call centre
/// holds calls from before, and a smaller number is a unit mistake or garbage.
pub const EARLIEST_CALL_MS: i64 = 946_684_800_000;

/// How far past this node's clock a call time may lie: another system's clock may run
/// ahead of ours, but not by more than a day.
pub const CALL_TIME_LEEWAY_MS: i64 = 24 * 3600 * 1000;

/// A call time taken from outside (an import, a CDR) within `EARLIEST_CALL_MS` … now +
/// `CALL_TIME_LEEWAY_MS`; the error reads after the field's name.
pub fn check_call_time(ms: i64) -> Result<i64, String> {
    if (EARLIEST_CALL_MS..=now_ms() + CALL_TIME_LEEWAY_MS).contains(&ms) {
        Ok(ms)
    } else {
        Err("超出合理范围：应在 2000-01-01 00:00:00 之后、当前时间后 1 天之前".into())
    }
}

/// A stored time that no calendar can show (a row written before times were bounded).
#[derive(Debug, thiserror::Error)]
#[error("epoch milliseconds {0} are out of the calendar's range")]
pub struct OutOfRange(pub i64);

/// The API's wall-clock times: `yyyy-MM-dd HH:mm:ss` in the configured zone.
#[derive(Debug, Clone, Copy)]
pub struct ApiTime(pub Tz);

impl ApiTime {
    pub fn local(&self, ms: i64) -> Result<DateTime<Tz>, OutOfRange> {
        self.0.timestamp_millis_opt(ms).single().ok_or(OutOfRange(ms))
    }

    /// `FORMAT`, its digits written into a buffer: `format(FORMAT)` parses the pattern again
    /// for every time, and `format!` with padded fields took some 260 ns a time, 30 times a
    /// records/list page (bench/RESULTS.md).
    pub fn format(&self, ms: i64) -> Result<String, OutOfRange> {
        let t = self.local(ms)?.naive_local();
        let Ok(year @ 0..=9999) = u32::try_from(t.year()) else {
            return Ok(t.format(FORMAT).to_string());
        };
        let mut text = *b"0000-00-00 00:00:00";
        let fields = [(0, 4, year), (5, 2, t.month()), (8, 2, t.day())];
        let clock = [(11, 2, t.hour()), (14, 2, t.minute()), (17, 2, t.second())];
        for (at, width, mut value) in fields.into_iter().chain(clock) {
            for digit in text[at..at + width].iter_mut().rev() {
                *digit = b'0' + (value % 10) as u8;
                value /= 10;
            }
        }
        Ok(std::str::from_utf8(&text).expect("ASCII digits").to_owned())
    }

    /// Parses a wall-clock time to epoch milliseconds (the start of that second).
    pub fn parse(&self, s: &str) -> Option<i64> {
        let naive = NaiveDateTime::parse_from_str(s.trim(), FORMAT).ok()?;
        match self.0.from_local_datetime(&naive) {
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => Some(t.timestamp_millis()),
            LocalResult::None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_shanghai_wall_clock() {
        let t = ApiTime(chrono_tz::Asia::Shanghai);
        let ms = t.parse("2025-08-16 21:11:59").unwrap();
        assert_eq!(ms, 1755349919000);
        assert_eq!(t.format(ms + 999).unwrap(), "2025-08-16 21:11:59");
    }

    #[test]
    fn a_repeated_hour_means_its_first_instant_and_a_skipped_one_nothing() {
        let t = ApiTime(chrono_tz::America::New_York);
        // 2026-11-01 01:30 happens at 05:30 UTC (EDT) and again at 06:30 UTC (EST).
        assert_eq!(t.parse("2026-11-01 01:30:00"), Some(1_793_511_000_000));
        assert_eq!(t.format(1_793_514_600_000).unwrap(), "2026-11-01 01:30:00");
        // 2026-03-08 02:30 never happens: clocks go from 02:00 EST to 03:00 EDT.
        assert_eq!(t.parse("2026-03-08 02:30:00"), None);
    }

    #[test]
    fn formats_as_the_pattern_does_with_padding_and_zones() {
        for zone in [chrono_tz::Asia::Shanghai, chrono_tz::America::New_York, chrono_tz::UTC] {
            let t = ApiTime(zone);
            // Fixed times, years outside four digits (written by chrono), and one time about
            // every 8 days over 30 years, through leap days and summer times.
            let fixed = [0, 1_000_000_000_123, 1_767_225_599_999, 1_704_067_200_000, 1_741_503_600_000];
            let wide = [-62_198_755_200_000, 253_402_300_800_000, 320_000_000_000_000];
            let spread = (0..1_400).map(|i| 946_684_800_000 + i * 677_777_777);
            for ms in fixed.into_iter().chain(wide).chain(spread) {
                assert_eq!(
                    t.format(ms).unwrap(),
                    t.local(ms).unwrap().format(FORMAT).to_string(),
                    "{zone} {ms}"
                );
            }
        }
    }

    #[test]
    fn a_time_no_calendar_can_show_is_an_error_not_a_panic() {
        let t = ApiTime(chrono_tz::Asia::Shanghai);
        for ms in [i64::MAX, i64::MIN, 99_999_999_999_999 * 1000, -8_400_000_000_000_000] {
            assert!(t.format(ms).is_err(), "{ms}");
        }
    }

    #[test]
    fn call_times_from_outside_lie_between_2000_and_a_day_from_now() {
        assert!(check_call_time(EARLIEST_CALL_MS).is_ok());
        assert!(check_call_time(now_ms()).is_ok());
        assert!(check_call_time(now_ms() + CALL_TIME_LEEWAY_MS - 60_000).is_ok());
        for bad in [EARLIEST_CALL_MS - 1, 0, -1, now_ms() + 2 * CALL_TIME_LEEWAY_MS, i64::MAX, i64::MIN] {
            assert!(check_call_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rejects_impossible_dates_and_other_formats() {
        let t = ApiTime(chrono_tz::Asia::Shanghai);
        for bad in ["2025-13-45 25:00:00", "2025-08-16", "2025/08/16 21:11:59", "2025-08-16T21:11:59", ""] {
            assert!(t.parse(bad).is_none(), "{bad}");
        }
    }
}
