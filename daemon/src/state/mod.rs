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

mod history;
mod hooks;
mod runs;
mod silences;
pub use runs::{AuditRecord, BreakerRecord, RunFilter, RunRecord, StepRecord, TransitionRecord};

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

/// An alert instance as remembered across restarts (see the rules stage
/// for what the fields mean).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAlert {
    pub rule: String,
    pub labels: Vec<(String, String)>,
    pub annotations: Vec<(String, String)>,
    pub state: String,
    pub value: f64,
    pub active_at_ms: i64,
    pub fired_at_ms: Option<i64>,
    pub resolved_at_ms: Option<i64>,
    pub keep_firing_since_ms: Option<i64>,
}

/// A rule group's remembered alerts and when it last evaluated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredGroup {
    pub last_eval_ms: i64,
    pub alerts: Vec<StoredAlert>,
}

fn pairs_json(p: &[(String, String)]) -> String {
    let m: serde_json::Map<String, serde_json::Value> = p
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    serde_json::Value::Object(m).to_string()
}

fn json_pairs(s: &str) -> Vec<(String, String)> {
    match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(s) {
        Ok(m) => m
            .into_iter()
            .map(|(k, v)| (k, v.as_str().unwrap_or_default().to_owned()))
            .collect(),
        Err(_) => Vec::new(),
    }
}

impl StateDb {
    /// Replaces a group's remembered alerts, in one transaction.
    pub async fn save_group_alerts(
        &self,
        group_key: &str,
        last_eval_ms: i64,
        alerts: &[StoredAlert],
    ) -> Result<(), StateError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM alerts WHERE group_key = ?")
            .bind(group_key)
            .execute(&mut *tx)
            .await?;
        for a in alerts {
            sqlx::query("INSERT INTO alerts (group_key, rule, labels, annotations, state, value, active_at_ms, fired_at_ms, resolved_at_ms, keep_firing_since_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
                .bind(group_key)
                .bind(&a.rule)
                .bind(pairs_json(&a.labels))
                .bind(pairs_json(&a.annotations))
                .bind(&a.state)
                .bind(a.value)
                .bind(a.active_at_ms)
                .bind(a.fired_at_ms)
                .bind(a.resolved_at_ms)
                .bind(a.keep_firing_since_ms)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("INSERT INTO rule_groups (group_key, last_eval_ms) VALUES (?, ?) ON CONFLICT(group_key) DO UPDATE SET last_eval_ms = excluded.last_eval_ms")
            .bind(group_key)
            .bind(last_eval_ms)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records that a group evaluated at `last_eval_ms` (a heartbeat).
    pub async fn touch_group(&self, group_key: &str, last_eval_ms: i64) -> Result<(), StateError> {
        sqlx::query("INSERT INTO rule_groups (group_key, last_eval_ms) VALUES (?, ?) ON CONFLICT(group_key) DO UPDATE SET last_eval_ms = excluded.last_eval_ms")
            .bind(group_key)
            .bind(last_eval_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Forgets a group that is no longer configured.
    pub async fn delete_group(&self, group_key: &str) -> Result<(), StateError> {
        let mut tx = self.pool.begin().await?;
        for q in [
            "DELETE FROM alerts WHERE group_key = ?",
            "DELETE FROM rule_groups WHERE group_key = ?",
        ] {
            sqlx::query(q).bind(group_key).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every remembered group with its alerts.
    pub async fn load_groups(
        &self,
    ) -> Result<std::collections::HashMap<String, StoredGroup>, StateError> {
        let mut out: std::collections::HashMap<String, StoredGroup> = Default::default();
        for r in sqlx::query("SELECT group_key, last_eval_ms FROM rule_groups")
            .fetch_all(&self.pool)
            .await?
        {
            out.entry(r.get("group_key")).or_default().last_eval_ms = r.get("last_eval_ms");
        }
        for r in sqlx::query("SELECT group_key, rule, labels, annotations, state, value, active_at_ms, fired_at_ms, resolved_at_ms, keep_firing_since_ms FROM alerts")
            .fetch_all(&self.pool)
            .await?
        {
            out.entry(r.get("group_key"))
                .or_default()
                .alerts
                .push(StoredAlert {
                    rule: r.get("rule"),
                    labels: json_pairs(r.get("labels")),
                    annotations: json_pairs(r.get("annotations")),
                    state: r.get("state"),
                    value: r.get("value"),
                    active_at_ms: r.get("active_at_ms"),
                    fired_at_ms: r.get("fired_at_ms"),
                    resolved_at_ms: r.get("resolved_at_ms"),
                    keep_firing_since_ms: r.get("keep_firing_since_ms"),
                });
        }
        Ok(out)
    }

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
    async fn alerts_survive_reopen_and_replace_per_group() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let db = StateDb::open(&path).await.unwrap();
        let a = StoredAlert {
            rule: "Down".into(),
            labels: vec![
                ("alertname".into(), "Down".into()),
                ("instance".into(), "a".into()),
            ],
            annotations: vec![("summary".into(), "a is down".into())],
            state: "pending".into(),
            value: 0.0,
            active_at_ms: 1000,
            fired_at_ms: None,
            resolved_at_ms: None,
            keep_firing_since_ms: None,
        };
        db.save_group_alerts("f;g", 5000, std::slice::from_ref(&a))
            .await
            .unwrap();
        db.save_group_alerts("f;h", 6000, &[]).await.unwrap();
        db.close().await;
        let db = StateDb::open(&path).await.unwrap();
        let groups = db.load_groups().await.unwrap();
        assert_eq!(groups["f;g"].last_eval_ms, 5000);
        assert_eq!(groups["f;g"].alerts, vec![a]);
        assert!(groups["f;h"].alerts.is_empty());
        db.save_group_alerts("f;g", 7000, &[]).await.unwrap();
        db.delete_group("f;h").await.unwrap();
        let groups = db.load_groups().await.unwrap();
        assert!(groups["f;g"].alerts.is_empty());
        assert!(!groups.contains_key("f;h"));
    }

    #[tokio::test]
    async fn unwritable_path_names_the_file() {
        let e = StateDb::open(Path::new("/proc/nope/state.db"))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("/proc/nope/state.db"), "{e}");
    }
}
