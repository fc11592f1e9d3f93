//! Calling hours: tasks wait outside the window, and the log says when it opens.

use std::time::Duration;

use chrono::{NaiveTime, Timelike};

use crate::config::CallingHours;
use crate::domain::{ApiTime, now_ms};

/// How long until the window opens; zero when it is open now.
pub fn until_open(hours: CallingHours, now: NaiveTime) -> Duration {
    if hours.contains(now) {
        return Duration::ZERO;
    }
    let now_secs = i64::from(now.num_seconds_from_midnight());
    let start_secs = i64::from(hours.start) * 60;
    Duration::from_secs((start_secs - now_secs).rem_euclid(24 * 3600) as u64)
}

/// Returns at once inside the window; otherwise logs when it opens and sleeps until then.
pub async fn wait_until_open(hours: CallingHours, time: ApiTime) {
    if hours.is_always() {
        return;
    }
    loop {
        let now = time.local(now_ms()).expect("the clock's time is in range");
        let wait = until_open(hours, now.time());
        if wait.is_zero() {
            return;
        }
        let opens = time.format(now_ms() + wait.as_millis() as i64).unwrap_or_default();
        tracing::info!(
            calling_hours = %String::from(hours),
            timezone = time.0.name(),
            "outside calling hours: tasks wait; dialing resumes at {opens}"
        );
        // Wake at least hourly, so a clock change cannot oversleep the window.
        tokio::time::sleep(wait.min(Duration::from_secs(3600))).await;
    }
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
}
