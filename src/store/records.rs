//! records/list: its statements for either backend (a page, its total, and for deep
//! pages a seek by the hour counters), and which of its reads are bounded by the page.

use super::counters::{
    DAY_MS, EVERY_CALL_LEVEL, EVERY_CAMPAIGN, HOUR_MS, TALK_CAP, TALK_LEVELS, TalkBuckets, talk_buckets,
    total_plan, whole_buckets,
};
use super::rows::RECORD_COLUMNS;
use super::sql::{Dialect, Sql};
use crate::domain::RecordFilter;

/// records/list pages that skip at least this many rows seek by the hour counters.
const SEEK_OFFSET: i64 = 1000;

/// records/list's query: the page's records, each with the list's total beside it (the
/// database computes it once), so that a request is one query and one round trip. With a
/// `Seek`, the page is read below its bound, after its rows to skip there.
pub(super) fn page(dialect: Dialect, f: &RecordFilter, seek: Option<Seek>) -> Sql {
    let mut q = Sql::new(dialect, format!("SELECT {}, ", RECORD_COLUMNS));
    push_record_total(&mut q, f);
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
pub(super) fn total(dialect: Dialect, f: &RecordFilter) -> Sql {
    let mut q = Sql::new(dialect, "SELECT ");
    push_record_total(&mut q, f);
    q
}

/// Whether records/list's query reads a number of rows bounded by its page: its total
/// sums counters and its deep pages seek by them over the whole range, or it skips few
/// rows (the total of a timeLen filter or a campaign is summed too; an exact uuid,
/// telephone or extension has few rows). Other pages skip rows in proportion to the
/// table.
pub(super) fn read_is_bounded(f: &RecordFilter) -> bool {
    seeks_every_hour(f) || f.page.offset() <= BOUNDED_OFFSET
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

/// For a deep page of a filter of call type and time alone: the calls of each whole hour
/// of its range, newest first (`hour_ms`, `calls`), each row also carrying `above`, the
/// rows above the newest whole hour (the partial hour at the top of the range). The page
/// then skips whole hours by their counters instead of row by row (page 1,000 of 10 at 10M
/// records: 10,000 index steps become three hours' counters and a few hundred steps).
pub(super) fn seek_hours(dialect: Dialect, f: &RecordFilter) -> Option<Sql> {
    let campaign = counted_campaign(f)?;
    if f.page.offset() < SEEK_OFFSET {
        return None;
    }
    if !seeks_every_hour(f) {
        return seek_talk_hours(dialect, f, campaign);
    }
    let (lo, hi) = whole_buckets(f.callout_from_ms, f.callout_until_ms, HOUR_MS)?;
    let mut q = Sql::new(
        dialect,
        "SELECT hour_ms, CAST(SUM(calls) AS BIGINT), (SELECT COUNT(*) FROM call_records WHERE call_type = ",
    );
    q.bind(f.call_type.code()).push(" AND callout_ms >= ").bind(hi);
    q.push(" AND callout_ms < ").bind(f.callout_until_ms.unwrap_or(hi));
    q.push(") FROM record_stats WHERE call_type = ").bind(f.call_type.code());
    q.push(" AND hour_ms >= ").bind(lo).push(" AND hour_ms < ").bind(hi);
    q.push(" GROUP BY hour_ms ORDER BY hour_ms DESC");
    Some(q)
}

/// The hours a deep page under a timeLen filter or a campaign reads the counts of: the
/// newest week of its range (each hour costs a seek per bucket). A page deeper than the
/// week's calls seeks below the week and walks the rest.
const SEEK_TALK_HOURS: i64 = 7 * 24;

/// `seek_hours` from `record_talk`: each hour's calls of the campaign in the range's
/// buckets (or every call less those outside it), for the newest `SEEK_TALK_HOURS` whole
/// hours of the range.
fn seek_talk_hours(dialect: Dialect, f: &RecordFilter, campaign: &str) -> Option<Sql> {
    let (lo, hi) = whole_buckets(f.callout_from_ms, f.callout_until_ms, HOUR_MS)?;
    let terms = talk_terms(f);
    if terms.is_empty() {
        // Nothing is in the range: no hour to skip.
        return None;
    }
    let code = f.call_type.code();
    let mut q =
        Sql::new(dialect, "SELECT hour_ms, CAST(SUM(calls) AS BIGINT), (SELECT COUNT(*) FROM call_records");
    push_record_filter(&mut q, &RecordFilter { callout_from_ms: Some(hi), ..f.clone() });
    q.push(") FROM (");
    // The newest week of the range: below its top, or below the hour of the newest call.
    // One lower bound (the greater), so that the planner seeks to it rather than to the
    // range's start.
    let in_week = |q: &mut Sql| {
        match f.callout_until_ms {
            Some(_) => {
                q.push(" AND start_ms >= ").bind(lo.max(hi.saturating_sub(SEEK_TALK_HOURS * HOUR_MS)));
            }
            None => {
                let greatest = if dialect == Dialect::Sqlite { "MAX" } else { "GREATEST" };
                q.push(&format!(" AND start_ms >= {greatest}(")).bind(lo);
                q.push(", (SELECT COALESCE(MAX(callout_ms), 0) FROM call_records");
                push_record_filter(q, &RecordFilter { time_len_min: None, time_len_max: None, ..f.clone() });
                q.push(") / ").bind(HOUR_MS).push(" * ").bind(HOUR_MS);
                q.push(" - ").bind((SEEK_TALK_HOURS - 1) * HOUR_MS).push(")");
            }
        }
        q.push(" AND start_ms < ").bind(hi);
    };
    for (i, (sign, buckets)) in terms.iter().enumerate() {
        if i > 0 {
            q.push(" UNION ALL ");
        }
        let sign = if *sign < 0 { "-" } else { "" };
        q.push(&format!(
            "SELECT start_ms AS hour_ms, {sign}calls AS calls FROM record_talk WHERE call_type = "
        ))
        .bind(code);
        q.push(" AND batch_name = ").bind(campaign).push(" AND span_ms = ").bind(HOUR_MS);
        push_talk_buckets(&mut q, buckets);
        in_week(&mut q);
    }
    q.push(") AS hours GROUP BY hour_ms ORDER BY hour_ms DESC");
    Some(q)
}

/// The seek of `seek_hours`' rows: (hour_ms, calls, above).
pub(super) fn seek_by_hours(f: &RecordFilter, hours: &[(i64, i64, i64)]) -> Option<Seek> {
    let above = hours.first().map_or(0, |h| h.2);
    seek(f.page.offset(), above, hours.iter().map(|&(hour_ms, calls, _)| (hour_ms, calls)))
}

/// Where a page that skips `offset` rows starts, given the rows `above` the newest whole
/// hour and the whole hours' calls, newest first: below the last hour it skips whole, if
/// any.
pub(super) fn seek(offset: i64, above: i64, hours: impl IntoIterator<Item = (i64, i64)>) -> Option<Seek> {
    let mut skipped = above;
    let mut seek = None;
    for (hour_ms, calls) in hours {
        if skipped + calls > offset {
            break;
        }
        skipped += calls;
        seek = Some(Seek { until_ms: hour_ms, offset: offset - skipped });
    }
    seek
}

/// records/list's total as a scalar expression: for a filter of call type, time, talk
/// time and campaign, summed from the counters (see `total_plan`, `talk_buckets`); with
/// an exact uuid, telephone or extension, a COUNT of that column's few index entries.
fn push_record_total(q: &mut Sql, f: &RecordFilter) {
    let Some(campaign) = counted_campaign(f) else {
        q.push("(SELECT COUNT(*) FROM call_records");
        push_record_filter(q, f);
        q.push(")");
        return;
    };
    let plan = total_plan(f.callout_from_ms, f.callout_until_ms);
    q.push("(0");
    if seeks_every_hour(f) {
        // Every call of the type: the calls per day and hour.
        for (aggregate, column, (lo, hi)) in plan.parts() {
            q.push(&format!(" + (SELECT {aggregate} WHERE call_type = ")).bind(f.call_type.code());
            q.push(&format!(" AND {column} >= ")).bind(lo);
            q.push(&format!(" AND {column} < ")).bind(hi).push(")");
        }
        q.push(")");
        return;
    }
    let terms = talk_terms(f);
    let spans = [(DAY_MS, plan.days), (HOUR_MS, plan.hours[0]), (HOUR_MS, plan.hours[1])];
    for (span_ms, (lo, hi)) in spans.into_iter().filter(|(_, (lo, hi))| lo < hi) {
        for (sign, buckets) in &terms {
            q.push(if *sign < 0 { " - " } else { " + " })
                .push("(SELECT CAST(COALESCE(SUM(calls), 0) AS BIGINT) FROM record_talk WHERE call_type = ")
                .bind(f.call_type.code());
            q.push(" AND batch_name = ").bind(campaign).push(" AND span_ms = ").bind(span_ms);
            push_talk_buckets(q, buckets);
            q.push(" AND start_ms >= ").bind(lo).push(" AND start_ms < ").bind(hi).push(")");
        }
    }
    for (lo, hi) in plan.rows.into_iter().filter(|(lo, hi)| lo < hi) {
        q.push(" + (SELECT COUNT(*) FROM call_records");
        push_record_filter(
            q,
            &RecordFilter { callout_from_ms: Some(lo), callout_until_ms: Some(hi), ..f.clone() },
        );
        q.push(")");
    }
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

/// The campaign of the `record_talk` rows a filter's total sums (`EVERY_CAMPAIGN` without
/// one); `None` for an exact uuid, telephone or extension, whose total counts that
/// column's index entries.
fn counted_campaign(f: &RecordFilter) -> Option<&str> {
    let exact = f.uuid.is_some() || f.telephone.is_some() || f.extnum.is_some();
    (!exact).then(|| f.batch_name.as_deref().unwrap_or(EVERY_CAMPAIGN))
}

/// Whether only the call type and the time range filter the records: the total sums the
/// calls per day and hour, and a deep page seeks by the hours of the whole range.
fn seeks_every_hour(f: &RecordFilter) -> bool {
    counted_campaign(f) == Some(EVERY_CAMPAIGN) && talk_range(f).is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deep_page_seeks_below_the_whole_hours_it_skips() {
        let hours = [(3_000, 5), (2_000, 5), (1_000, 5)];
        // 2 rows above the hours, then 5 in the newest: skipping 11 passes them and 4 more.
        assert_eq!(seek(11, 2, hours), Some(Seek { until_ms: 3_000, offset: 4 }));
        assert_eq!(seek(12, 2, hours), Some(Seek { until_ms: 2_000, offset: 0 }));
        // Not even the newest hour is skipped whole: no seek.
        assert_eq!(seek(6, 2, hours), None);
        // Past the end: below the oldest hour, with what is left to skip.
        assert_eq!(seek(100, 2, hours), Some(Seek { until_ms: 1_000, offset: 83 }));
        assert_eq!(seek(100, 0, []), None);
    }
}
