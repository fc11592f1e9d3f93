//! Tasks: calltask/list's statements for either backend, and createTasks' rule that a
//! retried ticket never rings twice.

use std::collections::{HashMap, HashSet};

use super::counters::{HOUR_MS, whole_buckets};
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

/// Adds `tasks` tasks created at `hour_ms` to `task_hours` (bound as `$1`, `$2`: SQLite
/// reads them too), in createTasks' transaction.
pub(super) const ADD_TASK_HOUR: &str = "INSERT INTO task_hours (hour_ms, tasks) VALUES ($1, $2)
     ON CONFLICT (hour_ms) DO UPDATE SET tasks = task_hours.tasks + excluded.tasks";

/// Recounts `task_hours` from the tasks (after a seed's load).
pub(super) const RECOUNT_TASK_HOURS: [&str; 2] = [
    "DELETE FROM task_hours",
    "INSERT INTO task_hours (hour_ms, tasks) SELECT (created_ms / 3600000) * 3600000, COUNT(*) FROM tasks GROUP BY 1",
];

/// The `task_hours` row of a task created at `created_ms`.
pub(super) fn task_hour(created_ms: i64) -> i64 {
    created_ms.div_euclid(HOUR_MS) * HOUR_MS
}

/// calltask/list's page and its total. A filter of status alone, or none, sums the
/// counters of `task_counts` (kept by triggers on tasks); one of a createTime window
/// alone sums `task_hours` and counts the tasks of the partial hours at its edges;
/// others count the rows.
///
/// With `newest_first`, a createTime window's page walks the tasks from the newest
/// (`+created_ms` keeps the planner off `tasks_created`); else it reads the window from
/// `tasks_created` and sorts it. See `walk_plan`.
pub(super) fn page(dialect: Dialect, f: &TaskFilter, newest_first: bool) -> (Sql, Sql) {
    let mut count;
    if countable_by_status(f) {
        count =
            Sql::new(dialect, "SELECT CAST(COALESCE(SUM(tasks), 0) AS BIGINT) FROM task_counts WHERE 1 = 1");
        if let Some(s) = f.status {
            count.push(" AND status = ").bind(s.db_name());
        }
        if let Some(name) = &f.batch_name {
            count.push(" AND batch_name = ").bind(name.as_str());
        }
    } else if countable_by_hours(f) {
        count = window_total(dialect, f.created_from_ms, f.created_until_ms);
    } else {
        count = Sql::new(dialect, "SELECT COUNT(*) FROM tasks");
        push_task_filter(&mut count, f);
    }
    let mut q = Sql::new(dialect, format!("SELECT {} FROM tasks", TASK_COLUMNS));
    if newest_first {
        q.push(" WHERE 1 = 1");
        for (condition, value) in
            [(" AND +created_ms >= ", f.created_from_ms), (" AND +created_ms < ", f.created_until_ms)]
        {
            if let Some(v) = value {
                q.push(condition).bind(v);
            }
        }
        if let Some(s) = f.status {
            q.push(" AND status = ").bind(s.db_name());
        }
    } else {
        push_task_filter(&mut q, f);
    }
    q.push(" ORDER BY batch_id DESC");
    q.push_page(f.page.size, f.page.offset());
    (q, count)
}

/// For a createTime window (with a status or not), the tasks created after it and in it,
/// by whole hours from `task_hours`: (newer, inside). Its page is cheaper walked from
/// the newest task when the tasks it passes over before the window, and the rows it
/// skips, are fewer than the window's tasks (yesterday's page: today's tasks, against a
/// sort of all of yesterday's); an old window is read from `tasks_created` and sorted.
pub(super) fn walk_plan(dialect: Dialect, f: &TaskFilter) -> Option<Sql> {
    let windowed = f.created_from_ms.is_some() || f.created_until_ms.is_some();
    if !windowed
        || f.batch_id.is_some()
        || f.ticket_no.is_some()
        || f.phone.is_some()
        || f.batch_name.is_some()
    {
        return None;
    }
    let from = f.created_from_ms.map_or(i64::MIN, task_hour);
    let until = f.created_until_ms.map_or(i64::MAX, |u| task_hour(u).saturating_add(HOUR_MS));
    let mut q = Sql::new(
        dialect,
        "SELECT (SELECT CAST(COALESCE(SUM(tasks), 0) AS BIGINT) FROM task_hours WHERE hour_ms >= ",
    );
    q.bind(until)
        .push("), (SELECT CAST(COALESCE(SUM(tasks), 0) AS BIGINT) FROM task_hours WHERE hour_ms >= ");
    q.bind(from).push(" AND hour_ms < ").bind(until).push(")");
    Some(q)
}

/// Whether to walk a window's page from the newest task, given `walk_plan`'s counts.
pub(super) fn walk_newest_first(f: &TaskFilter, (newer, inside): (i64, i64)) -> bool {
    newer + f.page.offset() + i64::from(f.page.size) <= inside
}

/// The tasks created in `[from, until)`: the whole hours' counters, and the tasks of
/// the partial hours at the edges counted from `tasks_created`.
fn window_total(dialect: Dialect, from: Option<i64>, until: Option<i64>) -> Sql {
    let mut q = Sql::new(dialect, "SELECT (0");
    let rows = |q: &mut Sql, lo: Option<i64>, hi: Option<i64>| {
        q.push(" + (SELECT COUNT(*) FROM tasks WHERE 1 = 1");
        if let Some(lo) = lo {
            q.push(" AND created_ms >= ").bind(lo);
        }
        if let Some(hi) = hi {
            q.push(" AND created_ms < ").bind(hi);
        }
        q.push(")");
    };
    match whole_buckets(from, until, HOUR_MS) {
        None => rows(&mut q, from, until),
        Some((lo, hi)) => {
            q.push(" + (SELECT CAST(COALESCE(SUM(tasks), 0) AS BIGINT) FROM task_hours WHERE hour_ms >= ")
                .bind(lo)
                .push(" AND hour_ms < ")
                .bind(hi)
                .push(")");
            if let Some(from) = from.filter(|&f| f < lo) {
                rows(&mut q, Some(from), Some(lo));
            }
            if let Some(until) = until.filter(|&u| u > hi) {
                rows(&mut q, Some(hi), Some(until));
            }
        }
    }
    q.push(")");
    q
}

fn push_task_filter(q: &mut Sql, f: &TaskFilter) {
    q.push(" WHERE 1 = 1");
    for (condition, value) in [
        (" AND batch_id = ", f.batch_id),
        (" AND created_ms >= ", f.created_from_ms),
        (" AND created_ms < ", f.created_until_ms),
    ] {
        if let Some(v) = value {
            q.push(condition).bind(v);
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
        // With a window, `tasks_created` (which carries the status) finds the rows; on
        // SQLite (no statistics) the `+` keeps the planner from walking every task of
        // the status instead: 1.2 s for a week of completed tasks at a million tasks.
        // With a campaign, its index walks the campaign's tasks newest first (and with a
        // window, `tasks_campaign_created` counts them).
        let windowed = f.created_from_ms.is_some() || f.created_until_ms.is_some() || f.batch_name.is_some();
        let hint = windowed && q.dialect == Dialect::Sqlite;
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
/// createTime window filters it.
fn countable_by_hours(f: &TaskFilter) -> bool {
    let TaskFilter {
        batch_id,
        created_from_ms: _,
        created_until_ms: _,
        ticket_no,
        phone,
        status,
        batch_name,
        page: _,
    } = f;
    batch_id.is_none() && ticket_no.is_none() && phone.is_none() && status.is_none() && batch_name.is_none()
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
