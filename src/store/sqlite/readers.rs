//! The SQLite store's reads go through rusqlite on the thread that asks, its writes
//! through sqlx: sqlx hands every query to a connection's own thread and back, which under
//! a dashboard's load costs several times the SQLite work itself (measured:
//! bench/RESULTS.md), while the writes, batched on one connection, pay it once a
//! transaction.
//!
//! A read whose work is bounded by its page (a page read from an index, a total summed
//! from the counters, a lookup by key) runs inline; one that counts or skips rows in
//! proportion to a table runs on tokio's blocking pool, so that it never holds up a
//! runtime thread.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, Type};
use rusqlite::{Connection, OpenFlags, Row, ToSql, params_from_iter};

use crate::store::sql::{Arg, Sql};
use crate::store::{CallRecord, Result, StoreError, TaskRow};

/// Idle connections kept for reuse (one per runtime thread and a few for the blocking
/// pool); connections beyond them are closed when their read ends.
const IDLE_READERS: usize = 8;

/// Prepared statements kept per connection: the list queries' text varies with the filter.
const STATEMENT_CACHE: usize = 64;

pub(super) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    open: AtomicU32,
}

impl Readers {
    pub(super) fn new(path: PathBuf) -> Arc<Readers> {
        Arc::new(Readers { path, idle: Mutex::new(Vec::new()), open: AtomicU32::new(0) })
    }

    /// Runs `read` on this thread, on an idle connection or a new one. For reads whose
    /// work is bounded by what they return.
    pub(super) fn read<T>(&self, read: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        let idle = self.idle.lock().expect("readers lock").pop();
        let conn = match idle {
            Some(conn) => conn,
            None => self.open()?,
        };
        let result = read(&conn);
        let mut idle = self.idle.lock().expect("readers lock");
        // One left inside a transaction would hold its snapshot, and fail its next BEGIN.
        if idle.len() < IDLE_READERS && conn.is_autocommit() {
            idle.push(conn);
        } else {
            self.open.fetch_sub(1, Ordering::Relaxed);
        }
        Ok(result?)
    }

    /// Connections open and idle, for the pool gauge.
    pub(super) fn connections(&self) -> (u32, u32) {
        let idle = self.idle.lock().expect("readers lock").len() as u32;
        (self.open.load(Ordering::Relaxed), idle)
    }

    /// Runs `read` on tokio's blocking pool: for reads that count or skip rows in
    /// proportion to a table.
    pub(super) async fn read_blocking<T, F>(self: &Arc<Self>, read: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let readers = Arc::clone(self);
        match tokio::task::spawn_blocking(move || readers.read(read)).await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(StoreError::ShuttingDown),
        }
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "temp_store", "memory")?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        self.open.fetch_add(1, Ordering::Relaxed);
        Ok(conn)
    }
}

impl ToSql for Arg {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Arg::Int(v) => ToSqlOutput::from(*v),
            Arg::Text(v) => ToSqlOutput::from(v.as_str()),
        })
    }
}

/// Runs `read`'s statements in one read transaction: they see one snapshot of the
/// database (WAL), so that a list's seek, page and total agree while calls are written.
/// `BEGIN` and `COMMIT` are cached statements: rusqlite's `Transaction` prepares both anew
/// each time, a twentieth of a records/list request's CPU (bench/RESULTS.md). Ended
/// whatever the read gives (it commits nothing); a connection left in a transaction anyway
/// is closed, not kept (`Readers::read`).
pub(super) fn snapshot<T>(
    conn: &Connection,
    read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    conn.prepare_cached("BEGIN")?.execute([])?;
    let result = read(conn);
    conn.prepare_cached("COMMIT")?.execute([])?;
    result
}

/// `q`'s rows, each decoded by `decode`.
pub(super) fn query<T>(
    conn: &Connection,
    q: &Sql,
    decode: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    let mut statement = conn.prepare_cached(&q.text)?;
    statement.query_map(params_from_iter(&q.args), decode)?.collect()
}

/// `q`'s rows, decoded by `decode`, handed to `take` as they are read: it may stop before
/// the end, and the rest is never read. A row that fails ends them, and its error is
/// returned.
pub(super) fn query_lazily<T, R>(
    conn: &Connection,
    q: &Sql,
    decode: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
    take: impl FnOnce(&mut dyn Iterator<Item = T>) -> R,
) -> rusqlite::Result<R> {
    let mut statement = conn.prepare_cached(&q.text)?;
    let mut rows = statement.query_map(params_from_iter(&q.args), decode)?;
    let mut error = None;
    let taken = take(&mut rows.by_ref().map_while(|row| row.map_err(|e| error = Some(e)).ok()));
    error.map_or(Ok(taken), Err)
}

/// `q`'s single value.
pub(super) fn query_one<T: rusqlite::types::FromSql>(conn: &Connection, q: &Sql) -> rusqlite::Result<T> {
    conn.prepare_cached(&q.text)?.query_row(params_from_iter(&q.args), |row| row.get(0))
}

/// Column `i` as a `T` named by its text (a call type, a status).
fn named<T: TryFrom<String, Error: std::error::Error + Send + Sync + 'static>>(
    row: &Row<'_>,
    i: usize,
) -> rusqlite::Result<T> {
    T::try_from(row.get(i)?)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, Type::Text, Box::new(e)))
}

/// A call record from the columns of `RECORD_COLUMNS`, in its order.
pub(super) fn record(row: &Row<'_>) -> rusqlite::Result<CallRecord> {
    Ok(CallRecord {
        uuid: row.get(0)?,
        call_type: named(row, 1)?,
        batch_id: row.get(2)?,
        telephone: row.get(3)?,
        extnum: row.get(4)?,
        callout_ms: row.get(5)?,
        answered_ms: row.get(6)?,
        ended_ms: row.get(7)?,
        time_len: row.get(8)?,
        hangup_cause: row.get(9)?,
        wav_path: row.get(10)?,
        wav_url: row.get(11)?,
        dialogue_json: row.get(12)?,
        intent: row.get(13)?,
        turn_latency_ms: row.get(14)?,
        batch_name: row.get(15)?,
    })
}

/// The number of columns `record` reads.
pub(super) const RECORD_WIDTH: usize = 16;

/// A task from the columns of `TASK_COLUMNS`, in its order.
pub(super) fn task(row: &Row<'_>) -> rusqlite::Result<TaskRow> {
    Ok(TaskRow {
        batch_id: row.get(0)?,
        task_type: row.get(1)?,
        created_ms: row.get(2)?,
        stopped_ms: row.get(3)?,
        connected: row.get(4)?,
        ticket_no: row.get(5)?,
        phone: row.get(6)?,
        username: row.get(7)?,
        ticket_type: row.get(8)?,
        ticket_content: row.get(9)?,
        status: named(row, 10)?,
        call_count: row.get(11)?,
        last_hangup_cause: row.get(12)?,
        batch_name: row.get(13)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(conn: &Connection) -> rusqlite::Result<i64> {
        conn.query_row("SELECT COUNT(*) FROM calls", [], |row| row.get(0))
    }

    #[test]
    fn a_read_that_fails_inside_its_snapshot_leaves_no_snapshot_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("calls.db");
        let writer = Connection::open(&path).unwrap();
        writer
            .execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE calls (n); INSERT INTO calls VALUES (1);")
            .unwrap();
        let readers = Readers::new(path);
        // The read has taken its snapshot (one call) when it fails.
        let failed = readers.read(|conn| {
            snapshot(conn, |conn| {
                assert_eq!(count(conn)?, 1);
                Err::<(), _>(rusqlite::Error::InvalidQuery)
            })
        });
        assert!(failed.is_err());
        assert_eq!(readers.connections(), (1, 1), "the connection is kept for the next read");
        writer.execute("INSERT INTO calls VALUES (2)", []).unwrap();
        assert_eq!(readers.read(|conn| snapshot(conn, count)).unwrap(), 2);
        // A read that leaves a transaction open anyway has its connection closed.
        readers.read(|conn| conn.execute_batch("BEGIN; SELECT COUNT(*) FROM calls;")).unwrap();
        assert_eq!(readers.connections(), (0, 0));
        writer.execute("INSERT INTO calls VALUES (3)", []).unwrap();
        assert_eq!(readers.read(|conn| snapshot(conn, count)).unwrap(), 3);
    }
}
