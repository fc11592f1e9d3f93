//! records/list: its statements for either backend (a page, its total, and for deep
//! pages a seek by the hour counters), and which of its reads are bounded by the page.

use super::counters::{
    CounterDays, DAY_MS, EVERY_CALL_LEVEL, EVERY_CAMPAIGN, HOUR_MS, TALK_CAP, TALK_LEVELS, TalkBuckets,
    talk_buckets, total_plan,
};
use super::rows::RECORD_COLUMNS;
use super::sql::{Dialect, Sql};
use crate::domain::RecordFilter;

/// records/list pages that skip at least this many rows seek by the counters; also
/// calltask/list's.
pub(super) const SEEK_OFFSET: i64 = 1000;

/// records/list's query: the page's records, each with the list's total beside it (the
/// database computes it once), so that a request is one query and one round trip. With a
/// `Seek`, the page is read below its bound, after its rows to skip there.
pub(super) fn page(dialect: Dialect, days: CounterDays, f: &RecordFilter, seek: Option<Seek>) -> Sql {
    let mut q = Sql::new(dialect, format!("SELECT {}, ", RECORD_COLUMNS));
    push_record_total(&mut q, days, f);
    let offset = seek.map_or(f.page.offset(), |s| s.offset);
    // A page that skips rows takes its uuids from the index alone, then their rows: the
    // rows it skips cost an index step each, not a fetch of the whole record each
    // (bench/RESULTS.md).
    let deep = offset > 0;
    q.push(if deep {
        " AS total FROM call_records WHERE uuid IN (SELECT uuid FROM call_records"
    } else {
        " AS total FROM call_records"
    });
    // The seek's bound replaces the range's top (it is never above it): as a second
    // upper bound, the planner would walk the index from the first and filter.
    let until = seek.map(|s| s.until_ms).or(f.callout_until_ms);
    push_record_filter(&mut q, &RecordFilter { callout_until_ms: until, ..f.clone() });
    q.push(" ORDER BY callout_ms DESC, uuid DESC");
    q.push_page(f.page.size, offset);
    if deep {
        q.push(") ORDER BY callout_ms DESC, uuid DESC");
    }
    q
}

/// records/list's total alone: for a page past the end (a page that has rows carries it).
pub(super) fn total(dialect: Dialect, days: CounterDays, f: &RecordFilter) -> Sql {
    let mut q = Sql::new(dialect, "SELECT ");
    push_record_total(&mut q, days, f);
    q
}

/// Whether records/list's query reads a number of rows bounded by its page: its total
/// sums counters and its deep pages seek by them, or it skips few rows (an exact uuid or
/// telephone, or an extension with more filters, has few rows). Other pages skip rows in
/// proportion to the table.
pub(super) fn read_is_bounded(f: &RecordFilter) -> bool {
    counted_campaign(f).is_some() || counted_extension(f).is_some() || f.page.offset() <= BOUNDED_OFFSET
}

/// The most rows a bounded read skips (page 1,000 of 10; each an index step); also
/// calltask/list's.
pub(super) const BOUNDED_OFFSET: i64 = 10_000;

/// Where a deep page starts: below `until_ms`, after `offset` rows there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Seek {
    pub until_ms: i64,
    pub offset: i64,
}

/// `seek_parts` of an extension's filter: its whole days of `extension_days`, newest first,
/// with the calls of the partial day at the top of the range.
fn extension_seek_parts(dialect: Dialect, days: CounterDays, f: &RecordFilter, extnum: &str) -> Option<Sql> {
    let (lo, hi) = days.whole(f.callout_from_ms, f.callout_until_ms)?;
    let mut q =
        Sql::new(dialect, format!("SELECT day_ms, CAST({DAY_MS} AS BIGINT), calls, (CAST(0 AS BIGINT)"));
    if let Some(until) = f.callout_until_ms.filter(|&until| until > hi) {
        push_rows(&mut q, f, hi, until);
    }
    q.push(") FROM extension_days WHERE call_type = ").bind(f.call_type.code());
    q.push(" AND extnum = ").bind(extnum);
    q.push(" AND day_ms >= ").bind(lo).push(" AND day_ms < ").bind(hi).push(" ORDER BY day_ms DESC");
    Some(q)
}

/// A deep page's seek: the calls of each whole day and hour of its range, newest first,
/// from the counters (`seek_parts`); if the page starts inside a day, that day's hours
/// (`SeekStep::Within`). The page then skips whole days and hours by their counts instead
/// of row by row, and walks only within the hour it starts in (page 1,000 of 10 at 10M
/// records: 10,000 index steps become a few hundred counter rows and steps).
///
/// Each row of both statements: (start_ms, span_ms, calls, above), `above` being the rows
/// above the newest whole hour of the range (the partial hour at its top).
pub(super) fn seek_parts(dialect: Dialect, days: CounterDays, f: &RecordFilter) -> Option<Sql> {
    if f.page.offset() < SEEK_OFFSET {
        return None;
    }
    if let Some(extnum) = counted_extension(f) {
        return extension_seek_parts(dialect, days, f, extnum);
    }
    let campaign = counted_campaign(f)?;
    let plan = total_plan(f.callout_from_ms, f.callout_until_ms, days);
    let mut q = Sql::new(dialect, "SELECT start_ms, span_ms, CAST(SUM(calls) AS BIGINT), ");
    // The partial hour at the top (none when the range is open), bounded on both sides:
    // with one bound, PostgreSQL's generic plan expects a third of the table and starts
    // parallel workers for it (4 ms).
    q.push("(CAST(0 AS BIGINT)");
    let (lo, hi) = plan.rows[1];
    if lo < hi {
        push_rows(&mut q, f, lo, hi);
    }
    q.push(") FROM (");
    // Newest first: the whole hours at the top, the whole days, the whole hours below.
    let parts = [(HOUR_MS, plan.hours[1]), (DAY_MS, plan.days), (HOUR_MS, plan.hours[0])];
    push_counts(&mut q, f, campaign, &parts);
    q.push(") AS parts GROUP BY start_ms, span_ms ORDER BY start_ms DESC");
    Some(q)
}

/// What `seek_parts`' rows give: the seek, or the statement of the hours of the day the
/// page starts in, with what to go on from.
pub(super) enum SeekStep {
    Done(Option<Seek>),
    Within(Sql, Within),
}

/// A day the page starts inside: the rows above it, and the seek past the parts before it.
pub(super) struct Within {
    offset: i64,
    skipped: i64,
    before: Option<Seek>,
}

pub(super) fn seek_step(dialect: Dialect, f: &RecordFilter, rows: &[(i64, i64, i64, i64)]) -> SeekStep {
    let above = rows.first().map_or(0, |r| r.3);
    let offset = f.page.offset();
    let parts = rows.iter().map(|&(start_ms, span_ms, calls, _)| (start_ms, span_ms, calls));
    match walk(offset, above, parts) {
        // An extension's day holds some tens of its calls: walked, not split into hours.
        (before, Some(_)) if counted_extension(f).is_some() => SeekStep::Done(before),
        (before, Some((day_ms, skipped))) => {
            let campaign = counted_campaign(f).unwrap_or(EVERY_CAMPAIGN);
            let mut q = Sql::new(
                dialect,
                "SELECT start_ms, span_ms, CAST(SUM(calls) AS BIGINT), CAST(0 AS BIGINT) FROM (",
            );
            push_counts(&mut q, f, campaign, &[(HOUR_MS, (day_ms, day_ms + DAY_MS))]);
            q.push(") AS hours GROUP BY start_ms, span_ms ORDER BY start_ms DESC");
            SeekStep::Within(q, Within { offset, skipped, before })
        }
        (seek, None) => SeekStep::Done(seek),
    }
}

impl Within {
    /// The seek, given the day's hours (rows of the statement of `SeekStep::Within`).
    pub(super) fn seek(self, hours: &[(i64, i64, i64, i64)]) -> Option<Seek> {
        let hours = hours.iter().map(|&(start_ms, span_ms, calls, _)| (start_ms, span_ms, calls));
        walk(self.offset, self.skipped, hours).0.or(self.before)
    }
}

/// The counts of `record_talk` in the filter's buckets and campaign over `parts` (span,
/// [lo, hi)), as rows (start_ms, span_ms, calls) to sum (no row when there is nothing to
/// count: no part, or no talk time in the range).
fn push_counts(q: &mut Sql, f: &RecordFilter, campaign: &str, parts: &[(i64, (i64, i64))]) {
    let terms = talk_terms(f);
    let mut first = true;
    for &(span_ms, (lo, hi)) in parts.iter().filter(|(_, (lo, hi))| lo < hi) {
        for (sign, buckets) in &terms {
            q.push(if first { "" } else { " UNION ALL " });
            first = false;
            let sign = if *sign < 0 { "-" } else { "" };
            q.push(&format!(
                "SELECT start_ms, span_ms, {sign}calls AS calls FROM record_talk WHERE call_type = "
            ))
            .bind(f.call_type.code());
            q.push(" AND batch_name = ").bind(campaign).push(" AND span_ms = ").bind(span_ms);
            push_talk_buckets(q, buckets);
            q.push(" AND start_ms >= ").bind(lo).push(" AND start_ms < ").bind(hi);
        }
    }
    if first {
        q.push("SELECT CAST(0 AS BIGINT) AS start_ms, CAST(0 AS BIGINT) AS span_ms, CAST(0 AS BIGINT) AS calls WHERE 1 = 0");
    }
}

/// Where a page that skips `offset` rows starts, given the rows `above` the parts and the
/// parts (start_ms, span_ms, calls), newest first, each reaching up to the one before: below
/// the last part it skips whole, if any; and, if it starts inside a day, that day and the
/// rows above it.
fn walk(
    offset: i64,
    above: i64,
    parts: impl IntoIterator<Item = (i64, i64, i64)>,
) -> (Option<Seek>, Option<(i64, i64)>) {
    let mut skipped = above;
    let mut seek = None;
    for (start_ms, span_ms, calls) in parts {
        if skipped + calls > offset {
            return (seek, (span_ms == DAY_MS).then_some((start_ms, skipped)));
        }
        skipped += calls;
        seek = Some(Seek { until_ms: start_ms, offset: offset - skipped });
    }
    (seek, None)
}

/// records/list's total as a scalar expression: for a filter of call type, time, talk
/// time and campaign, summed from the counters (see `total_plan`, `talk_terms`); of call
/// type, time and extension, from `extension_days`; with an exact uuid or telephone, or
/// an extension and more, a COUNT of that column's few index entries.
fn push_record_total(q: &mut Sql, days: CounterDays, f: &RecordFilter) {
    if let Some(extnum) = counted_extension(f) {
        push_extension_total(q, days, f, extnum);
        return;
    }
    let Some(campaign) = counted_campaign(f) else {
        q.push("(SELECT COUNT(*) FROM call_records");
        push_record_filter(q, f);
        q.push(")");
        return;
    };
    let plan = total_plan(f.callout_from_ms, f.callout_until_ms, days);
    let parts = [(DAY_MS, plan.days), (HOUR_MS, plan.hours[0]), (HOUR_MS, plan.hours[1])];
    q.push("((SELECT CAST(COALESCE(SUM(calls), 0) AS BIGINT) FROM (");
    push_counts(q, f, campaign, &parts);
    q.push(") AS parts)");
    for (lo, hi) in plan.rows.into_iter().filter(|(lo, hi)| lo < hi) {
        push_rows(q, f, lo, hi);
    }
    q.push(")");
}

/// An extension's total: the calls of its whole days in `extension_days`, and those of the
/// partial days at the range's edges counted from `records_by_extnum` (an extension takes
/// some tens of calls a day; its whole history, thousands: 80 µs of SQLite's time to count).
fn push_extension_total(q: &mut Sql, days: CounterDays, f: &RecordFilter, extnum: &str) {
    let (from, until) = (f.callout_from_ms, f.callout_until_ms);
    q.push("(0");
    match days.whole(from, until) {
        // Both ends are set: less than two days.
        None => push_rows(q, f, from.unwrap_or(0), until.unwrap_or(0)),
        Some((lo, hi)) => {
            q.push(
                " + (SELECT CAST(COALESCE(SUM(calls), 0) AS BIGINT) FROM extension_days WHERE call_type = ",
            )
            .bind(f.call_type.code());
            q.push(" AND extnum = ").bind(extnum);
            q.push(" AND day_ms >= ").bind(lo).push(" AND day_ms < ").bind(hi).push(")");
            if let Some(from) = from.filter(|&from| from < lo) {
                push_rows(q, f, from, lo);
            }
            if let Some(until) = until.filter(|&until| until > hi) {
                push_rows(q, f, hi, until);
            }
        }
    }
    q.push(")");
}

/// ` + (SELECT COUNT(*) …)` of the filter's records of `[lo, hi)`.
fn push_rows(q: &mut Sql, f: &RecordFilter, lo: i64, hi: i64) {
    q.push(" + (SELECT COUNT(*) FROM call_records");
    push_record_filter(
        q,
        &RecordFilter { callout_from_ms: Some(lo), callout_until_ms: Some(hi), ..f.clone() },
    );
    q.push(")");
}

/// ` AND level = … AND bucket …` for one level's buckets.
fn push_talk_buckets(q: &mut Sql, buckets: &TalkBuckets) {
    match buckets {
        TalkBuckets::Listed(level, list) => {
            q.push(" AND level = ").bind(i64::from(*level)).push(" AND bucket IN (");
            for (i, bucket) in list.iter().enumerate() {
                q.push(if i == 0 { "" } else { ", " }).bind(*bucket);
            }
            q.push(")");
        }
        TalkBuckets::Range { first, last } => {
            q.push(" AND level = ").bind(i64::from(TALK_LEVELS - 1));
            q.push(" AND bucket >= ").bind(*first);
            if let Some(last) = last {
                q.push(" AND bucket <= ").bind(*last);
            }
        }
    }
}

/// A filter's timeLen range, clamped (see `TALK_CAP`); `None` when it keeps every call.
fn talk_range(f: &RecordFilter) -> Option<(Option<i64>, Option<i64>)> {
    let clamp = |m: i64| m.min(TALK_CAP);
    let (min, max) = (f.time_len_min.filter(|&m| m > 0).map(clamp), f.time_len_max.map(clamp));
    (min.is_some() || max.is_some()).then_some((min, max))
}

/// The `record_talk` buckets a total sums, each added (1) or taken away (-1):
/// every call (`EVERY_CALL_LEVEL`) without a timeLen range; else the range's own
/// buckets, or, when fewer, every call less the buckets outside it (`timeLenStart` 5: the
/// calls of talk time 0 to 4, five buckets, against 41 for 5 and up). Empty when no talk
/// time is in the range.
fn talk_terms(f: &RecordFilter) -> Vec<(i64, TalkBuckets)> {
    let every_call = || TalkBuckets::Listed(EVERY_CALL_LEVEL, vec![0]);
    let Some((min, max)) = talk_range(f) else {
        return vec![(1, every_call())];
    };
    let direct = talk_buckets(min, max);
    let mut complement = min.map_or_else(Vec::new, |m| talk_buckets(None, Some(m - 1)));
    if let Some(m) = max {
        complement.extend(talk_buckets(Some(m + 1), None));
    }
    // Each listed bucket is a seek per day or hour; a range, a scan of a few rows; every
    // call one more seek.
    let seeks = |plan: &[TalkBuckets]| -> usize {
        plan.iter().map(|b| if let TalkBuckets::Listed(_, list) = b { list.len() } else { 2 }).sum()
    };
    if seeks(&complement) + 1 < seeks(&direct) {
        std::iter::once((1, every_call())).chain(complement.into_iter().map(|b| (-1, b))).collect()
    } else {
        direct.into_iter().map(|b| (1, b)).collect()
    }
}

fn push_talk_filter(q: &mut Sql, f: &RecordFilter) {
    for (condition, value) in [(" AND time_len >= ", f.time_len_min), (" AND time_len <= ", f.time_len_max)] {
        if let Some(v) = value {
            q.push(condition).bind(v);
        }
    }
}

fn push_record_filter(q: &mut Sql, f: &RecordFilter) {
    // With an exact uuid or telephone, that column's index finds the few rows. On SQLite
    // the `+` keeps the planner (which has no statistics) from walking the call-type index
    // instead, because that one avoids a sort: 0.5 s a query at a million records. The
    // extension's and the campaign's indexes are followed by the call type, in the page's
    // order: no hint.
    let hint = (f.uuid.is_some() || f.telephone.is_some()) && q.dialect == Dialect::Sqlite;
    q.push(if hint { " WHERE +call_type = " } else { " WHERE call_type = " }).bind(f.call_type.code());
    for (column, value) in
        [("uuid", &f.uuid), ("telephone", &f.telephone), ("extnum", &f.extnum), ("batch_name", &f.batch_name)]
    {
        if let Some(v) = value {
            q.push(&format!(" AND {column} = ")).bind(v.as_str());
        }
    }
    for (condition, value) in
        [(" AND callout_ms >= ", f.callout_from_ms), (" AND callout_ms < ", f.callout_until_ms)]
    {
        if let Some(v) = value {
            q.push(condition).bind(v);
        }
    }
    push_talk_filter(q, f);
}

/// The extension of the `extension_days` rows a filter's total sums: nothing but the call
/// type, the time and the extension filter the records.
fn counted_extension(f: &RecordFilter) -> Option<&str> {
    let others =
        f.uuid.is_some() || f.telephone.is_some() || f.batch_name.is_some() || talk_range(f).is_some();
    f.extnum.as_deref().filter(|_| !others)
}

/// The campaign of the `record_talk` rows a filter's total sums (`EVERY_CAMPAIGN` without
/// one); `None` for an exact uuid, telephone or extension, whose total counts that
/// column's index entries.
fn counted_campaign(f: &RecordFilter) -> Option<&str> {
    let exact = f.uuid.is_some() || f.telephone.is_some() || f.extnum.is_some();
    (!exact).then(|| f.batch_name.as_deref().unwrap_or(EVERY_CAMPAIGN))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deep_page_seeks_below_the_whole_parts_it_skips_and_looks_inside_the_day_it_starts_in() {
        let h = |start_ms, calls| (start_ms, HOUR_MS, calls);
        let hours = [h(3_000, 5), h(2_000, 5), h(1_000, 5)];
        // 2 rows above the hours, then 5 in the newest: skipping 11 passes them and 4 more.
        assert_eq!(walk(11, 2, hours), (Some(Seek { until_ms: 3_000, offset: 4 }), None));
        assert_eq!(walk(12, 2, hours), (Some(Seek { until_ms: 2_000, offset: 0 }), None));
        // Not even the newest hour is skipped whole: no seek.
        assert_eq!(walk(6, 2, hours), (None, None));
        // Past the end: below the oldest hour, with what is left to skip.
        assert_eq!(walk(100, 2, hours), (Some(Seek { until_ms: 1_000, offset: 83 }), None));
        assert_eq!(walk(100, 0, []), (None, None));
        // Starting inside a day: the seek past the hours above it, and the day with the
        // rows above it, whose hours then take the walk on.
        let parts = [h(5 * DAY_MS, 5), (4 * DAY_MS, DAY_MS, 100), (3 * DAY_MS, DAY_MS, 100)];
        let (before, day) = walk(50, 0, parts);
        assert_eq!((before, day), (Some(Seek { until_ms: 5 * DAY_MS, offset: 45 }), Some((4 * DAY_MS, 5))));
        let within = Within { offset: 50, skipped: 5, before };
        let hours = [(4 * DAY_MS + 2 * HOUR_MS, HOUR_MS, 30, 0), (4 * DAY_MS + HOUR_MS, HOUR_MS, 30, 0)];
        assert_eq!(within.seek(&hours), Some(Seek { until_ms: 4 * DAY_MS + 2 * HOUR_MS, offset: 15 }));
        // A day skipped whole is a part like an hour.
        assert_eq!(
            walk(150, 0, parts),
            (Some(Seek { until_ms: 4 * DAY_MS, offset: 45 }), Some((3 * DAY_MS, 105)))
        );
    }
}
