//! PostgreSQL's reads, on connections kept outside sqlx's pool. The pool pings every
//! connection it gets back (a Sync and its ReadyForQuery, sqlx's guard against a query
//! cut off half-way): a second round trip for every read, and a second wake-up of the
//! PostgreSQL process serving it (see bench/RESULTS.md). Here a connection goes back for
//! reuse only after a read that finished; one whose read failed or was cancelled is
//! closed instead, so no connection is ever reused in the middle of a reply.
//!
//! Writes stay on the pool: they run in transactions, a few per batch of calls.

use std::ops::{Deref, DerefMut};
use std::sync::Mutex;
use std::time::Instant;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection, Postgres, Transaction};
use tokio::sync::{Semaphore, SemaphorePermit};

use super::super::Result;
use super::{ACQUIRE_TIMEOUT, PING_IF_IDLE_FOR};

pub(super) struct Readers {
    options: PgConnectOptions,
    max: u32,
    idle: Mutex<Vec<(PgConnection, Instant)>>,
    /// One per connection in use. A connection is opened only when none is idle, so
    /// no more than `max` are ever open.
    permits: Semaphore,
}

/// A connection for one read; `done` hands it back.
pub(super) struct Reader<'a> {
    conn: Option<PgConnection>,
    readers: &'a Readers,
    _permit: SemaphorePermit<'a>,
}

impl Readers {
    pub(super) fn new(options: PgConnectOptions, max: u32) -> Readers {
        Readers { options, max, idle: Mutex::new(Vec::new()), permits: Semaphore::new(max as usize) }
    }

    /// An idle connection (pinged first if it has been idle a while: the database may
    /// have restarted since) or a new one, waiting at most `ACQUIRE_TIMEOUT` in all.
    pub(super) async fn get(&self) -> Result<Reader<'_>> {
        let get = async {
            let permit = self.permits.acquire().await.expect("the semaphore is never closed");
            loop {
                let idle = self.idle.lock().expect("readers lock").pop();
                let Some((mut conn, since)) = idle else {
                    let conn = self.options.connect().await?;
                    return Ok(Reader { conn: Some(conn), readers: self, _permit: permit });
                };
                if since.elapsed() < PING_IF_IDLE_FOR || conn.ping().await.is_ok() {
                    return Ok(Reader { conn: Some(conn), readers: self, _permit: permit });
                }
            }
        };
        tokio::time::timeout(ACQUIRE_TIMEOUT, get).await.unwrap_or(Err(sqlx::Error::PoolTimedOut.into()))
    }

    /// Connections open and idle, for the pool gauge.
    pub(super) fn connections(&self) -> (u32, u32) {
        let idle = self.idle.lock().expect("readers lock").len() as u32;
        (idle + self.max - self.permits.available_permits() as u32, idle)
    }
}

impl Reader<'_> {
    /// A read-only transaction of one snapshot (REPEATABLE READ): a list's statements, its
    /// seek, page and total, agree while calls and tasks are written.
    pub(super) async fn snapshot(&mut self) -> Result<Transaction<'_, Postgres>> {
        Ok(self.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY").await?)
    }

    /// Hands the connection back for reuse, after a read that finished.
    pub(super) fn done(mut self) {
        if let Some(conn) = self.conn.take() {
            self.readers.idle.lock().expect("readers lock").push((conn, Instant::now()));
        }
    }
}

impl Deref for Reader<'_> {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        self.conn.as_ref().expect("a reader holds its connection until done")
    }
}

impl DerefMut for Reader<'_> {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.conn.as_mut().expect("a reader holds its connection until done")
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;
    use std::time::Duration;

    use super::*;

    async fn backend_pid(conn: &mut PgConnection) -> i32 {
        sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(conn).await.unwrap()
    }

    #[tokio::test]
    async fn connections_are_reused_only_after_a_read_that_finished() {
        let url = std::env::var("CALLCENTER_TEST_PG")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let readers = Readers::new(PgConnectOptions::from_str(&url).unwrap(), 2);

        let mut reader = readers.get().await.unwrap();
        let first = backend_pid(&mut reader).await;
        reader.done();
        assert_eq!(readers.connections(), (1, 1));
        let mut reader = readers.get().await.unwrap();
        assert_eq!(backend_pid(&mut reader).await, first, "the idle connection is reused");

        // A read cut off half-way (a client gone, a timeout): its connection is closed.
        let cut = tokio::time::timeout(
            Duration::from_millis(100),
            sqlx::query("SELECT pg_sleep(5)").execute(&mut *reader),
        )
        .await;
        assert!(cut.is_err());
        drop(reader);
        assert_eq!(readers.connections(), (0, 0));
        let mut reader = readers.get().await.unwrap();
        let second = backend_pid(&mut reader).await;
        assert_ne!(second, first);
        reader.done();

        // A connection cut while idle (a database restart) is found out by the ping.
        tokio::time::sleep(PING_IF_IDLE_FOR).await;
        let mut other = readers.options.connect().await.unwrap();
        sqlx::query("SELECT pg_terminate_backend($1)").bind(second).execute(&mut other).await.unwrap();
        let mut reader = readers.get().await.unwrap();
        assert_ne!(backend_pid(&mut reader).await, second, "a new connection, not the cut one");
        reader.done();
        assert_eq!(readers.connections(), (1, 1));
    }
}
