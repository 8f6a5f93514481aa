//! The durable record: sqlx over SQLite (the embedded default).
//!
//! Owns the schema (migrations in `daemon/migrations`, run at start) and typed
//! methods for every stage that persists something. Stages never write SQL of
//! their own; later stages add their tables (alerts, runs, silences) here.
//! This module never decides anything; it only remembers.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::Row;

use crate::config::Validator;

/// Where the state lives.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct StateConfig {
    /// SQLite database file, created if missing; relative paths resolve
    /// against the config file's directory. `:memory:` keeps state in memory
    /// only (tests, demos).
    pub path: PathBuf,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            path: PathBuf::from("homeostat.db"),
        }
    }
}

impl StateConfig {
    pub fn validate(&self, path: &str, v: &mut Validator) {
        if self.path.as_os_str().is_empty() {
            v.error(format!("{path}.path"), "must not be empty");
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot open state database {path}: {source}")]
    Open { path: String, source: sqlx::Error },
    #[error("cannot migrate state database {path}: {source}")]
    Migrate {
        path: String,
        source: sqlx::migrate::MigrateError,
    },
    #[error("state database query failed: {0}")]
    Query(#[from] sqlx::Error),
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A handle to the state database; cheap to clone.
#[derive(Clone, Debug)]
pub struct StateDb {
    pool: SqlitePool,
}

/// One recorded config load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadRecord {
    pub at_ms: i64,
    pub source: String,
    pub trigger: String,
    pub success: bool,
    pub error: Option<String>,
}

impl StateDb {
    /// Opens (creating if needed) and migrates the database.
    pub async fn open(path: &Path) -> Result<Self, StateError> {
        let shown = path.display().to_string();
        let memory = shown == ":memory:";
        let opts = if memory {
            SqliteConnectOptions::from_str("sqlite::memory:").map_err(|source| {
                StateError::Open {
                    path: shown.clone(),
                    source,
                }
            })?
        } else {
            SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true)
        }
        // WAL: readers (API) never block the writer (stages), and a crash
        // loses no committed transaction.
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            // One connection for :memory:, or each connection would see its
            // own empty database.
            .max_connections(if memory { 1 } else { 4 })
            .connect_with(opts)
            .await
            .map_err(|source| StateError::Open {
                path: shown.clone(),
                source,
            })?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|source| StateError::Migrate {
                path: shown.clone(),
                source,
            })?;
        sqlx::query("INSERT INTO meta (key, value) VALUES ('created_by_version', ?) ON CONFLICT(key) DO NOTHING")
            .bind(env!("CARGO_PKG_VERSION"))
            .execute(&pool)
            .await?;
        Ok(StateDb { pool })
    }

    pub async fn record_reload(&self, r: &ReloadRecord) -> Result<(), StateError> {
        sqlx::query("INSERT INTO config_reloads (at_ms, source, trigger, success, error) VALUES (?, ?, ?, ?, ?)")
            .bind(r.at_ms)
            .bind(&r.source)
            .bind(&r.trigger)
            .bind(r.success)
            .bind(&r.error)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Most recent first.
    pub async fn recent_reloads(&self, limit: i64) -> Result<Vec<ReloadRecord>, StateError> {
        let rows = sqlx::query("SELECT at_ms, source, trigger, success, error FROM config_reloads ORDER BY id DESC LIMIT ?")
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| ReloadRecord {
                at_ms: r.get("at_ms"),
                source: r.get("source"),
                trigger: r.get("trigger"),
                success: r.get::<bool, _>("success"),
                error: r.get("error"),
            })
            .collect())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn migrates_and_records_reloads_durably() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let db = StateDb::open(&path).await.unwrap();
        let rec = ReloadRecord {
            at_ms: 1,
            source: "a.yaml".into(),
            trigger: "sighup".into(),
            success: false,
            error: Some("bad".into()),
        };
        db.record_reload(&rec).await.unwrap();
        db.close().await;
        // Reopening runs migrations again (a no-op) and sees the row.
        let db = StateDb::open(&path).await.unwrap();
        assert_eq!(db.recent_reloads(10).await.unwrap(), vec![rec]);
    }

    #[tokio::test]
    async fn unwritable_path_names_the_file() {
        let e = StateDb::open(Path::new("/proc/nope/state.db"))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("/proc/nope/state.db"), "{e}");
    }
}
