//! A continuous PostgreSQL writer for the failover tests: it inserts
//! increasing ids into a `writes` table, one at a time, and records which
//! inserts were acknowledged, so a test can check that no acknowledged
//! commit was lost across a switch of primaries and measure how long writes
//! were refused.
//!
//! It is meant to write through HAProxy's `pg_write` listener, so while the
//! primary is gone its connects and inserts fail; it counts those failures,
//! waits briefly and reconnects until writes are accepted again.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};

/// Limit on each connect and each insert: a primary that vanished without
/// closing its sockets must not stall the writer for the TCP timeout.
const OP_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between inserts.
const PACE: Duration = Duration::from_millis(10);
/// Pause after a failure before reconnecting.
const BACKOFF: Duration = Duration::from_millis(100);

#[derive(Default)]
struct Record {
    acked: Vec<i64>,
    last_ack_at: Option<Instant>,
    last_error: Option<String>,
}

struct Shared {
    record: Mutex<Record>,
    errors: AtomicU64,
    stop: AtomicBool,
}

impl Shared {
    fn record(&self) -> MutexGuard<'_, Record> {
        // A panicking test thread must not hide the record from the next assert.
        self.record
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn failed(&self, what: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.record().last_error = Some(what);
    }
}

/// The running writer; its task is aborted when dropped (use
/// [`Writer::stop`] to end it cleanly).
pub struct Writer {
    shared: Arc<Shared>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Writer {
    /// Starts writing to `url` (`postgres://user@host:port/db`) at once, on
    /// the current tokio runtime.
    pub fn start(url: String) -> Writer {
        let shared = Arc::new(Shared {
            record: Mutex::new(Record::default()),
            errors: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let task = tokio::spawn(run(url, shared.clone()));
        Writer {
            shared,
            task: Some(task),
        }
    }

    /// Ids whose INSERT was acknowledged (committed, as far as the client
    /// knows), in increasing order.
    pub fn acked(&self) -> Vec<i64> {
        self.shared.record().acked.clone()
    }

    /// Failed connects, table creations and inserts so far.
    pub fn errors(&self) -> u64 {
        self.shared.errors.load(Ordering::Relaxed)
    }

    /// The most recent failure, for assertion messages.
    pub fn last_error(&self) -> Option<String> {
        self.shared.record().last_error.clone()
    }

    /// When the latest acknowledgement arrived.
    pub fn last_ack_at(&self) -> Option<Instant> {
        self.shared.record().last_ack_at
    }

    /// True once a commit was acknowledged after `since` (the writer
    /// resumed), false if none was within `timeout`.
    pub async fn wait_acked_after(&self, since: Instant, timeout: Duration) -> bool {
        super::wait_until(timeout, || {
            let resumed = self.last_ack_at().is_some_and(|t| t > since);
            async move { resumed }
        })
        .await
    }

    /// Ends the writer after its current operation (at most a few seconds).
    pub async fn stop(mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(mut task) = self.task.take() {
            // A connect or insert in flight ends within OP_TIMEOUT.
            if tokio::time::timeout(OP_TIMEOUT + Duration::from_secs(1), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn run(url: String, shared: Arc<Shared>) {
    let mut conn: Option<PgConnection> = None;
    let mut table_ready = false;
    let mut next_id: i64 = 1;
    while !shared.stop.load(Ordering::Relaxed) {
        if conn.is_none() {
            match tokio::time::timeout(OP_TIMEOUT, PgConnection::connect(&url)).await {
                Ok(Ok(c)) => conn = Some(c),
                other => {
                    shared.failed(format!("connect: {}", describe(other)));
                    tokio::time::sleep(BACKOFF).await;
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        if !table_ready {
            let create = sqlx::query(
                "CREATE TABLE IF NOT EXISTS writes (id bigint primary key, at timestamptz default now())",
            )
            .execute(&mut *c);
            match tokio::time::timeout(OP_TIMEOUT, create).await {
                Ok(Ok(_)) => table_ready = true,
                other => {
                    shared.failed(format!("create table: {}", describe(other)));
                    conn = None;
                    tokio::time::sleep(BACKOFF).await;
                    continue;
                }
            }
        }
        // Every attempt takes a fresh id, acknowledged or not: an insert
        // whose answer was lost may still have committed, and retrying its
        // id would then fail on the primary key forever. Ids that were tried
        // but not acknowledged are simply absent from `acked`.
        let id = next_id;
        next_id += 1;
        let insert = sqlx::query("INSERT INTO writes (id) VALUES ($1)")
            .bind(id)
            .execute(&mut *c);
        match tokio::time::timeout(OP_TIMEOUT, insert).await {
            Ok(Ok(_)) => {
                let mut r = shared.record();
                r.acked.push(id);
                r.last_ack_at = Some(Instant::now());
            }
            other => {
                shared.failed(format!("insert {id}: {}", describe(other)));
                // The connection may be dead or pointing at a server that
                // is no longer the primary: start over on a new one.
                conn = None;
                tokio::time::sleep(BACKOFF).await;
                continue;
            }
        }
        tokio::time::sleep(PACE).await;
    }
    if let Some(c) = conn {
        let _ = tokio::time::timeout(OP_TIMEOUT, c.close()).await;
    }
}

fn describe<T>(r: Result<Result<T, sqlx::Error>, tokio::time::error::Elapsed>) -> String {
    match r {
        Ok(Ok(_)) => "ok".into(),
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer in {OP_TIMEOUT:?}"),
    }
}
