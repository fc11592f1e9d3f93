//! Tasks: calltask/list's statements for either backend, and createTasks' rule that a
//! retried ticket never rings twice.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::counters::{CounterDays, DAY_MS, EVERY_CAMPAIGN, HOUR_MS, total_plan, whole_buckets};
use super::records::{BOUNDED_OFFSET, SEEK_OFFSET};
use super::rows::TASK_COLUMNS;
use super::sql::{Dialect, Sql};
use super::{Result, StoreError};
use crate::domain::{NewTask, TaskFilter, TaskStatus};

/// The tickets createTasks inserts, in input order: those whose ticketNo has no
/// unfinished task (`open`, ticketNo → batchId), each ticketNo once. A retried request
/// must not ring twice.
pub(super) fn to_create<'a>(tasks: &'a [NewTask], open: &HashMap<String, i64>) -> Vec<&'a NewTask> {
    let mut queued = HashSet::new();
    tasks.iter().filter(|t| !open.contains_key(&t.ticket_no) && queued.insert(t.ticket_no.as_str())).collect()
}

/// Each ticket's batchId, in input order, from `ids` (ticketNo → batchId: the unfinished
/// tasks found and the ones just created).
pub(super) fn batch_ids(tasks: &[NewTask], ids: &HashMap<String, i64>) -> Result<Vec<i64>> {
    tasks
        .iter()
        .map(|t| {
            ids.get(&t.ticket_no)
                .copied()
                .ok_or_else(|| StoreError::Corrupt(format!("ticket `{}` got no task", t.ticket_no)))
        })
        .collect()
}

/// A `task_hours` or `task_days` row of tasks just created, all waiting.
#[derive(Debug, PartialEq, Eq, serde::Serialize)]
pub(super) struct CreatedCount {
    pub batch_name: String,
    pub start_ms: i64,
    pub tasks: i64,
    pub first_batch_id: i64,
    pub last_batch_id: i64,
}

/// The rows of tasks just created (ticketNo, batchId, campaign) in the hour or day that
/// starts at `start_ms`: one of every task (`EVERY_CAMPAIGN`) and one per campaign, in
/// key order.
pub(super) fn created_counts(created: &[(String, i64, String)], start_ms: i64) -> Vec<CreatedCount> {
    let mut rows: BTreeMap<&str, CreatedCount> = BTreeMap::new();
    for (_, id, campaign) in created {
        for name in [EVERY_CAMPAIGN, campaign.as_str()] {
            let row = rows.entry(name).or_insert_with(|| CreatedCount {
                batch_name: name.to_string(),
                start_ms,
                tasks: 0,
                first_batch_id: *id,
                last_batch_id: *id,
            });
            row.tasks += 1;
            row.first_batch_id = row.first_batch_id.min(*id);
            row.last_batch_id = row.last_batch_id.max(*id);
        }
    }
    rows.into_values().collect()
}

/// The `task_hours` row of a task created at `created_ms`.
pub(super) fn task_hour(created_ms: i64) -> i64 {
    created_ms.div_euclid(HOUR_MS) * HOUR_MS
}

/// calltask/list's total, when `window` did not give it: a filter of status or campaign
/// alone, or both, or none, sums `task_counts`; others count the rows.
pub(super) fn count(dialect: Dialect, f: &TaskFilter) -> Sql {
    if countable_by_status(f) {
        let mut count =
            Sql::new(dialect, "SELECT CAST(COALESCE(SUM(tasks), 0) AS BIGINT) FROM task_counts WHERE 1 = 1");
        if let Some(s) = f.status {
            push_status(&mut count, "status", s);
        }
        if let Some(name) = &f.batch_name {
            count.push(" AND batch_name = ").bind(name.as_str());
        }
        count
    } else {
        let mut count = Sql::new(dialect, "SELECT COUNT(*) FROM tasks WHERE 1 = 1");
        push_task_filter(&mut count, f, "created_ms");
        count
    }
}

/// What a createTime window's counters give: the smallest and largest batchId created in
/// it (`None`: no task), and the filter's total when the counters count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Window {
    pub first_batch_id: Option<i64>,
    pub last_batch_id: Option<i64>,
    pub total: Option<i64>,
}

/// A row of `counters` or `day_hours`: (start_ms, span_ms, tasks, first_batch_id,
/// last_batch_id, top, bottom): the filter's tasks of a day of `task_days` or an hour of
/// `task_hours` and a status, the bounds of their batchIds, and the window's tasks in its
/// partial hours at the top and at the bottom (the same in every row; 0 in `day_hours`).
pub(super) type CounterRow = (i64, i64, i64, i64, i64, i64, i64);

/// For a filter with a createTime window (and no batchId), and for a deep page of nothing
/// but a status and a campaign: one read of the window's counters, as they are stored
/// (`CounterRow`), summed up by `read_counters`: its whole days from `task_days` and only
/// the hours at its edges from `task_hours` (a week of Asia/Shanghai is seven rows per
/// status, not 168: reading the hours cost a week's page twice a day's), and the tasks of
/// the partial hours at the edges (or of the rest of their hours, when shorter: `Edge`)
/// counted from `tasks_created` (or `tasks_campaign_created`), which carry the status,
/// when the counters give the total.
/// Without a window, every day of the tasks' history: a row per day and status.
pub(super) fn counters(dialect: Dialect, days: CounterDays, f: &TaskFilter) -> Option<Sql> {
    let windowed = f.created_from_ms.is_some() || f.created_until_ms.is_some();
    if f.batch_id.is_some() || !(windowed || seeks(f)) {
        return None;
    }
    let (from, until) = hour_span(f);
    let (lo_d, hi_d) = total_plan(f.created_from_ms, f.created_until_ms, days).days;
    let mut q = Sql::new(dialect, "SELECT start_ms, span_ms, tasks, first_batch_id, last_batch_id");
    let (top, bottom) = if countable_by_hours(f) { edges(f) } else { (None, None) };
    for edge in [top, bottom] {
        q.push(", CAST((0");
        if let Some(edge) = edge {
            q.push(" + ");
            window_rows(&mut q, f, edge.counted);
        }
        q.push(") AS BIGINT)");
    }
    q.push(" FROM (");
    let parts = if lo_d < hi_d {
        vec![(DAY_MS, (lo_d, hi_d)), (HOUR_MS, (from, lo_d)), (HOUR_MS, (hi_d, until))]
    } else {
        vec![(HOUR_MS, (from, until))]
    };
    for (i, (span_ms, span)) in parts.into_iter().filter(|(_, (lo, hi))| lo < hi).enumerate() {
        if i > 0 {
            q.push(" UNION ALL ");
        }
        push_counters(&mut q, f, span_ms, span);
    }
    q.push(") AS counters");
    Some(q)
}

/// The hours of a whole day of the window a deep page lands in (`Walk::Day`), as
/// `CounterRow`s.
pub(super) fn day_hours(dialect: Dialect, f: &TaskFilter, day_ms: i64) -> Sql {
    let mut q = Sql::new(
        dialect,
        "SELECT start_ms, span_ms, tasks, first_batch_id, last_batch_id, CAST(0 AS BIGINT), CAST(0 AS BIGINT) FROM (",
    );
    push_counters(&mut q, f, HOUR_MS, (day_ms, day_ms + DAY_MS));
    q.push(") AS counters");
    q
}

/// `SELECT start_ms, span_ms, tasks, first_batch_id, last_batch_id` of the filter's
/// campaign and status, from the days (`span_ms` `DAY_MS`) or the hours in `[lo, hi)`.
fn push_counters(q: &mut Sql, f: &TaskFilter, span_ms: i64, (lo, hi): Span) {
    let (table, start) = if span_ms == DAY_MS { ("task_days", "day_ms") } else { ("task_hours", "hour_ms") };
    q.push(&format!("SELECT {start} AS start_ms, CAST({span_ms} AS BIGINT) AS span_ms, tasks, first_batch_id, last_batch_id"));
    q.push(&format!(" FROM {table} WHERE batch_name = ")).bind(campaign_of(f));
    q.push(&format!(" AND {start} >= ")).bind(lo).push(&format!(" AND {start} < ")).bind(hi);
    if let Some(s) = f.status {
        push_status(q, "status", s);
    }
}

/// A `[lo, hi)` of createTime, epoch ms.
type Span = (i64, i64);

/// The parts of a createTime window outside its whole hours, whose tasks are counted one by
/// one: (top, bottom), each `[lo, hi)` (`None`: open, or on an hour). A window with no
/// whole hour (both ends set, less than two hours apart) is all bottom.
fn partial_hours(f: &TaskFilter) -> (Option<Span>, Option<Span>) {
    let (from, until) = (f.created_from_ms, f.created_until_ms);
    match whole_buckets(from, until, HOUR_MS) {
        None => (None, from.zip(until)),
        Some((lo, hi)) => {
            (until.filter(|&u| u > hi).map(|u| (hi, u)), from.filter(|&f| f < lo).map(|f| (f, lo)))
        }
    }
}

/// A partial hour at a window's edge, as its tasks are counted one by one: its own
/// (`counted` is the edge), or, when it is the longer part of its hour, the rest of the
/// hour, taken from the hour's count in `task_hours` (`less_from_hour`, the hour's start:
/// a window from 10:10 counts ten minutes of tasks, not fifty).
#[derive(Clone, Copy)]
struct Edge {
    counted: Span,
    less_from_hour: Option<i64>,
}

/// `partial_hours`, as `Edge`s. A window with no whole hour is counted as it is.
fn edges(f: &TaskFilter) -> (Option<Edge>, Option<Edge>) {
    let whole = whole_buckets(f.created_from_ms, f.created_until_ms, HOUR_MS).is_some();
    let edge = |(lo, hi): Span| {
        let hour = task_hour(lo);
        if whole && 2 * (hi - lo) > HOUR_MS {
            let rest = if lo == hour { (hi, hour + HOUR_MS) } else { (hour, lo) };
            Edge { counted: rest, less_from_hour: Some(hour) }
        } else {
            Edge { counted: (lo, hi), less_from_hour: None }
        }
    };
    let (top, bottom) = partial_hours(f);
    (top.map(edge), bottom.map(edge))
}

/// calltask/list's page: its batchIds are found first from the indexes alone (the primary
/// key and `tasks_status` carry createTime and status), then only its own rows are read,
/// so that the rows skipped to reach a deep page cost index entries. A window's tasks lie
/// between the bounds of its hours (`Window`), so its page walks the primary key, or
/// `tasks_status`, down from the largest: a page costs what it skips, not the tasks
/// created since the window (`None`: the window holds no task). (`+created_ms` keeps the
/// planners off `tasks_created`, which would read the whole window to sort it.) With a
/// `TaskSeek`, the page walks down from below its bound instead, or up through its hour.
pub(super) fn page(
    dialect: Dialect,
    f: &TaskFilter,
    seek: Option<TaskSeek>,
    window: Option<Window>,
) -> Option<Sql> {
    let mut q = Sql::new(
        dialect,
        format!("SELECT {TASK_COLUMNS} FROM tasks WHERE batch_id IN (SELECT batch_id FROM tasks WHERE 1 = 1"),
    );
    // The seek's bounds replace the window's (they are never outside it).
    let (mut first, mut last) = (None, None);
    if let Some(w) = window {
        let (Some(lo), Some(hi)) = (w.first_batch_id, w.last_batch_id) else {
            return None;
        };
        (first, last) = (Some(lo), Some(hi));
    }
    let (offset, up) = match seek {
        None => (f.page.offset(), false),
        Some(TaskSeek::Below { below_batch_id, offset }) => {
            last = Some(below_batch_id - 1);
            (offset, false)
        }
        Some(TaskSeek::Up { first_batch_id, last_batch_id, offset }) => {
            (first, last) = (Some(first_batch_id), Some(last_batch_id));
            (offset, true)
        }
    };
    for (condition, bound) in [(" AND batch_id >= ", first), (" AND batch_id <= ", last)] {
        if let Some(id) = bound {
            q.push(condition).bind(id);
        }
    }
    push_task_filter(&mut q, f, if window.is_some() { "+created_ms" } else { "created_ms" });
    q.push(if up { " ORDER BY batch_id" } else { " ORDER BY batch_id DESC" });
    q.push_page(f.page.size, offset);
    q.push(") ORDER BY batch_id DESC");
    Some(q)
}

/// Where a deep page starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TaskSeek {
    /// Below `below_batch_id`, after `offset` tasks there (highest batchIds first).
    Below { below_batch_id: i64, offset: i64 },
    /// Among the batchIds of one hour, `offset` tasks up from its lowest: a page nearer
    /// the hour's bottom than its top is read upwards from there.
    Up { first_batch_id: i64, last_batch_id: i64, offset: i64 },
}

/// Whether a page is deep enough to seek by the counters: past `SEEK_OFFSET`, of a filter
/// they count.
fn seeks(f: &TaskFilter) -> bool {
    countable_by_hours(f) && f.page.offset() >= SEEK_OFFSET
}

/// The filter's tasks of a day or an hour and the bounds of their batchIds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Part {
    span_ms: i64,
    tasks: i64,
    first: i64,
    last: i64,
}

/// `CounterRow`s summed per day or hour (the rows of each status), oldest first; a part
/// without the filter's tasks holds nothing to skip (a row left at 0 keeps its bounds).
fn parts(rows: &[CounterRow]) -> BTreeMap<i64, Part> {
    let mut parts: BTreeMap<i64, Part> = BTreeMap::new();
    for &(start, span_ms, tasks, first, last, _, _) in rows {
        let part = parts.entry(start).or_insert(Part { span_ms, tasks: 0, first, last });
        *part = Part {
            span_ms,
            tasks: part.tasks + tasks,
            first: part.first.min(first),
            last: part.last.max(last),
        };
    }
    parts.retain(|_, part| part.tasks > 0);
    parts
}

/// What a deep page's walk down the counters has passed: `tasks`, all of batchIds at or
/// above `below` (`None`: nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Passed {
    tasks: i64,
    below: Option<i64>,
}

/// A whole day a deep page starts in: what the walk passed above it, and the largest
/// batchId of the parts older than it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Landing {
    pub day_ms: i64,
    passed: Passed,
    older_last: i64,
}

/// Where `read_counters`' walk stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Walk {
    /// The page's seek (`None`: the page walks the index from the window's top).
    Seek(Option<TaskSeek>),
    /// Inside a whole day: its hours (`day_hours`) go on with `walk_day`.
    Day(Landing),
}

/// The window and the walk of `counters`' rows. A deep page passes the whole parts of the
/// window (days, and the hours around them; the partial hour at its top with its tasks
/// counted), newest first, while each one's batchIds lie above those of every older part,
/// down to the part the page starts in (an hour: read up from its lowest batchId when that
/// is nearer; a day: `Walk::Day`); never the partial hour at the bottom. (Summed here
/// rather than grouped and sorted by the database: that cost a week's deep page 135 µs of
/// SQLite's time.)
pub(super) fn read_counters(f: &TaskFilter, rows: &[CounterRow]) -> (Window, Walk) {
    let whole = whole_buckets(f.created_from_ms, f.created_until_ms, HOUR_MS);
    let in_whole = |start: i64| whole.is_some_and(|(lo, hi)| start >= lo && start < hi);
    let parts = parts(rows);
    let (top, bottom) = rows.first().map_or((0, 0), |r| (r.5, r.6));
    let (top_edge, bottom_edge) = if countable_by_hours(f) { edges(f) } else { (None, None) };
    let [top, bottom] = [(top_edge, top), (bottom_edge, bottom)].map(|(edge, counted)| {
        match edge.and_then(|edge| edge.less_from_hour) {
            Some(hour) => parts.get(&hour).map_or(0, |p| p.tasks) - counted,
            None => counted,
        }
    });
    let window = Window {
        first_batch_id: parts.values().map(|p| p.first).min(),
        last_batch_id: parts.values().map(|p| p.last).max(),
        total: countable_by_hours(f).then(|| {
            top + bottom
                + parts.iter().filter(|(start, _)| in_whole(**start)).map(|(_, p)| p.tasks).sum::<i64>()
        }),
    };
    if !seeks(f) {
        return (window, Walk::Seek(None));
    }
    // The partial hour at the top counts its tasks in the window; the one at the bottom
    // is never passed.
    let tasks_of = |start: i64, part: &Part| match whole {
        _ if in_whole(start) => Some(part.tasks),
        Some((_, hi)) if start == hi => Some(top),
        _ => None,
    };
    let nothing = Passed { tasks: 0, below: None };
    let walk = match walk(f, &parts, tasks_of, i64::MIN, nothing) {
        (passed, Some((day_ms, part, older_last))) if part.span_ms == DAY_MS => {
            Walk::Day(Landing { day_ms, passed, older_last })
        }
        (passed, landing) => Walk::Seek(seek(f, passed, landing.map(|l| l.1))),
    };
    (window, walk)
}

/// The seek of a deep page that lands in a whole day (`Walk::Day`), from its hours.
pub(super) fn walk_day(f: &TaskFilter, day: Landing, rows: &[CounterRow]) -> Option<TaskSeek> {
    let (passed, landing) = walk(f, &parts(rows), |_, part| Some(part.tasks), day.older_last, day.passed);
    seek(f, passed, landing.map(|l| l.1))
}

/// Passes `parts` newest first, on from `passed`: each one whose tasks count
/// (`tasks_of`), while its batchIds lie above those of every older part and
/// `older_last`, and the page starts below it. Returns what it passed, and the part the
/// page starts in (start, part, the largest batchId older than it), if it reached one.
fn walk(
    f: &TaskFilter,
    parts: &BTreeMap<i64, Part>,
    tasks_of: impl Fn(i64, &Part) -> Option<i64>,
    older_last: i64,
    mut passed: Passed,
) -> (Passed, Option<(i64, Part, i64)>) {
    // The largest batchId of the parts older than each.
    let older: Vec<i64> = parts
        .values()
        .scan(older_last, |max, part| {
            let older = *max;
            *max = older.max(part.last);
            Some(older)
        })
        .collect();
    for ((&start, part), older_last) in parts.iter().zip(older).rev() {
        let Some(tasks) = tasks_of(start, part) else { break };
        if older_last >= part.first {
            break;
        }
        if passed.tasks + tasks > f.page.offset() {
            return (passed, Some((start, Part { tasks, ..*part }, older_last)));
        }
        passed = Passed { tasks: passed.tasks + tasks, below: Some(part.first) };
    }
    (passed, None)
}

/// The seek of a page after the walk passed `passed` and, if it reached one, stopped at
/// the part the page starts in: read up from its lowest batchId when fewer of its tasks
/// lie below the page than above it.
fn seek(f: &TaskFilter, passed: Passed, landing: Option<Part>) -> Option<TaskSeek> {
    let offset = f.page.offset() - passed.tasks;
    if let Some(part) = landing {
        let under = part.tasks - offset - i64::from(f.page.size);
        if under >= 0 && under < offset {
            return Some(TaskSeek::Up {
                first_batch_id: part.first,
                last_batch_id: part.last,
                offset: under,
            });
        }
    }
    passed.below.map(|below_batch_id| TaskSeek::Below { below_batch_id, offset })
}

/// Whether calltask/list's query reads a number of index entries bounded by its page:
/// every total is summed from counters or counts an exact batchId, ticketNo or phone, and
/// a page skips its offset in index entries; a deep page skips more.
pub(super) fn read_is_bounded(f: &TaskFilter) -> bool {
    f.page.offset() <= BOUNDED_OFFSET
}

/// The hours of `task_hours` a createTime window touches, as `[from, until)`.
fn hour_span(f: &TaskFilter) -> (i64, i64) {
    let from = f.created_from_ms.map_or(i64::MIN, task_hour);
    let until =
        f.created_until_ms.map_or(i64::MAX, |u| task_hour(u.saturating_sub(1)).saturating_add(HOUR_MS));
    (from, until)
}

/// `(SELECT COUNT(*) …)` of the filter's tasks created in `[lo, hi)`, from
/// `tasks_created` (or `tasks_campaign_created`), which carry the status.
fn window_rows(q: &mut Sql, f: &TaskFilter, (lo, hi): Span) {
    q.push("(SELECT COUNT(*) FROM tasks WHERE 1 = 1");
    if let Some(name) = &f.batch_name {
        q.push(" AND batch_name = ").bind(name.as_str());
    }
    q.push(" AND created_ms >= ").bind(lo).push(" AND created_ms < ").bind(hi);
    if let Some(s) = f.status {
        push_status(q, "status", s);
    }
    q.push(")");
}

/// The filter's conditions, after a `WHERE`; `created` names the createTime column as the
/// statement should test it (`+created_ms` to keep the planner off its index).
fn push_task_filter(q: &mut Sql, f: &TaskFilter, created: &str) {
    if let Some(id) = f.batch_id {
        q.push(" AND batch_id = ").bind(id);
    }
    for (op, value) in [(" >= ", f.created_from_ms), (" < ", f.created_until_ms)] {
        if let Some(v) = value {
            q.push(" AND ").push(created).push(op).bind(v);
        }
    }
    for (condition, value) in [
        (" AND ticket_no = ", &f.ticket_no),
        (" AND phone = ", &f.phone),
        (" AND batch_name = ", &f.batch_name),
    ] {
        if let Some(v) = value {
            q.push(condition).bind(v.as_str());
        }
    }
    if let Some(s) = f.status {
        // With a campaign, SQLite (no statistics) would walk every task of the status in
        // `tasks_status`; the `+` keeps it on the campaign's index, newest first.
        let hint = f.batch_name.is_some() && q.dialect == Dialect::Sqlite;
        push_status(q, if hint { "+status" } else { "status" }, s);
    }
}

/// ` AND {column} = '{status}'`: the status written into the statement, not bound. SQLite
/// compares a bound status with the partial indexes of `tasks` (`WHERE status =
/// 'calling'`) by its value, and so prepares the statement anew at every run (a week of
/// tasks by status spent much of its time parsing and planning); a literal of
/// `TaskStatus`' closed set is planned once per status.
fn push_status(q: &mut Sql, column: &str, s: TaskStatus) {
    q.push(" AND ").push(column).push(" = '").push(s.db_name()).push("'");
}

/// Whether a calltask/list filter's total can come from `task_counts`: nothing but the
/// status and the campaign filter it. (Every field is named, so that a new one must be
/// decided here.)
fn countable_by_status(f: &TaskFilter) -> bool {
    let TaskFilter {
        batch_id,
        created_from_ms,
        created_until_ms,
        ticket_no,
        phone,
        status: _,
        batch_name: _,
        page: _,
    } = f;
    batch_id.is_none()
        && created_from_ms.is_none()
        && created_until_ms.is_none()
        && ticket_no.is_none()
        && phone.is_none()
}

/// Whether a calltask/list filter's total can come from `task_hours`: nothing but a
/// createTime window, a status and a campaign filters it.
fn countable_by_hours(f: &TaskFilter) -> bool {
    let TaskFilter {
        batch_id,
        created_from_ms: _,
        created_until_ms: _,
        ticket_no,
        phone,
        status: _,
        batch_name: _,
        page: _,
    } = f;
    batch_id.is_none() && ticket_no.is_none() && phone.is_none()
}

/// The `task_hours` rows a filter reads: its campaign's, or those of every task.
fn campaign_of(f: &TaskFilter) -> &str {
    f.batch_name.as_deref().unwrap_or(EVERY_CAMPAIGN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Phone;

    fn ticket(no: &str) -> NewTask {
        NewTask {
            ticket_no: no.into(),
            phone: Phone::parse("13800000000").unwrap(),
            username: String::new(),
            ticket_type: String::new(),
            ticket_content: String::new(),
            batch_name: crate::domain::DEFAULT_CAMPAIGN.into(),
        }
    }

    fn filter(from: Option<i64>, until: Option<i64>, num: u32) -> TaskFilter {
        TaskFilter {
            batch_id: None,
            created_from_ms: from,
            created_until_ms: until,
            ticket_no: None,
            phone: None,
            status: None,
            batch_name: None,
            page: crate::domain::Page { num, size: 10 },
        }
    }

    /// The seek of a page whose walk does not land in a whole day.
    fn seek_of(f: &TaskFilter, rows: &[CounterRow]) -> Option<TaskSeek> {
        match read_counters(f, rows).1 {
            Walk::Seek(seek) => seek,
            Walk::Day(day) => panic!("landed in day {day:?}"),
        }
    }

    #[test]
    fn a_deep_task_page_skips_whole_hours_while_their_batch_ids_lie_above_the_rest() {
        let h = HOUR_MS;
        let below = |below_batch_id, offset| Some(TaskSeek::Below { below_batch_id, offset });
        // (start, span, tasks, first, last, top, bottom): hours 9, 8, 7 with 5,000 tasks each.
        let hours = [
            (9 * h, h, 5000, 10001, 15000, 0, 0),
            (8 * h, h, 5000, 5001, 10000, 0, 0),
            (7 * h, h, 5000, 1, 5000, 0, 0),
        ];
        // Page 1,200 of 10 skips 11,990: hours 9 and 8 whole, then 1,990 more below 5001.
        assert_eq!(seek_of(&filter(None, None, 1200), &hours), below(5001, 1990));
        let window = read_counters(&filter(None, None, 1200), &hours).0;
        assert_eq!(
            window,
            Window { first_batch_id: Some(1), last_batch_id: Some(15000), total: Some(15000) }
        );
        // An hour's rows of each status are summed: the same seek.
        let by_status =
            [(9 * h, h, 3000, 10001, 14000, 0, 0), (9 * h, h, 2000, 10010, 15000, 0, 0), hours[1], hours[2]];
        assert_eq!(seek_of(&filter(None, None, 1200), &by_status), below(5001, 1990));
        // Page 1,400 starts 3,990 tasks into hour 7: 1,000 lie below its page, read upwards.
        let up = TaskSeek::Up { first_batch_id: 1, last_batch_id: 5000, offset: 1000 };
        assert_eq!(seek_of(&filter(None, None, 1400), &hours), Some(up));
        // Hour 8's batchIds reach into hour 7's (another node's clock): stop above it.
        let mut crossed = hours;
        crossed[2].4 = 6000;
        assert_eq!(seek_of(&filter(None, None, 1200), &crossed), below(10001, 6990));
        assert_eq!(seek_of(&filter(None, None, 1400), &crossed), below(10001, 8990));
        // A window from 7:30 to 9:30: hour 9 is its partial top (2,000 of its tasks in the
        // window, counted), hour 8 whole, hour 7 partial at the bottom (1,500 in the
        // window): never skipped, and its tasks are walked down to.
        let window = |num| filter(Some(7 * h + h / 2), Some(9 * h + h / 2), num);
        let hours =
            hours.map(|(hour, span, tasks, first, last, _, _)| (hour, span, tasks, first, last, 2000, 1500));
        assert_eq!(seek_of(&window(1000), &hours), below(5001, 2990));
        assert_eq!(read_counters(&window(1000), &hours).0.total, Some(2000 + 5000 + 1500));
        let up = TaskSeek::Up { first_batch_id: 5001, last_batch_id: 10000, offset: 1000 };
        assert_eq!(seek_of(&window(600), &hours), Some(up));
        // Not past the first hour and nearer its top, or above `SEEK_OFFSET`: no seek; an
        // hour without the filter's tasks holds nothing.
        assert_eq!(seek_of(&filter(None, None, 150), &hours), None);
        assert_eq!(seek_of(&filter(None, None, 5), &hours), None);
        let empty = [(9 * h, h, 0, 10001, 15000, 0, 0), (8 * h, h, 5000, 5001, 10000, 0, 0)];
        assert_eq!(seek_of(&filter(None, None, 600), &empty), below(5001, 990));
    }

    #[test]
    fn a_deep_task_page_skips_whole_days_then_the_hours_of_the_day_it_lands_in() {
        let (h, d) = (HOUR_MS, DAY_MS);
        // Day 2 holds batchIds 5001..10000, day 1 1..5000 in two hours of 2,500.
        let days = [(2 * d, d, 5000, 5001, 10000, 0, 0), (d, d, 5000, 1, 5000, 0, 0)];
        let day_1 = [(d + h, h, 2500, 2501, 5000, 0, 0), (d, h, 2500, 1, 2500, 0, 0)];
        let walk = |num, hours: &[CounterRow]| match read_counters(&filter(None, None, num), &days).1 {
            Walk::Day(day) => {
                assert_eq!(day.day_ms, d);
                walk_day(&filter(None, None, num), day, hours)
            }
            Walk::Seek(seek) => panic!("did not land in a day: {seek:?}"),
        };
        // Page 700 of 10 skips 6,990: day 2, then 1,990 into day 1's later hour, whose 500
        // tasks below the page are nearer: read upwards.
        let up = TaskSeek::Up { first_batch_id: 2501, last_batch_id: 5000, offset: 500 };
        assert_eq!(walk(700, &day_1), Some(up));
        // Page 800: day 2 and the later hour passed, 490 into the earlier one.
        assert_eq!(walk(800, &day_1), Some(TaskSeek::Below { below_batch_id: 2501, offset: 490 }));
        // The earlier hour's batchIds reach into the later one's: stop below day 2.
        let mut crossed = day_1;
        crossed[1].4 = 2600;
        assert_eq!(walk(800, &crossed), Some(TaskSeek::Below { below_batch_id: 5001, offset: 2990 }));
        // Page 300 lands in day 2, its newest; a page above `SEEK_OFFSET` does not seek.
        let landed = read_counters(&filter(None, None, 300), &days).1;
        assert!(matches!(landed, Walk::Day(Landing { day_ms, .. }) if day_ms == 2 * d));
        assert_eq!(seek_of(&filter(None, None, 50), &days), None);
    }

    #[test]
    fn created_tasks_count_in_every_tasks_hour_and_their_campaigns() {
        let created = [("A", 7, "春季"), ("B", 8, "default"), ("C", 9, "春季")]
            .map(|(no, id, campaign)| (no.to_string(), id, campaign.to_string()));
        let hour = 5 * HOUR_MS;
        let row = |name: &str, tasks, first_batch_id, last_batch_id| CreatedCount {
            batch_name: name.into(),
            start_ms: hour,
            tasks,
            first_batch_id,
            last_batch_id,
        };
        assert_eq!(
            created_counts(&created, hour),
            vec![row(EVERY_CAMPAIGN, 3, 7, 9), row("default", 1, 8, 8), row("春季", 2, 7, 9)]
        );
        assert!(created_counts(&[], hour).is_empty());
    }

    #[test]
    fn a_ticket_with_an_unfinished_task_keeps_it_and_a_repeated_one_is_created_once() {
        let tickets = [ticket("A"), ticket("B"), ticket("A"), ticket("C")];
        let mut ids = HashMap::from([("B".to_string(), 7)]);
        let created: Vec<&str> = to_create(&tickets, &ids).iter().map(|t| t.ticket_no.as_str()).collect();
        assert_eq!(created, ["A", "C"]);
        ids.extend([("A".to_string(), 8), ("C".to_string(), 9)]);
        assert_eq!(batch_ids(&tickets, &ids).unwrap(), [8, 7, 8, 9]);
        ids.remove("C");
        assert!(batch_ids(&tickets, &ids).is_err());
    }
}
