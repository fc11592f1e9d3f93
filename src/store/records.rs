//! records/list: its statements for either backend (a page, its total, and for deep
//! pages a seek by the day and hour counters), and which of its reads are bounded by the
//! page.

use super::counters::{
    CounterDays, DAY_MS, EVERY_CALL_LEVEL, EVERY_CAMPAIGN, HOUR_MS, SLOT_MS, TALK_CAP, TALK_LEVELS,
    TalkBuckets, talk_buckets, total_plan,
};
use super::rows::RECORD_COLUMNS;
use super::sql::{Dialect, Sql};
use crate::domain::RecordFilter;

/// records/list pages that skip at least this many rows seek by the counters; also
/// calltask/list's.
pub(super) const SEEK_OFFSET: i64 = 1000;

/// records/list's query: the page's records, each with the list's total beside it (the
/// database computes it once), so that a request is one query and one round trip. With
/// the `start`'s seek, the page is read below its bound, or up from the bottom of its part;
/// with its `top_calls`, the total adds them.
pub(super) fn page(dialect: Dialect, days: CounterDays, f: &RecordFilter, start: Start) -> Sql {
    let mut q = Sql::new(dialect, format!("SELECT {}, ", RECORD_COLUMNS));
    push_record_total(&mut q, days, f, start.top_calls);
    // The seek's bounds replace the range's (they are never outside it): as a second
    // bound, the planner would walk the index from the first and filter.
    let (from, until, offset, up) = match start.seek {
        None => (f.callout_from_ms, f.callout_until_ms, f.page.offset(), false),
        Some(Seek::Below { until_ms, offset }) => (f.callout_from_ms, Some(until_ms), offset, false),
        Some(Seek::Up { from_ms, until_ms, offset }) => (Some(from_ms), Some(until_ms), offset, true),
    };
    // A page that skips rows takes its uuids from the index alone, then their rows: the
    // rows it skips cost an index step each, not a fetch of the whole record each
    // (bench/RESULTS.md). A page read upwards is put back in the list's order.
    let nested = offset > 0 || up;
    q.push(if nested {
        " AS total FROM call_records WHERE uuid IN (SELECT uuid FROM call_records"
    } else {
        " AS total FROM call_records"
    });
    push_record_filter(&mut q, &RecordFilter { callout_from_ms: from, callout_until_ms: until, ..f.clone() });
    q.push(if up { " ORDER BY callout_ms, uuid" } else { " ORDER BY callout_ms DESC, uuid DESC" });
    q.push_page(f.page.size, offset);
    if nested {
        q.push(") ORDER BY callout_ms DESC, uuid DESC");
    }
    q
}

/// records/list's total alone: for a page past the end (a page that has rows carries it).
pub(super) fn total(dialect: Dialect, days: CounterDays, f: &RecordFilter) -> Sql {
    let mut q = Sql::new(dialect, "SELECT ");
    push_record_total(&mut q, days, f, None);
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

/// Where a deep page starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Seek {
    /// Below `until_ms`, after `offset` rows there (newest first).
    Below { until_ms: i64, offset: i64 },
    /// Inside the part `[from_ms, until_ms)`, `offset` rows up from its oldest: a page
    /// nearer a part's bottom than its top is read upwards from there.
    Up { from_ms: i64, until_ms: i64, offset: i64 },
}

/// Where a page starts (`seek`: `None` from the range's top), and the range's calls above
/// its whole hours when the seek has counted them: the page's total adds that count rather
/// than count the same rows again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Start {
    pub seek: Option<Seek>,
    pub top_calls: Option<i64>,
}

/// A part of a seek: (start_ms, span_ms, calls), the filter's calls in
/// `[start_ms, start_ms + span_ms)`.
pub(super) type Part = (i64, i64, i64);

/// `seek_parts` of an extension's filter: the partial day at the top of the range, then its
/// whole days of `extension_days`, newest first.
fn extension_seek_parts(dialect: Dialect, days: CounterDays, f: &RecordFilter, extnum: &str) -> Option<Sql> {
    let (lo, hi) = days.whole(f.callout_from_ms, f.callout_until_ms)?;
    let mut q = Sql::new(dialect, "");
    push_partial_top(&mut q, f, hi, None);
    q.push("SELECT day_ms AS start_ms, CAST(")
        .push(&DAY_MS.to_string())
        .push(" AS BIGINT) AS span_ms, calls");
    q.push(" FROM extension_days WHERE call_type = ").bind(f.call_type.code());
    q.push(" AND extnum = ").bind(extnum);
    q.push(" AND day_ms >= ").bind(lo).push(" AND day_ms < ").bind(hi).push(" ORDER BY start_ms DESC");
    Some(q)
}

/// A deep page's seek: the calls of the partial hour at the top of its range and of each
/// whole hour and day below, newest first, from the counters; if the page starts inside a
/// day, that day's hours (`SeekStep::Within`). The page then skips whole days and hours by
/// their counts instead of row by row, and walks only within the hour it starts in, from
/// its nearer end (page 1,000 of 10 at 10M records: 10,000 index steps become some tens of
/// counter rows and a few hundred steps).
///
/// Its rows are parts (`Part`), one row per bucket, merged newest first by the database
/// from the counters' index (no sort), to be summed by `parts`: a walk reads only the
/// rows down to the part its page starts in.
pub(super) fn seek_parts(dialect: Dialect, days: CounterDays, f: &RecordFilter) -> Option<Sql> {
    if f.page.offset() < SEEK_OFFSET {
        return None;
    }
    if let Some(extnum) = counted_extension(f) {
        return extension_seek_parts(dialect, days, f, extnum);
    }
    let campaign = counted_campaign(f)?;
    let plan = total_plan(f.callout_from_ms, f.callout_until_ms, days);
    let mut q = Sql::new(dialect, "");
    let (lo, hi) = plan.rows[1];
    if lo < hi {
        push_partial_top(&mut q, f, lo, Some(campaign));
    }
    let parts = [(HOUR_MS, plan.hours[1]), (DAY_MS, plan.days), (HOUR_MS, plan.hours[0])];
    push_bucket_counts(&mut q, f, campaign, &parts);
    q.push(" ORDER BY start_ms DESC");
    Some(q)
}

/// The first row of a seek's statement: the range's calls from `lo` to its top (those above
/// its whole hours or days), as a part: counted by the hour and the slot (`push_partial`)
/// with the campaign of the counters, else row by row. Counted between both bounds: with one,
/// PostgreSQL's generic plan expects a third of the table and starts parallel workers for
/// it (4 ms).
fn push_partial_top(q: &mut Sql, f: &RecordFilter, lo: i64, campaign: Option<&str>) {
    if let Some(until) = f.callout_until_ms.filter(|&until| until > lo) {
        q.push("SELECT CAST(").bind(lo).push(" AS BIGINT) AS start_ms, CAST(").bind(until - lo);
        q.push(" AS BIGINT) AS span_ms, (CAST(0 AS BIGINT)");
        match campaign {
            Some(campaign) => push_partial(q, f, campaign, lo, until),
            None => push_rows(q, f, lo, until),
        }
        q.push(") AS calls UNION ALL ");
    }
}

/// The rows of a seek's statement (one per part and bucket, newest first) summed into its
/// parts, read no further than the walk needs.
pub(super) fn parts(rows: impl Iterator<Item = Part>) -> impl Iterator<Item = Part> {
    let mut rows = rows.peekable();
    std::iter::from_fn(move || {
        let (start_ms, span_ms, mut calls) = rows.next()?;
        while let Some(row) = rows.next_if(|row| row.0 == start_ms) {
            calls += row.2;
        }
        Some((start_ms, span_ms, calls))
    })
}

/// What `seek_parts`' parts give: the seek, or the statement of the hours of the day the
/// page starts in, with what to go on from.
pub(super) enum SeekStep {
    Done(Start),
    Within(Sql, Within),
}

/// A day the page starts inside: the rows above it, the seek past the parts before it, and
/// the calls of the range's partial top.
pub(super) struct Within {
    offset: i64,
    size: i64,
    skipped: i64,
    before: Option<Seek>,
    top_calls: Option<i64>,
}

pub(super) fn seek_step(
    dialect: Dialect,
    days: CounterDays,
    f: &RecordFilter,
    parts: impl Iterator<Item = Part>,
) -> SeekStep {
    let (offset, size) = (f.page.offset(), i64::from(f.page.size));
    let mut parts = parts.peekable();
    // The first part is the partial top of `seek_parts`, if it has one (an extension's
    // differs from the total's: not taken).
    let (lo, hi) = total_plan(f.callout_from_ms, f.callout_until_ms, days).rows[1];
    let top_calls = parts
        .peek()
        .filter(|&&(start_ms, span_ms, _)| {
            counted_extension(f).is_none() && lo < hi && (start_ms, span_ms) == (lo, hi - lo)
        })
        .map(|part| part.2);
    let done = |seek| SeekStep::Done(Start { seek, top_calls });
    match walk(offset, 0, parts) {
        // An extension's day holds some tens of its calls: walked, not split into hours.
        (before, Some(((day_ms, DAY_MS, _), skipped))) if counted_extension(f).is_none() => {
            let campaign = counted_campaign(f).unwrap_or(EVERY_CAMPAIGN);
            let mut q = Sql::new(dialect, "");
            push_bucket_counts(&mut q, f, campaign, &[(HOUR_MS, (day_ms, day_ms + DAY_MS))]);
            q.push(" ORDER BY start_ms DESC");
            SeekStep::Within(q, Within { offset, size, skipped, before, top_calls })
        }
        (before, Some((part, skipped))) => done(into_part(before, part, offset - skipped, size)),
        (seek, None) => done(seek),
    }
}

impl Within {
    /// Where the page starts, given the day's hours (the parts of the statement of
    /// `SeekStep::Within`).
    pub(super) fn start(self, hours: impl Iterator<Item = Part>) -> Start {
        let seek = match walk(self.offset, self.skipped, hours) {
            (before, Some((hour, skipped))) => {
                into_part(before.or(self.before), hour, self.offset - skipped, self.size)
            }
            (seek, None) => seek.or(self.before),
        };
        Start { seek, top_calls: self.top_calls }
    }
}

/// The seek of a page that starts `into` rows inside `part`: up from the part's oldest row
/// when fewer rows lie below the page than above it (and the page ends inside the part),
/// else down from `before`.
fn into_part(before: Option<Seek>, part: Part, into: i64, size: i64) -> Option<Seek> {
    let (start_ms, span_ms, calls) = part;
    let below = calls - into - size;
    if below >= 0 && below < into {
        Some(Seek::Up { from_ms: start_ms, until_ms: start_ms + span_ms, offset: below })
    } else {
        before
    }
}

/// The counts of `record_talk` in the filter's buckets and campaign over `parts` (span,
/// [lo, hi)), as rows (start_ms, span_ms, calls) of one bucket each, so that each is read
/// from the index in time order and the database merges them (no row when there is nothing
/// to count: no part, or no talk time in the range).
fn push_bucket_counts(q: &mut Sql, f: &RecordFilter, campaign: &str, parts: &[(i64, (i64, i64))]) {
    let terms: Vec<(i64, TalkBuckets)> = talk_terms(f)
        .into_iter()
        .flat_map(|(sign, buckets)| match buckets {
            TalkBuckets::Listed(level, list) => {
                list.into_iter().map(|b| (sign, TalkBuckets::Listed(level, vec![b]))).collect()
            }
            range => vec![(sign, range)],
        })
        .collect();
    push_counts(q, f, campaign, &terms, parts);
}

/// The counts of `record_talk` in the filter's campaign of `terms` over `parts` (span,
/// [lo, hi)), as rows (start_ms, span_ms, calls) to sum (no row when there is nothing to
/// count: no part, or no talk time in the range).
fn push_counts(
    q: &mut Sql,
    f: &RecordFilter,
    campaign: &str,
    terms: &[(i64, TalkBuckets)],
    parts: &[(i64, (i64, i64))],
) {
    let mut first = true;
    for &(span_ms, (lo, hi)) in parts.iter().filter(|(_, (lo, hi))| lo < hi) {
        for (sign, buckets) in terms {
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

/// Where a page that skips `offset` rows starts, given the rows `skipped` above the parts
/// and the parts, newest first, each reaching up to the one before: below the last part
/// it skips whole, if any; and the part it starts in, if any, with the rows above it.
fn walk(
    offset: i64,
    mut skipped: i64,
    parts: impl IntoIterator<Item = Part>,
) -> (Option<Seek>, Option<(Part, i64)>) {
    let mut seek = None;
    for part in parts {
        let (start_ms, _, calls) = part;
        if skipped + calls > offset {
            return (seek, Some((part, skipped)));
        }
        skipped += calls;
        seek = Some(Seek::Below { until_ms: start_ms, offset: offset - skipped });
    }
    (seek, None)
}

/// records/list's total as a scalar expression: for a filter of call type, time, talk
/// time and campaign, summed from the counters (see `total_plan`, `talk_terms`), with the
/// partial top's `top_calls` if a seek has counted them; of call type, time and extension,
/// from `extension_days`; with an exact uuid or telephone, or an extension and more, a
/// COUNT of that column's few index entries.
fn push_record_total(q: &mut Sql, days: CounterDays, f: &RecordFilter, top_calls: Option<i64>) {
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
    let parts = [plan.days_part(), (HOUR_MS, plan.hours[0]), (HOUR_MS, plan.hours[1])];
    q.push("((SELECT CAST(COALESCE(SUM(calls), 0) AS BIGINT) FROM (");
    push_counts(q, f, campaign, &talk_terms(f), &parts);
    q.push(") AS parts)");
    let [bottom, top] = plan.rows;
    for (lo, hi) in [bottom, top].into_iter().filter(|(lo, hi)| lo < hi) {
        match top_calls.filter(|_| (lo, hi) == top) {
            Some(calls) => {
                q.push(" + CAST(").bind(calls).push(" AS BIGINT)");
            }
            None => push_partial(q, f, campaign, lo, hi),
        }
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

/// ` + …` the filter's calls in `[lo, hi)`, a span with no whole hour in it (a range's
/// edges), in the campaign's counters: each piece of it within an hour from the shorter
/// side of its hour, its own slots and rows (`push_slots`) or, when it is the longer part
/// of its hour, the hour's counters less the slots and rows of the rest of the hour (a
/// range from 10:10 sums the ten minutes before it, not the fifty after).
fn push_partial(q: &mut Sql, f: &RecordFilter, campaign: &str, lo: i64, hi: i64) {
    let mut start = lo;
    while start < hi {
        let hour = start.div_euclid(HOUR_MS) * HOUR_MS;
        let end = hi.min(hour + HOUR_MS);
        if 2 * (end - start) <= HOUR_MS {
            push_slots(q, f, campaign, &[(start, end)]);
        } else {
            q.push(" + (SELECT CAST(COALESCE(SUM(calls), 0) AS BIGINT) FROM (");
            push_counts(q, f, campaign, &talk_terms(f), &[(HOUR_MS, (hour, hour + HOUR_MS))]);
            q.push(") AS hour) - (0");
            push_slots(q, f, campaign, &[(hour, start), (end, hour + HOUR_MS)]);
            q.push(")");
        }
        start = end;
    }
}

/// ` + …` the filter's calls in `spans` (each a `[lo, hi)` inside one hour): the whole
/// ten-minute slots they hold summed from `record_slots` (a seek a slot, then the slot's
/// talk times in the filter's range), and each partial slot from its shorter side, its own
/// rows or its slot less the rows of the rest of the slot: at most five minutes of rows a
/// slot.
fn push_slots(q: &mut Sql, f: &RecordFilter, campaign: &str, spans: &[(i64, i64)]) {
    let (mut slots, mut rows) = (Vec::new(), Vec::new());
    for &(lo, hi) in spans {
        let mut start = lo;
        while start < hi {
            let slot = start.div_euclid(SLOT_MS) * SLOT_MS;
            let end = hi.min(slot + SLOT_MS);
            if 2 * (end - start) <= SLOT_MS {
                rows.push((" + (0", (start, end)));
            } else {
                slots.push(slot);
                rows.extend([(" - (0", (slot, start)), (" - (0", (end, slot + SLOT_MS))]);
            }
            start = end;
        }
    }
    if !slots.is_empty() {
        q.push(" + (SELECT CAST(COALESCE(SUM(calls), 0) AS BIGINT) FROM record_slots WHERE call_type = ")
            .bind(f.call_type.code());
        q.push(" AND batch_name = ").bind(campaign).push(" AND slot_ms IN (");
        for (i, &slot) in slots.iter().enumerate() {
            q.push(if i == 0 { "" } else { ", " }).bind(slot);
        }
        q.push(")");
        push_talk_filter(q, f);
        q.push(")");
    }
    for (sign, (lo, hi)) in rows.into_iter().filter(|(_, (lo, hi))| lo < hi) {
        q.push(sign);
        push_rows(q, f, lo, hi);
        q.push(")");
    }
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
/// calls of talk time 0 to 4, one bucket of 5 s, against 14 and a range for 5 and up).
/// Empty when no talk time is in the range.
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
    use crate::store::sql::Arg;

    #[test]
    fn a_deep_page_seeks_below_the_whole_parts_it_skips_and_looks_inside_the_day_it_starts_in() {
        let below = |until_ms, offset| Some(Seek::Below { until_ms, offset });
        let h = |start_ms, calls| (start_ms, HOUR_MS, calls);
        let hours = [h(3 * HOUR_MS, 5), h(2 * HOUR_MS, 5), h(HOUR_MS, 5)];
        // 2 rows above the hours, then 5 in the newest: skipping 11 passes them and 4 more.
        assert_eq!(walk(11, 2, hours), (below(3 * HOUR_MS, 4), Some((hours[1], 7))));
        assert_eq!(walk(12, 2, hours), (below(2 * HOUR_MS, 0), Some((hours[2], 12))));
        // Not even the newest hour is skipped whole: no seek.
        assert_eq!(walk(6, 2, hours), (None, Some((hours[0], 2))));
        // Past the end: below the oldest hour, with what is left to skip.
        assert_eq!(walk(100, 2, hours), (below(HOUR_MS, 83), None));
        assert_eq!(walk(100, 0, []), (None, None));
        // A day skipped whole is a part like an hour.
        let parts = [h(5 * DAY_MS, 5), (4 * DAY_MS, DAY_MS, 100), (3 * DAY_MS, DAY_MS, 100)];
        assert_eq!(walk(150, 0, parts), (below(4 * DAY_MS, 45), Some((parts[2], 105))));
        // Starting inside a day: its hours take the walk on, after the rows above it.
        let (before, day) = walk(50, 0, parts);
        assert_eq!((before, day), (below(5 * DAY_MS, 45), Some((parts[1], 5))));
        let within = |offset, size, skipped| Within { offset, size, skipped, before, top_calls: None };
        let hours = [(4 * DAY_MS + 2 * HOUR_MS, HOUR_MS, 30), (4 * DAY_MS + HOUR_MS, HOUR_MS, 70)];
        // 50 skips the first hour's 30 and 15 of the second's 70, and reads down from there.
        assert_eq!(within(50, 10, 5).start(hours.into_iter()).seek, below(4 * DAY_MS + 2 * HOUR_MS, 15));
        // 90 is 55 rows into the second hour: 5 lie below its page, read upwards past them.
        let up = Seek::Up { from_ms: 4 * DAY_MS + HOUR_MS, until_ms: 4 * DAY_MS + 2 * HOUR_MS, offset: 5 };
        assert_eq!(within(90, 10, 5).start(hours.into_iter()).seek, Some(up));
        // A page that runs past the hour's bottom is read downwards.
        assert_eq!(within(100, 10, 5).start(hours.into_iter()).seek, below(4 * DAY_MS + 2 * HOUR_MS, 65));
    }

    #[test]
    fn a_deep_pages_total_takes_the_partial_top_its_seek_counted() {
        let days = CounterDays { offset_ms: 0 };
        // 10:10 one day to 10:20 four days later: the top's 20 minutes lie above whole hours.
        let (from, until) = (DAY_MS + 10 * HOUR_MS + 600_000, 5 * DAY_MS + 10 * HOUR_MS + 1_200_000);
        let f = RecordFilter {
            call_type: crate::domain::CallType::AiOutbound,
            uuid: None,
            telephone: None,
            extnum: None,
            callout_from_ms: Some(from),
            callout_until_ms: Some(until),
            time_len_min: Some(60),
            time_len_max: Some(120),
            batch_name: None,
            page: crate::domain::Page { num: 101, size: 10 },
        };
        let top = (5 * DAY_MS + 10 * HOUR_MS, 1_200_000, 7);
        let parts = [top, (5 * DAY_MS + 9 * HOUR_MS, HOUR_MS, 900), (5 * DAY_MS + 8 * HOUR_MS, HOUR_MS, 600)];
        let SeekStep::Done(start) = seek_step(Dialect::Sqlite, days, &f, parts.into_iter()) else {
            panic!("the page starts in an hour: no day to split");
        };
        assert_eq!(
            start,
            Start {
                seek: Some(Seek::Below { until_ms: 5 * DAY_MS + 9 * HOUR_MS, offset: 93 }),
                top_calls: Some(7)
            }
        );
        // The total adds the 7 rather than count the top's calls again (its two slots).
        let top_counted = |start| {
            let text = page(Dialect::Sqlite, days, &f, start).text;
            text.matches("COUNT(*)").count() + text.matches("FROM record_slots").count()
        };
        assert_eq!(top_counted(start) + 1, top_counted(Start { top_calls: None, ..start }));
        assert!(page(Dialect::Sqlite, days, &f, start).args.contains(&Arg::Int(7)));
        // Without a partial top (a range to the hour) the seek has none to give.
        let to_the_hour = RecordFilter { callout_until_ms: Some(5 * DAY_MS + 10 * HOUR_MS), ..f.clone() };
        let SeekStep::Done(start) =
            seek_step(Dialect::Sqlite, days, &to_the_hour, parts[1..].iter().copied())
        else {
            panic!("the page starts in an hour");
        };
        assert_eq!(start.top_calls, None);
    }

    #[test]
    fn a_seeks_rows_of_one_start_are_summed_into_one_part() {
        let rows = [(9, 1, 5), (9, 1, -2), (8, 1, 4), (7, 1, 1), (7, 1, 1)];
        assert_eq!(parts(rows.into_iter()).collect::<Vec<_>>(), [(9, 1, 3), (8, 1, 4), (7, 1, 2)]);
        // Read no further than asked: one row past the part taken.
        let mut read = 0;
        let mut summed = parts(rows.into_iter().inspect(|_| read += 1));
        assert_eq!(summed.next(), Some((9, 1, 3)));
        drop(summed);
        assert_eq!(read, 3);
    }
}
