//! The counters beside the call records: `record_stats` (calls and talk time per call
//! type, hour and outcome), `record_talk` (calls per call type, campaign, hour, day or
//! all time, and talk-time bucket), `record_slots` (calls per call type, campaign, ten
//! minutes and talk time) and `extension_days` (calls per call type, extension and day),
//! kept exact in the transaction of every write of records, and what a total sums from
//! them.

use std::collections::BTreeMap;

use serde::Serialize;

use super::CallRecord;

/// The width of a `record_stats` bucket.
pub const HOUR_MS: i64 = 3_600_000;

/// The width of a counters' day (see `CounterDays`).
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// Where the counters' days (`record_talk`'s, `extension_days`') start: midnight at a UTC
/// offset of whole hours, the configured zone's standard offset, so that the zone's local
/// days and weeks are whole days of the counters (a week of Asia/Shanghai summed over UTC
/// days also read the hours of the partial days at its ends: three spans instead of one,
/// bench/RESULTS.md). Whole hours, so that a day is made of the hours of `record_talk`; a
/// zone of half hours (Asia/Kolkata) keeps the hour below its offset, a zone in summer
/// time its standard one (its local days then start an hour off, and a local week sums
/// the hours at its edges). Fixed per database (`counter_days`), chosen at its first start
/// on schema 0014 (`settle_days`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterDays {
    pub offset_ms: i64,
}

/// The days a database's counters keep, given the offset `counter_days` holds (`kept`)
/// and the configured zone's (`wanted`), and the statements that settle them: none when it
/// has days (a node of another zone keeps them, saying so: its totals stay exact, and its
/// local days sum hours at their edges); at its first start on schema 0014, those that
/// respread `record_talk` and count `extension_days` and `task_days` (kept in the backend's
/// `task_tables`) with `wanted`'s days, then write them down. Run in one transaction,
/// which on PostgreSQL first locks `counter_days` (nodes starting together then choose one
/// after the other).
pub(super) fn settle_days(
    kept: Option<i64>,
    wanted: CounterDays,
    task_tables: TaskTables,
) -> (CounterDays, Vec<String>) {
    let Some(offset_ms) = kept else {
        let mut statements = respread_talk(wanted);
        statements.extend(recount_extensions(wanted));
        statements.extend(recount_task_days(wanted, task_tables));
        statements.push(format!("INSERT INTO counter_days (offset_ms) VALUES ({})", wanted.offset_ms));
        return (wanted, statements);
    };
    if offset_ms != wanted.offset_ms {
        tracing::warn!(
            kept_hours = offset_ms / HOUR_MS,
            zone_hours = wanted.offset_ms / HOUR_MS,
            "the database's day counters start at another UTC offset than the configured timezone's: \
             totals stay exact, but a local day's total sums hours at its edges"
        );
    }
    (CounterDays { offset_ms }, Vec::new())
}

impl CounterDays {
    /// The days of `zone`: its standard offset, rounded down to whole hours.
    pub fn of_zone(zone: chrono_tz::Tz) -> CounterDays {
        use chrono::TimeZone;
        use chrono_tz::OffsetComponents;
        let offset = zone.offset_from_utc_datetime(&chrono::Utc::now().naive_utc());
        let offset_ms = offset.base_utc_offset().num_milliseconds();
        CounterDays { offset_ms: offset_ms.div_euclid(HOUR_MS) * HOUR_MS }
    }

    /// The start of the day `ms` is in.
    pub(super) fn start(self, ms: i64) -> i64 {
        (ms + self.offset_ms).div_euclid(DAY_MS) * DAY_MS - self.offset_ms
    }

    /// `start` in SQL, of the epoch ms in `column` (times since 2000: SQL's division of
    /// positive integers is `div_euclid`'s).
    pub(super) fn start_sql(self, column: &str) -> String {
        let offset = self.offset_ms;
        format!("({column} + {offset}) / {DAY_MS} * {DAY_MS} - {offset}")
    }

    /// The whole days inside `[from, until)` (open ends unbounded), if any.
    pub(super) fn whole(self, from: Option<i64>, until: Option<i64>) -> Option<(i64, i64)> {
        let shift = |ms: Option<i64>| ms.map(|ms| ms.saturating_add(self.offset_ms));
        let (lo, hi) = whole_buckets(shift(from), shift(until), DAY_MS)?;
        // Open ends stay at the extremes.
        let back = |ms: i64| if ms == i64::MIN || ms == i64::MAX { ms } else { ms - self.offset_ms };
        Some((back(lo), back(hi)))
    }
}

/// The whole buckets of `width` inside `[from, until)` (open ends unbounded) as
/// `[lo, hi)`, if any.
pub(super) fn whole_buckets(from: Option<i64>, until: Option<i64>, width: i64) -> Option<(i64, i64)> {
    let lo = from.map_or(i64::MIN, |f| f.div_euclid(width) * width + if f % width == 0 { 0 } else { width });
    let hi = until.map_or(i64::MAX, |u| u.div_euclid(width) * width);
    (lo < hi).then_some((lo, hi))
}

/// An empty `[lo, hi)`: a part with nothing to add.
const NOTHING: (i64, i64) = (0, 0);

/// How a records/list total over `[from, until)` is summed: whole days and the whole
/// hours around them from `record_talk`, and only the partial hours at the edges counted,
/// by ten-minute slots and rows (see `records::push_partial`). Each part is a `[lo, hi)`,
/// empty ones `(0, 0)`.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct TotalPlan {
    pub days: (i64, i64),
    pub hours: [(i64, i64); 2],
    pub rows: [(i64, i64); 2],
}

impl TotalPlan {
    /// The whole days as a span of `record_talk` and a `[lo, hi)` of its starts: all time
    /// when the range is open at both ends.
    pub(super) fn days_part(&self) -> (i64, (i64, i64)) {
        if self.days == (i64::MIN, i64::MAX) { (ALL_TIME, (0, 1)) } else { (DAY_MS, self.days) }
    }
}

pub(super) fn total_plan(from: Option<i64>, until: Option<i64>, days: CounterDays) -> TotalPlan {
    let span = |lo: i64, hi: i64| if lo < hi { (lo, hi) } else { NOTHING };
    let Some((lo_h, hi_h)) = whole_buckets(from, until, HOUR_MS) else {
        // No whole hour inside: both ends are set, and every row is counted.
        let rows = span(from.unwrap_or(0), until.unwrap_or(0));
        return TotalPlan { days: NOTHING, hours: [NOTHING; 2], rows: [rows, NOTHING] };
    };
    let rows = [from.map_or(NOTHING, |f| span(f, lo_h)), until.map_or(NOTHING, |u| span(hi_h, u))];
    // Open ends stay open (and unrounded, so nothing overflows).
    let open = |ms: i64, end: i64| (ms != end).then_some(ms);
    match days.whole(open(lo_h, i64::MIN), open(hi_h, i64::MAX)) {
        Some((lo_d, hi_d)) => {
            TotalPlan { days: (lo_d, hi_d), hours: [span(lo_h, lo_d), span(hi_d, hi_h)], rows }
        }
        None => TotalPlan { days: NOTHING, hours: [(lo_h, hi_h), NOTHING], rows },
    }
}

/// A change to one `record_stats` row.
#[derive(Debug, PartialEq, Eq, Serialize)]
pub(super) struct StatsDelta {
    pub call_type: &'static str,
    pub hour_ms: i64,
    pub outcome: &'static str,
    pub calls: i64,
    pub talk_secs: i64,
}

/// What replacing the records `removed` by `added` does to `record_stats`: one change
/// per row touched, none for rows left as they were, in key order (so that writers on
/// several nodes lock the rows in the same order and never deadlock).
pub(super) fn stats_deltas<'a>(
    removed: impl IntoIterator<Item = &'a CallRecord>,
    added: impl IntoIterator<Item = &'a CallRecord>,
) -> Vec<StatsDelta> {
    let mut tally = StatsTally::default();
    removed.into_iter().for_each(|r| tally.add(r, -1));
    added.into_iter().for_each(|r| tally.add(r, 1));
    tally.deltas()
}

/// Changes to `record_stats`, summed per row.
#[derive(Default)]
pub(super) struct StatsTally(BTreeMap<(&'static str, i64, &'static str), (i64, i64)>);

impl StatsTally {
    /// Counts `record` in (`sign` 1) or out (-1).
    pub(super) fn add(&mut self, record: &CallRecord, sign: i64) {
        let (hour_ms, outcome) = record.stats_key();
        let row = self.0.entry((record.call_type.code(), hour_ms, outcome)).or_default();
        row.0 += sign;
        row.1 += sign * record.time_len;
    }

    /// The rows that change, in key order.
    pub(super) fn deltas(self) -> Vec<StatsDelta> {
        self.0
            .into_iter()
            .filter(|(_, change)| *change != (0, 0))
            .map(|((call_type, hour_ms, outcome), (calls, talk_secs))| StatsDelta {
                call_type,
                hour_ms,
                outcome,
                calls,
                talk_secs,
            })
            .collect()
    }
}

/// The widths in seconds of `record_talk`'s talk-time buckets, by level (level `L`'s bucket
/// of a call is `time_len / TALK_WIDTHS[L]`): each divides the next, and they fall on the
/// round numbers a dashboard filters by (5 and 15 s, a minute, 5 and 15 minutes, an hour),
/// so that such a range is a bucket or two a level, each an index seek per span of a
/// total: 60–120 s is 2 (the second minute, and second 120), where widths in powers of 4
/// took 7 (bench/RESULTS.md). A range needs at most `2 * (ratio - 1)` buckets a level,
/// `ratio` the next level's width over its own.
pub(super) const TALK_WIDTHS: [i64; 7] = [1, 5, 15, 60, 300, 900, 3600];

/// `record_talk`'s levels, 0 to `TALK_LEVELS - 1` (buckets of 1 s to an hour); the top one
/// takes what the lower ones leave of a range as one range of buckets.
pub(super) const TALK_LEVELS: u32 = TALK_WIDTHS.len() as u32;

/// The level above them: every call, whatever its talk time, in bucket 0. A total of every
/// call then seeks one row per day or hour (a range of the top level's buckets from 0
/// would read each of its rows in the table).
pub(super) const EVERY_CALL_LEVEL: u32 = TALK_LEVELS;

/// The span of `record_talk`'s rows of every call ever (`start_ms` 0): a total with no
/// time range sums one row a bucket, not one a day of the table's history (91 days of
/// calls: 33 µs against some 3, bench/RESULTS.md).
pub(super) const ALL_TIME: i64 = 0;

/// The spans `record_talk` counts calls over: hours, days (see `CounterDays`), and all
/// time.
pub(super) const TALK_SPANS: [i64; 3] = [HOUR_MS, DAY_MS, ALL_TIME];

/// Above every stored talk time (call times are checked to lie between 2000 and now; a
/// talk time is under 2^31 s): timeLen bounds are clamped to it, so that a client's
/// `i64::MAX` overflows nothing.
pub(super) const TALK_CAP: i64 = 1 << 40;

/// The width in seconds of a bucket of `level`.
pub(super) fn talk_width(level: u32) -> i64 {
    TALK_WIDTHS[level as usize]
}

/// The `record_talk` buckets of one level that a talk-time range covers: `first` to `last`
/// (`None`: no end), and below the top level each bucket listed.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum TalkBuckets {
    /// Lower levels: at most `2 * (ratio - 1)` buckets (see `TALK_WIDTHS`).
    Listed(u32, Vec<i64>),
    /// The top level: `first..=last`.
    Range { first: i64, last: Option<i64> },
}

/// The buckets, by level, whose calls are exactly those with `min <= time_len <= max`
/// (`None`: no bound), as a segment tree splits a range: at each level the buckets up to
/// the next parent's edge on each side, the rest left to the level above. Empty when no
/// talk time is in the range.
pub(super) fn talk_buckets(min: Option<i64>, max: Option<i64>) -> Vec<TalkBuckets> {
    let mut lo = min.unwrap_or(0).clamp(0, TALK_CAP);
    // Exclusive; `None` unbounded. Bounds past the cap keep what they keep below it.
    let mut hi = max.map(|m| m.clamp(-1, TALK_CAP) + 1);
    let mut out = Vec::new();
    if hi.is_some_and(|h| h <= lo) {
        return out;
    }
    for level in 0..TALK_LEVELS {
        let width = talk_width(level);
        if level + 1 == TALK_LEVELS {
            // lo and hi are multiples of width here.
            if hi.is_none_or(|h| lo < h) {
                out.push(TalkBuckets::Range { first: lo / width, last: hi.map(|h| h / width - 1) });
            }
            break;
        }
        let parent = talk_width(level + 1);
        let mut listed = Vec::new();
        while lo % parent != 0 && hi.is_none_or(|h| lo < h) {
            listed.push(lo / width);
            lo += width;
        }
        if let Some(h) = hi.as_mut() {
            while *h % parent != 0 && lo < *h {
                *h -= width;
                listed.push(*h / width);
            }
        }
        if !listed.is_empty() {
            listed.sort_unstable();
            out.push(TalkBuckets::Listed(level, listed));
        }
        if hi.is_some_and(|h| lo >= h) {
            break;
        }
    }
    out
}

/// A change to one `record_talk` row.
#[derive(Debug, PartialEq, Eq, Serialize)]
pub(super) struct TalkDelta {
    pub call_type: &'static str,
    /// `EVERY_CAMPAIGN` or one campaign.
    pub batch_name: String,
    pub span_ms: i64,
    pub level: u32,
    pub bucket: i64,
    pub start_ms: i64,
    pub calls: i64,
}

/// `record_talk`'s and `task_hours`' campaign of the rows that count every call or task,
/// whatever their campaign.
pub const EVERY_CAMPAIGN: &str = "";

/// Changes to `record_talk`, summed per campaign, call type, hour and talk time, then
/// spread over its spans and levels (a seed's ten million calls are a few hundred
/// thousand entries per campaign). A call counts in the rows of every campaign and, if it
/// has one, of its campaign.
pub(super) struct TalkTally {
    days: CounterDays,
    calls: BTreeMap<String, BTreeMap<(&'static str, i64, i64), i64>>,
}

impl TalkTally {
    pub(super) fn new(days: CounterDays) -> TalkTally {
        TalkTally { days, calls: BTreeMap::new() }
    }

    /// Counts `record` in (`sign` 1) or out (-1).
    pub(super) fn add(&mut self, record: &CallRecord, sign: i64) {
        let hour_ms = record.callout_ms.div_euclid(HOUR_MS) * HOUR_MS;
        for campaign in std::iter::once(EVERY_CAMPAIGN).chain(record.batch_name.as_deref()) {
            // Looked up by `&str` first: a seed's adds allocate nothing.
            let calls = match self.calls.get_mut(campaign) {
                Some(calls) => calls,
                None => self.calls.entry(campaign.to_string()).or_default(),
            };
            *calls.entry((record.call_type.code(), hour_ms, record.time_len)).or_default() += sign;
        }
    }

    /// The rows that change, campaign by campaign, each in key order (see
    /// `stats_deltas`).
    pub(super) fn deltas(self) -> Vec<TalkDelta> {
        let mut out = Vec::new();
        let Ok(()) = self.each_delta(|d| {
            out.push(d);
            Ok::<(), std::convert::Infallible>(())
        });
        out
    }

    /// `deltas` one by one, a campaign's rows summed at a time (a seed of ten million
    /// calls never holds them all), until `f` fails.
    pub(super) fn each_delta<E>(self, mut f: impl FnMut(TalkDelta) -> Result<(), E>) -> Result<(), E> {
        for (campaign, calls) in self.calls {
            let mut rows: BTreeMap<(&'static str, i64, u32, i64, i64), i64> = BTreeMap::new();
            for ((call_type, hour_ms, time_len), calls) in calls {
                for span_ms in TALK_SPANS {
                    let start_ms = match span_ms {
                        DAY_MS => self.days.start(hour_ms),
                        ALL_TIME => 0,
                        _ => hour_ms,
                    };
                    for level in 0..TALK_LEVELS {
                        *rows
                            .entry((call_type, span_ms, level, time_len / talk_width(level), start_ms))
                            .or_default() += calls;
                    }
                    *rows.entry((call_type, span_ms, EVERY_CALL_LEVEL, 0, start_ms)).or_default() += calls;
                }
            }
            for ((call_type, span_ms, level, bucket, start_ms), calls) in rows {
                if calls != 0 {
                    let batch_name = campaign.clone();
                    f(TalkDelta { call_type, batch_name, span_ms, level, bucket, start_ms, calls })?;
                }
            }
        }
        Ok(())
    }
}

/// The statements that rebuild `record_talk` from its rows of level 0 by hour (every other
/// row sums some of them), with the days of `days`: at the first start on a schema that
/// changed its levels or days, and after PostgreSQL's seed. A statement per span and
/// level, each sorting the hours once (all at once, SQLite sorted fifteen times as many
/// rows in memory: 1.7 GB at 10M records). Portable SQL.
pub(super) fn respread_talk(days: CounterDays) -> Vec<String> {
    let mut statements = vec![format!("DELETE FROM record_talk WHERE span_ms <> {HOUR_MS} OR level <> 0")];
    for span_ms in TALK_SPANS {
        let start = match span_ms {
            DAY_MS => days.start_sql("start_ms"),
            ALL_TIME => "0".to_string(),
            _ => "start_ms".to_string(),
        };
        for level in (0..=EVERY_CALL_LEVEL).filter(|&level| span_ms != HOUR_MS || level > 0) {
            let bucket = if level == EVERY_CALL_LEVEL {
                "0".to_string()
            } else {
                format!("bucket / {}", talk_width(level))
            };
            statements.push(format!(
                "INSERT INTO record_talk (call_type, batch_name, span_ms, level, bucket, start_ms, calls)
                 SELECT call_type, batch_name, {span_ms}, {level}, {bucket}, {start}, SUM(calls)
                 FROM record_talk WHERE span_ms = {HOUR_MS} AND level = 0
                 GROUP BY call_type, batch_name, 5, 6 ORDER BY call_type, batch_name, 5, 6"
            ));
        }
    }
    statements
}

/// The tables a backend keeps its task counters in: (hours, days) that a recount of the
/// days reads and writes (PostgreSQL's views add changes not folded yet: not these).
pub(super) type TaskTables = (&'static str, &'static str);

/// The statements that count `task_days` afresh from `task_hours`, with `days`' days.
pub(super) fn recount_task_days(days: CounterDays, (hours, day_table): TaskTables) -> [String; 2] {
    let start = days.start_sql("hour_ms");
    [
        format!("DELETE FROM {day_table}"),
        format!(
            "INSERT INTO {day_table} (batch_name, day_ms, status, tasks, first_batch_id, last_batch_id)
             SELECT batch_name, {start}, status, SUM(tasks), MIN(first_batch_id), MAX(last_batch_id)
             FROM {hours} GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
        ),
    ]
}

/// A change to one `extension_days` row.
#[derive(Debug, PartialEq, Eq, Serialize)]
pub(super) struct ExtensionDelta {
    pub call_type: &'static str,
    pub extnum: String,
    pub day_ms: i64,
    pub calls: i64,
}

/// The statements that recount `extension_days` from the records, with the days of `days`:
/// at the first start on its schema, and after a seed. Portable SQL.
pub(super) fn recount_extensions(days: CounterDays) -> [String; 2] {
    [
        "DELETE FROM extension_days".into(),
        format!(
            "INSERT INTO extension_days (call_type, extnum, day_ms, calls)
             SELECT call_type, extnum, {}, COUNT(*)
             FROM call_records WHERE extnum IS NOT NULL GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
            days.start_sql("callout_ms")
        ),
    ]
}

/// The width of a `record_slots` slot: the edges of a range inside its hours are summed
/// by the slot, and only what lies outside whole slots is counted row by row (at most five
/// minutes an edge, from the shorter side of its slot).
pub const SLOT_MS: i64 = 600_000;

/// A change to one `record_slots` row.
#[derive(Debug, PartialEq, Eq, Serialize)]
pub(super) struct SlotDelta {
    pub call_type: &'static str,
    /// `EVERY_CAMPAIGN` or one campaign.
    pub batch_name: String,
    pub slot_ms: i64,
    pub time_len: i64,
    pub calls: i64,
}

/// The statements that count `record_slots` afresh from the records: after a seed. Portable
/// SQL (call times are after 2000: SQL's division is `div_euclid`'s).
pub(super) fn recount_slots() -> [String; 2] {
    [
        "DELETE FROM record_slots".into(),
        format!(
            "INSERT INTO record_slots (call_type, batch_name, slot_ms, time_len, calls)
             SELECT call_type, '', callout_ms / {SLOT_MS} * {SLOT_MS}, time_len, COUNT(*)
             FROM call_records GROUP BY 1, 3, 4
             UNION ALL
             SELECT call_type, batch_name, callout_ms / {SLOT_MS} * {SLOT_MS}, time_len, COUNT(*)
             FROM call_records WHERE batch_name IS NOT NULL GROUP BY 1, 2, 3, 4
             ORDER BY 1, 2, 3, 4"
        ),
    ]
}

/// What a write of records does to every counter.
pub(super) struct CounterDeltas {
    pub stats: Vec<StatsDelta>,
    pub talk: Vec<TalkDelta>,
    pub slots: Vec<SlotDelta>,
    pub extensions: Vec<ExtensionDelta>,
}

/// What replacing the records `removed` by `added` does to the counters.
pub(super) fn counter_deltas<'a>(
    days: CounterDays,
    removed: impl IntoIterator<Item = &'a CallRecord> + Clone,
    added: impl IntoIterator<Item = &'a CallRecord> + Clone,
) -> CounterDeltas {
    let mut talk = TalkTally::new(days);
    let mut slots: BTreeMap<(&'static str, &str, i64, i64), i64> = BTreeMap::new();
    let mut extensions: BTreeMap<(&'static str, &str, i64), i64> = BTreeMap::new();
    let signed =
        removed.clone().into_iter().map(|r| (r, -1)).chain(added.clone().into_iter().map(|r| (r, 1)));
    for (r, sign) in signed {
        talk.add(r, sign);
        let slot_ms = r.callout_ms.div_euclid(SLOT_MS) * SLOT_MS;
        for campaign in std::iter::once(EVERY_CAMPAIGN).chain(r.batch_name.as_deref()) {
            *slots.entry((r.call_type.code(), campaign, slot_ms, r.time_len)).or_default() += sign;
        }
        if let Some(extnum) = &r.extnum {
            *extensions
                .entry((r.call_type.code(), extnum.as_str(), days.start(r.callout_ms)))
                .or_default() += sign;
        }
    }
    let extensions = extensions
        .into_iter()
        .filter(|(_, calls)| *calls != 0)
        .map(|((call_type, extnum, day_ms), calls)| ExtensionDelta {
            call_type,
            extnum: extnum.to_string(),
            day_ms,
            calls,
        })
        .collect();
    let slots = slots
        .into_iter()
        .filter(|(_, calls)| *calls != 0)
        .map(|((call_type, campaign, slot_ms, time_len), calls)| SlotDelta {
            call_type,
            batch_name: campaign.to_string(),
            slot_ms,
            time_len,
            calls,
        })
        .collect();
    CounterDeltas { stats: stats_deltas(removed, added), talk: talk.deltas(), slots, extensions }
}

impl CounterDeltas {
    pub(super) fn is_empty(&self) -> bool {
        self.stats.is_empty() && self.talk.is_empty() && self.slots.is_empty() && self.extensions.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::CallType;

    /// The talk times `talk_buckets` covers, below `limit`, listed one by one.
    fn covered(buckets: &[TalkBuckets], limit: i64) -> Vec<i64> {
        (0..limit)
            .filter(|&t| {
                buckets.iter().any(|b| match b {
                    TalkBuckets::Listed(level, list) => list.contains(&(t / talk_width(*level))),
                    TalkBuckets::Range { first, last } => {
                        let b = t / talk_width(TALK_LEVELS - 1);
                        b >= *first && last.is_none_or(|l| b <= l)
                    }
                })
            })
            .collect()
    }

    #[test]
    fn talk_buckets_cover_exactly_the_range_with_few_buckets() {
        let limit = 3 * talk_width(TALK_LEVELS - 1) + 100;
        // Each width's edges, and bounds between them.
        let mut bounds = vec![None, Some(0), Some(1), Some(4), Some(120), Some(5000), Some(9000)];
        for width in TALK_WIDTHS {
            bounds.extend([Some(width - 1), Some(width), Some(2 * width + 1)]);
        }
        for &min in &bounds {
            for &max in &bounds {
                let buckets = talk_buckets(min, max);
                let expected: Vec<i64> = (0..limit)
                    .filter(|&t| min.is_none_or(|m| t >= m) && max.is_none_or(|m| t <= m))
                    .collect();
                assert_eq!(covered(&buckets, limit), expected, "{min:?}..={max:?}: {buckets:?}");
                for b in &buckets {
                    if let TalkBuckets::Listed(level, list) = b {
                        let ratio = talk_width(level + 1) / talk_width(*level);
                        assert!(list.len() as i64 <= 2 * (ratio - 1), "{min:?}..={max:?}: {buckets:?}");
                    }
                }
            }
        }
        // A client's extreme bounds overflow nothing.
        assert!(!talk_buckets(Some(i64::MAX), None).is_empty());
        assert!(!talk_buckets(Some(0), Some(i64::MAX)).is_empty());
        assert!(!talk_buckets(Some(i64::MAX), Some(i64::MAX)).is_empty());
        // timeLenStart 60, timeLenEnd 120: second 120 and the second minute.
        assert_eq!(
            talk_buckets(Some(60), Some(120)),
            vec![TalkBuckets::Listed(0, vec![120]), TalkBuckets::Listed(3, vec![1])]
        );
        // 30 s and up: the first two quarter-minutes are what it leaves (records' `talk_terms`
        // counts every call less those).
        assert_eq!(talk_buckets(None, Some(29)), vec![TalkBuckets::Listed(2, vec![0, 1])]);
    }

    #[test]
    fn totals_sum_whole_days_then_whole_hours_and_count_only_the_rows_at_the_edges() {
        let (h, d) = (HOUR_MS, DAY_MS);
        let (utc, beijing) = (CounterDays { offset_ms: 0 }, CounterDays::of_zone(chrono_tz::Asia::Shanghai));
        assert_eq!(beijing.offset_ms, 8 * h);
        // A local day in UTC+8, 16:00 to 16:00 UTC less a second: over UTC days, the hours
        // of two partial days; over the zone's, a day.
        let (from, until) = (Some(d + 16 * h), Some(2 * d + 16 * h - 1000));
        assert_eq!(
            total_plan(from, until, utc),
            TotalPlan {
                days: NOTHING,
                hours: [(d + 16 * h, 2 * d + 15 * h), NOTHING],
                rows: [NOTHING, (2 * d + 15 * h, 2 * d + 16 * h - 1000)]
            }
        );
        let plan = total_plan(from, Some(8 * d + 16 * h), beijing);
        assert_eq!(
            plan,
            TotalPlan { days: (d + 16 * h, 8 * d + 16 * h), hours: [NOTHING; 2], rows: [NOTHING; 2] }
        );
        assert_eq!(beijing.start(d + 16 * h - 1), 16 * h);
        assert_eq!(beijing.start(d + 16 * h), d + 16 * h);
        // A week from mid-hour to mid-hour.
        let plan = total_plan(Some(d + 30 * 60_000), Some(8 * d + h + 1), utc);
        assert_eq!(plan.days, (2 * d, 8 * d));
        assert_eq!(plan.hours, [(d + h, 2 * d), (8 * d, 8 * d + h)]);
        assert_eq!(plan.rows, [(d + 30 * 60_000, d + h), (8 * d + h, 8 * d + h + 1)]);
        // No range: all days, whatever the offset (the open ends overflow nothing).
        for days in [utc, beijing, CounterDays { offset_ms: -5 * h }] {
            let plan = total_plan(None, None, days);
            assert_eq!(plan.days, (i64::MIN, i64::MAX));
            assert_eq!(plan.rows, [NOTHING; 2]);
            assert_eq!(total_plan(Some(d + 16 * h), None, days).days.1, i64::MAX);
        }
        // Within one hour: rows only.
        assert_eq!(total_plan(Some(10), Some(h - 10), beijing).rows, [(10, h - 10), NOTHING]);
    }

    fn record(uuid: &str, hour: i64, cause: &str, answered: bool, time_len: i64) -> CallRecord {
        CallRecord {
            uuid: uuid.into(),
            call_type: CallType::AiOutbound,
            batch_id: None,
            telephone: "13800000000".into(),
            extnum: None,
            callout_ms: hour * HOUR_MS + 1_000,
            answered_ms: answered.then_some(hour * HOUR_MS + 2_000),
            ended_ms: hour * HOUR_MS + 9_000,
            time_len,
            hangup_cause: cause.into(),
            wav_path: String::new(),
            wav_url: String::new(),
            dialogue_json: "[]".into(),
            intent: String::new(),
            turn_latency_ms: None,
            batch_name: None,
        }
    }

    #[test]
    fn a_call_of_a_campaign_counts_in_every_calls_rows_and_its_campaigns() {
        let mut in_campaign = record("a", 7, "NORMAL_CLEARING:200", true, 20);
        in_campaign.batch_name = Some("春季".into());
        let without = record("b", 7, "NORMAL_CLEARING:200", true, 20);
        let mut tally = TalkTally::new(CounterDays::of_zone(chrono_tz::Asia::Shanghai));
        tally.add(&in_campaign, 1);
        tally.add(&without, 1);
        let deltas = tally.deltas();
        let calls = |campaign: &str| -> Vec<i64> {
            deltas.iter().filter(|d| d.batch_name == campaign).map(|d| d.calls).collect()
        };
        // Three spans of seven levels and every call each: 24 rows, every one counting both
        // calls, or the one.
        assert_eq!(calls(EVERY_CAMPAIGN), vec![2; 24]);
        assert_eq!(calls("春季"), vec![1; 24]);
        assert_eq!(deltas.len(), 48);
        // Hour 7 of UTC day 0 is in the Beijing day that started at 16:00 the day before.
        let starts: std::collections::BTreeSet<(i64, i64)> =
            deltas.iter().map(|d| (d.span_ms, d.start_ms)).collect();
        assert_eq!(starts, [(HOUR_MS, 7 * HOUR_MS), (DAY_MS, -8 * HOUR_MS), (ALL_TIME, 0)].into());
    }

    #[test]
    fn stats_deltas_sum_per_row_in_key_order_and_leave_out_rows_unchanged() {
        let busy = record("a", 7, "USER_BUSY:486", false, 0);
        let answered = record("a", 7, "NORMAL_CLEARING:200", true, 8);
        let crash = record("b", 5, "CRASH:null", true, 5);
        let later = record("c", 3, "NORMAL_CLEARING:200", true, 7);
        let deltas = stats_deltas([&busy, &crash], [&answered, &crash, &later]);
        let row = |hour: i64, outcome, calls, talk_secs| StatsDelta {
            call_type: "02",
            hour_ms: hour * HOUR_MS,
            outcome,
            calls,
            talk_secs,
        };
        // crash out and back in: no change to its row, so no write of it.
        assert_eq!(deltas, vec![row(3, "answered", 1, 7), row(7, "answered", 1, 8), row(7, "busy", -1, 0)]);
    }
}
