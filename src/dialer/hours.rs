//! Calling hours: tasks wait outside the window (the global one, or their campaign's).

use std::time::Duration;

use chrono::{NaiveTime, Timelike};
use serde::{Deserialize, Serialize};

/// A daily window `HH:MM-HH:MM` in the configured time zone; `00:00-24:00` is always open.
/// A window whose end is before its start runs past midnight (`20:00-08:00`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CallingHours {
    /// Minutes after midnight.
    pub start: u32,
    pub end: u32,
}

impl CallingHours {
    pub const ALWAYS: CallingHours = CallingHours { start: 0, end: 24 * 60 };

    pub fn is_always(&self) -> bool {
        self.start == 0 && self.end == 24 * 60
    }

    pub fn contains(&self, t: NaiveTime) -> bool {
        use chrono::Timelike;
        let m = t.hour() * 60 + t.minute();
        if self.start <= self.end { self.start <= m && m < self.end } else { m >= self.start || m < self.end }
    }
}

impl TryFrom<String> for CallingHours {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let bad = || format!("calling_hours must look like \"08:00-21:00\", got `{s}`");
        let minutes = |hm: &str| -> Option<u32> {
            let (h, m) = hm.trim().split_once(':')?;
            let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
            (m < 60 && (h < 24 || (h == 24 && m == 0))).then_some(h * 60 + m)
        };
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let (start, end) = (minutes(a).ok_or_else(bad)?, minutes(b).ok_or_else(bad)?);
        if start == end || start == 24 * 60 {
            return Err(bad());
        }
        Ok(CallingHours { start, end })
    }
}

impl From<CallingHours> for String {
    fn from(h: CallingHours) -> String {
        format!("{:02}:{:02}-{:02}:{:02}", h.start / 60, h.start % 60, h.end / 60, h.end % 60)
    }
}

/// How long until the window opens; zero when it is open now.
pub fn until_open(hours: CallingHours, now: NaiveTime) -> Duration {
    if hours.contains(now) {
        return Duration::ZERO;
    }
    let now_secs = i64::from(now.num_seconds_from_midnight());
    let start_secs = i64::from(hours.start) * 60;
    Duration::from_secs((start_secs - now_secs).rem_euclid(24 * 3600) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }

    fn hours(s: &str) -> CallingHours {
        CallingHours::try_from(s.to_string()).unwrap()
    }

    #[test]
    fn inside_the_window_there_is_no_wait() {
        assert_eq!(until_open(hours("08:00-21:00"), at(8, 0)), Duration::ZERO);
        assert_eq!(until_open(hours("08:00-21:00"), at(20, 59)), Duration::ZERO);
        assert_eq!(until_open(hours("00:00-24:00"), at(23, 59)), Duration::ZERO);
    }

    #[test]
    fn before_and_after_the_window_it_waits_for_the_next_opening() {
        assert_eq!(until_open(hours("08:00-21:00"), at(7, 0)), Duration::from_secs(3600));
        assert_eq!(until_open(hours("08:00-21:00"), at(21, 0)), Duration::from_secs(11 * 3600));
    }

    #[test]
    fn a_window_across_midnight_is_open_on_both_sides() {
        let night = hours("20:00-08:00");
        assert_eq!(until_open(night, at(23, 0)), Duration::ZERO);
        assert_eq!(until_open(night, at(3, 0)), Duration::ZERO);
        assert_eq!(until_open(night, at(12, 0)), Duration::from_secs(8 * 3600));
    }

    #[test]
    fn calling_hours_parse_and_contain_their_times() {
        let h = CallingHours::try_from("08:00-21:00".to_string()).unwrap();
        let t = |h, m| NaiveTime::from_hms_opt(h, m, 0).unwrap();
        assert!(h.contains(t(8, 0)) && h.contains(t(20, 59)));
        assert!(!h.contains(t(21, 0)) && !h.contains(t(7, 59)));
        assert_eq!(String::from(h), "08:00-21:00");
        for bad in ["", "08:00", "25:00-26:00", "08:60-09:00", "09:00-09:00"] {
            assert!(CallingHours::try_from(bad.to_string()).is_err(), "{bad}");
        }
    }
}
