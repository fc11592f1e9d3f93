//! Tasks: calltask/list's statements for either backend, and createTasks' rule that a
//! retried ticket never rings twice.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::counters::{EVERY_CAMPAIGN, HOUR_MS, whole_buckets};
use super::records::{BOUNDED_OFFSET, SEEK_OFFSET};
use super::rows::TASK_COLUMNS;
use super::sql::{Dialect, Sql};
use super::{Result, StoreError};
use crate::domain::{NewTask, TaskFilter};

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

/// A `task_hours` row of tasks just created, all waiting.
#[derive(Debug, PartialEq, Eq, serde::Serialize)]
pub(super) struct CreatedHour {
    pub batch_name: String,
    pub hour_ms: i64,
    pub tasks: i64,
    pub first_batch_id: i64,
    pub last_batch_id: i64,
}

/// The `task_hours` rows of tasks just created at `now_ms` (ticketNo, batchId, campaign):
/// one of every task (`EVERY_CAMPAIGN`) and one per campaign, in key order.
pub(super) fn created_hours(created: &[(String, i64, String)], now_ms: i64) -> Vec<CreatedHour> {
    let mut rows: std::collections::BTreeMap<&str, CreatedHour> = Default::default();
    for (_, id, campaign) in created {
        for name in [EVERY_CAMPAIGN, campaign.as_str()] {
            let row = rows.entry(name).or_insert_with(|| CreatedHour {
                batch_name: name.to_string(),
                hour_ms: task_hour(now_ms),
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
            count.push(" AND status = ").bind(s.db_name());
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

/// What a createTime window's hours of `task_hours` give: the smallest and largest batchId
/// created in them (`None`: no task), and the filter's total when the counters count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Window {
    pub first_batch_id: Option<i64>,
    pub last_batch_id: Option<i64>,
    pub total: Option<i64>,
}

/// For a filter with a createTime window (and no batchId), one read of the window's hours
/// of `task_hours` (the campaign's rows, or those of every task) as a row of `Window`: the
/// bounds of their batchIds, and, when nothing but the window, a status and a campaign
/// filter the tasks, the total: the whole hours' counts, and the tasks of the partial hours
/// at the edges counted from `tasks_created` (or `tasks_campaign_created`), which carry the
/// status. One scan of the hours, not one for each bound and the total (a week of them
/// read three times cost a week's calltask/list by status 70 µs of SQLite's time).
pub(super) fn window(dialect: Dialect, f: &TaskFilter) -> Option<Sql> {
    let windowed = f.created_from_ms.is_some() || f.created_until_ms.is_some();
    if !windowed || f.batch_id.is_some() {
        return None;
    }
    let mut q = Sql::new(dialect, "SELECT MIN(first_batch_id), MAX(last_batch_id), ");
    if countable_by_hours(f) {
        q.push("CAST((0");
        if let Some((lo, hi)) = whole_buckets(f.created_from_ms, f.created_until_ms, HOUR_MS) {
            q.push(" + COALESCE(SUM(CASE WHEN hour_ms >= ").bind(lo).push(" AND hour_ms < ").bind(hi);
            if let Some(s) = f.status {
                q.push(" AND status = ").bind(s.db_name());
            }
            q.push(" THEN tasks ELSE 0 END), 0)");
        }
        let (top, bottom) = partial_hours(f);
        for edge in [bottom, top].into_iter().flatten() {
            q.push(" + ");
            window_rows(&mut q, f, edge);
        }
        q.push(") AS BIGINT)");
    } else {
        q.push("CAST(NULL AS BIGINT)");
    }
    let (from, until) = hour_span(f);
    q.push(" FROM task_hours WHERE batch_name = ").bind(campaign_of(f));
    q.push(" AND hour_ms >= ").bind(from).push(" AND hour_ms < ").bind(until);
    Some(q)
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

/// What reading an hour of `task_hours` for a seek costs, in index entries walked
/// (measured on SQLite at 1M tasks: a seek over every hour of 90 days cost more than
/// walking 10,000 entries).
const ENTRIES_PER_HOUR: i64 = 10;

/// Where a deep page starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TaskSeek {
    /// Below `below_batch_id`, after `offset` tasks there (highest batchIds first).
    Below { below_batch_id: i64, offset: i64 },
    /// Among the batchIds of one hour, `offset` tasks up from its lowest: a page nearer
    /// the hour's bottom than its top is read upwards from there.
    Up { first_batch_id: i64, last_batch_id: i64, offset: i64 },
}

/// A row of `seek_hours`: (hour_ms, tasks, first_batch_id, last_batch_id, top, bottom): the
/// filter's tasks of an hour and status and the bounds of their batchIds, and the window's
/// tasks in its partial hours at the top and at the bottom (the same in every row).
pub(super) type SeekHour = (i64, i64, i64, i64, i64, i64);

/// For a deep page of a filter of createTime window (of fewer hours than a tenth of its
/// offset), status and campaign alone: the window's rows of `task_hours` (`SeekHour`), as
/// they are stored, summed up by `seek`. One read gives both the window (`Window`: its
/// bounds and its total) and the seek: the page then skips whole hours by their counts
/// instead of task by task, as long as their batchIds lie above every older hour's (tasks
/// are numbered as they are created, but nodes' clocks may disagree at the edges of hours).
pub(super) fn seek_hours(dialect: Dialect, f: &TaskFilter) -> Option<Sql> {
    let (from, until) = hour_span(f);
    // Each hour read costs about ten index entries walked: a window of more hours than a
    // tenth of the offset is walked instead, as is a page with no window.
    let cost = (until.saturating_sub(from) / HOUR_MS).saturating_mul(ENTRIES_PER_HOUR);
    if !countable_by_hours(f) || f.page.offset() < SEEK_OFFSET || cost >= f.page.offset() {
        return None;
    }
    let mut q = Sql::new(dialect, "SELECT hour_ms, tasks, first_batch_id, last_batch_id");
    let (top, bottom) = partial_hours(f);
    for edge in [top, bottom] {
        q.push(", CAST((0");
        if let Some(edge) = edge {
            q.push(" + ");
            window_rows(&mut q, f, edge);
        }
        q.push(") AS BIGINT)");
    }
    q.push(" FROM task_hours WHERE batch_name = ").bind(campaign_of(f));
    q.push(" AND hour_ms >= ").bind(from).push(" AND hour_ms < ").bind(until);
    if let Some(s) = f.status {
        q.push(" AND status = ").bind(s.db_name());
    }
    Some(q)
}

/// The window and the seek of `seek_hours`' rows. The seek passes the whole hours of the
/// window, and the partial one at its top (its tasks counted), newest first, while each
/// one's batchIds lie above those of every older hour, down to the hour the page starts
/// in, which it reads up from its lowest batchId when that is nearer; never the partial
/// hour at the bottom. (Summed here rather than grouped and sorted by the database: that
/// cost a week's deep page 135 µs of SQLite's time.)
pub(super) fn seek(f: &TaskFilter, rows: &[SeekHour]) -> (Option<TaskSeek>, Window) {
    let whole = whole_buckets(f.created_from_ms, f.created_until_ms, HOUR_MS);
    let in_whole = |hour_ms: i64| whole.is_some_and(|(lo, hi)| hour_ms >= lo && hour_ms < hi);
    let (top, bottom) = rows.first().map_or((0, 0), |r| (r.4, r.5));
    // Each hour's tasks and the bounds of their batchIds, oldest first; an hour without the
    // filter's tasks holds nothing to skip (a row left at 0 keeps its bounds).
    let mut hours: BTreeMap<i64, (i64, i64, i64)> = BTreeMap::new();
    for &(hour_ms, tasks, first, last, _, _) in rows {
        let hour = hours.entry(hour_ms).or_insert((0, first, last));
        *hour = (hour.0 + tasks, hour.1.min(first), hour.2.max(last));
    }
    hours.retain(|_, hour| hour.0 > 0);
    let window = Window {
        first_batch_id: hours.values().map(|h| h.1).min(),
        last_batch_id: hours.values().map(|h| h.2).max(),
        total: Some(
            top + bottom + hours.iter().filter(|(ms, _)| in_whole(**ms)).map(|(_, h)| h.0).sum::<i64>(),
        ),
    };
    // The largest batchId of the hours older than each.
    let older_last: Vec<i64> = hours
        .values()
        .scan(i64::MIN, |max, h| {
            let older = *max;
            *max = older.max(h.2);
            Some(older)
        })
        .collect();
    let (offset, size) = (f.page.offset(), i64::from(f.page.size));
    let mut skipped = 0;
    let mut seek = None;
    for ((&hour_ms, &(tasks, first, last)), older_last) in hours.iter().zip(older_last).rev() {
        let tasks = match whole {
            _ if in_whole(hour_ms) => tasks,
            Some((_, hi)) if hour_ms == hi => top,
            _ => break,
        };
        if older_last >= first {
            break;
        }
        if skipped + tasks > offset {
            let into = offset - skipped;
            let under = tasks - into - size;
            if under >= 0 && under < into {
                seek = Some(TaskSeek::Up { first_batch_id: first, last_batch_id: last, offset: under });
            }
            break;
        }
        skipped += tasks;
        seek = Some(TaskSeek::Below { below_batch_id: first, offset: offset - skipped });
    }
    (seek, window)
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
        q.push(" AND status = ").bind(s.db_name());
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
        q.push(if hint { " AND +status = " } else { " AND status = " }).bind(s.db_name());
    }
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

    #[test]
    fn a_deep_task_page_skips_whole_hours_while_their_batch_ids_lie_above_the_rest() {
        let h = HOUR_MS;
        let below = |below_batch_id, offset| Some(TaskSeek::Below { below_batch_id, offset });
        // (hour, tasks, first, last, top, bottom): hours 9, 8, 7 with 500 tasks each.
        let hours =
            [(9 * h, 500, 1001, 1500, 0, 0), (8 * h, 500, 501, 1000, 0, 0), (7 * h, 500, 1, 500, 0, 0)];
        // Page 120 of 10 skips 1,190: hours 9 and 8 whole, then 190 more below 501.
        let (seek, window) = super::seek(&filter(None, None, 120), &hours);
        assert_eq!(seek, below(501, 190));
        assert_eq!(window, Window { first_batch_id: Some(1), last_batch_id: Some(1500), total: Some(1500) });
        // An hour's rows of each status are summed: the same seek.
        let by_status = [(9 * h, 300, 1001, 1400, 0, 0), (9 * h, 200, 1010, 1500, 0, 0), hours[1], hours[2]];
        assert_eq!(super::seek(&filter(None, None, 120), &by_status), (below(501, 190), window));
        // Page 140 of 10 starts 390 tasks into hour 7: 100 lie below its page, read upwards.
        let up = TaskSeek::Up { first_batch_id: 1, last_batch_id: 500, offset: 100 };
        assert_eq!(super::seek(&filter(None, None, 140), &hours).0, Some(up));
        // Hour 8's batchIds reach into hour 7's (another node's clock): stop above it.
        let mut crossed = hours;
        crossed[2].3 = 600;
        assert_eq!(super::seek(&filter(None, None, 120), &crossed).0, below(1001, 690));
        assert_eq!(super::seek(&filter(None, None, 140), &crossed).0, below(1001, 890));
        // A window from 7:30 to 9:30: hour 9 is its partial top (200 of its tasks in the
        // window, counted), hour 8 whole, hour 7 partial at the bottom (150 in the window):
        // never skipped, and its tasks are walked down to.
        let window = filter(Some(7 * h + h / 2), Some(9 * h + h / 2), 100);
        let hours = hours.map(|(hour, tasks, first, last, _, _)| (hour, tasks, first, last, 200, 150));
        let (seek, counted) = super::seek(&window, &hours);
        assert_eq!(seek, below(501, 290));
        assert_eq!(counted.total, Some(200 + 500 + 150));
        let up = TaskSeek::Up { first_batch_id: 501, last_batch_id: 1000, offset: 100 };
        assert_eq!(super::seek(&filter(Some(7 * h + h / 2), Some(9 * h + h / 2), 60), &hours).0, Some(up));
        // Not past the first hour and nearer its top: no seek; an hour without the filter's
        // tasks holds nothing.
        assert_eq!(super::seek(&filter(None, None, 5), &hours).0, None);
        let empty = [(9 * h, 0, 1001, 1500, 0, 0), (8 * h, 500, 501, 1000, 0, 0)];
        assert_eq!(super::seek(&filter(None, None, 60), &empty).0, below(501, 90));
    }

    #[test]
    fn created_tasks_count_in_every_tasks_hour_and_their_campaigns() {
        let created = [("A", 7, "春季"), ("B", 8, "default"), ("C", 9, "春季")]
            .map(|(no, id, campaign)| (no.to_string(), id, campaign.to_string()));
        let now = 5 * HOUR_MS + 10;
        let row = |name: &str, tasks, first_batch_id, last_batch_id| CreatedHour {
            batch_name: name.into(),
            hour_ms: 5 * HOUR_MS,
            tasks,
            first_batch_id,
            last_batch_id,
        };
        assert_eq!(
            created_hours(&created, now),
            vec![row(EVERY_CAMPAIGN, 3, 7, 9), row("default", 1, 8, 8), row("春季", 2, 7, 9)]
        );
        assert!(created_hours(&[], now).is_empty());
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
