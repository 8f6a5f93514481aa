//! Playbook runs, their steps, the audit log, persistent switches and
//! circuit breakers: the tables of migration 0003.
//!
//! Typed reads and writes only; what a state means and when it may change
//! is the playbook engine's and the breaker service's business.

use serde_json::Value;
use sqlx::Row;

use super::{json_pairs, pairs_json, StateDb, StateError};

/// One playbook run as recorded.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RunRecord {
    pub id: String,
    pub playbook: String,
    pub target: String,
    pub trigger: String,
    pub trigger_detail: Value,
    pub labels: Vec<(String, String)>,
    pub value: f64,
    pub dry_run: bool,
    pub state: String,
    pub reason: Option<String>,
    pub requested_by: String,
    pub decided_by: Option<String>,
    pub decided_at_ms: Option<i64>,
    pub created_ms: i64,
    pub started_ms: Option<i64>,
    pub finished_ms: Option<i64>,
    pub expires_ms: Option<i64>,
    pub verify: Option<Value>,
}

/// One executed (or executing) step of a run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StepRecord {
    pub run_id: String,
    pub seq: i64,
    pub phase: String,
    pub idx: i64,
    pub name: String,
    pub action: String,
    pub state: String,
    pub inputs: Value,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub started_ms: i64,
    pub finished_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AuditRecord {
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BreakerRecord {
    pub name: String,
    pub state: String,
    pub since_ms: i64,
    pub failures: i64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TransitionRecord {
    pub name: String,
    pub from: String,
    pub to: String,
    pub at_ms: i64,
    pub reason: String,
}

/// Which runs to list.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub playbook: Option<String>,
    pub target: Option<String>,
    pub states: Vec<String>,
    pub limit: i64,
}

const RUN_COLUMNS: &str = "id, playbook, target, trigger, trigger_detail, labels, value, dry_run, state, reason, requested_by, decided_by, decided_at_ms, created_ms, started_ms, finished_ms, expires_ms, verify";

fn run_of(r: &sqlx::sqlite::SqliteRow) -> RunRecord {
    let json = |s: Option<String>| s.and_then(|s| serde_json::from_str(&s).ok());
    RunRecord {
        id: r.get("id"),
        playbook: r.get("playbook"),
        target: r.get("target"),
        trigger: r.get("trigger"),
        trigger_detail: json(r.get("trigger_detail")).unwrap_or(Value::Null),
        labels: json_pairs(r.get("labels")),
        value: r.get("value"),
        dry_run: r.get("dry_run"),
        state: r.get("state"),
        reason: r.get("reason"),
        requested_by: r.get("requested_by"),
        decided_by: r.get("decided_by"),
        decided_at_ms: r.get("decided_at_ms"),
        created_ms: r.get("created_ms"),
        started_ms: r.get("started_ms"),
        finished_ms: r.get("finished_ms"),
        expires_ms: r.get("expires_ms"),
        verify: json(r.get("verify")),
    }
}

fn step_of(r: &sqlx::sqlite::SqliteRow) -> StepRecord {
    let json = |s: Option<String>| s.and_then(|s| serde_json::from_str(&s).ok());
    StepRecord {
        run_id: r.get("run_id"),
        seq: r.get("seq"),
        phase: r.get("phase"),
        idx: r.get("idx"),
        name: r.get("name"),
        action: r.get("action"),
        state: r.get("state"),
        inputs: json(r.get("inputs")).unwrap_or(Value::Null),
        output: json(r.get("output")),
        error: r.get("error"),
        started_ms: r.get("started_ms"),
        finished_ms: r.get("finished_ms"),
    }
}

impl StateDb {
    pub async fn insert_run(&self, r: &RunRecord) -> Result<(), StateError> {
        sqlx::query(&format!(
            "INSERT INTO runs ({RUN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(&r.id)
        .bind(&r.playbook)
        .bind(&r.target)
        .bind(&r.trigger)
        .bind(r.trigger_detail.to_string())
        .bind(pairs_json(&r.labels))
        .bind(r.value)
        .bind(r.dry_run)
        .bind(&r.state)
        .bind(&r.reason)
        .bind(&r.requested_by)
        .bind(&r.decided_by)
        .bind(r.decided_at_ms)
        .bind(r.created_ms)
        .bind(r.started_ms)
        .bind(r.finished_ms)
        .bind(r.expires_ms)
        .bind(r.verify.as_ref().map(Value::to_string))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Moves a run to `state`; `finished_ms` ends it, `reason` says why.
    pub async fn set_run_state(
        &self,
        id: &str,
        state: &str,
        reason: Option<&str>,
        finished_ms: Option<i64>,
    ) -> Result<(), StateError> {
        sqlx::query("UPDATE runs SET state = ?, reason = COALESCE(?, reason), finished_ms = COALESCE(?, finished_ms) WHERE id = ?")
            .bind(state)
            .bind(reason)
            .bind(finished_ms)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn set_run_started(&self, id: &str, at_ms: i64) -> Result<(), StateError> {
        sqlx::query(
            "UPDATE runs SET state = 'running', started_ms = COALESCE(started_ms, ?) WHERE id = ?",
        )
        .bind(at_ms)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records an approval decision, only while the run still waits for
    /// one; false when it no longer does (decided, expired, cancelled).
    pub async fn decide_run(
        &self,
        id: &str,
        approved: bool,
        by: &str,
        at_ms: i64,
    ) -> Result<bool, StateError> {
        let (state, finished) = if approved {
            ("approved", None)
        } else {
            ("denied", Some(at_ms))
        };
        let r = sqlx::query("UPDATE runs SET state = ?, decided_by = ?, decided_at_ms = ?, finished_ms = ? WHERE id = ? AND state = 'awaiting_approval'")
            .bind(state)
            .bind(by)
            .bind(at_ms)
            .bind(finished)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn set_run_verify(&self, id: &str, verify: &Value) -> Result<(), StateError> {
        sqlx::query("UPDATE runs SET verify = ? WHERE id = ?")
            .bind(verify.to_string())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn get_run(&self, id: &str) -> Result<Option<RunRecord>, StateError> {
        let r = sqlx::query(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(r.as_ref().map(run_of))
    }

    /// Newest first.
    pub async fn list_runs(&self, f: &RunFilter) -> Result<Vec<RunRecord>, StateError> {
        let mut sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE 1 = 1");
        if f.playbook.is_some() {
            sql.push_str(" AND playbook = ?");
        }
        if f.target.is_some() {
            sql.push_str(" AND target = ?");
        }
        if !f.states.is_empty() {
            sql.push_str(&format!(
                " AND state IN ({})",
                vec!["?"; f.states.len()].join(", ")
            ));
        }
        sql.push_str(" ORDER BY created_ms DESC, id DESC LIMIT ?");
        let mut q = sqlx::query(&sql);
        if let Some(p) = &f.playbook {
            q = q.bind(p);
        }
        if let Some(t) = &f.target {
            q = q.bind(t);
        }
        for s in &f.states {
            q = q.bind(s);
        }
        let limit = if f.limit <= 0 { 100 } else { f.limit };
        let rows = q.bind(limit).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(run_of).collect())
    }

    /// Runs of `playbook` created at or after `since_ms` in one of
    /// `states` (all states when empty).
    pub async fn count_runs_since(
        &self,
        playbook: &str,
        target: Option<&str>,
        since_ms: i64,
        states: &[&str],
    ) -> Result<i64, StateError> {
        let mut sql =
            "SELECT COUNT(*) AS n FROM runs WHERE playbook = ? AND created_ms >= ?".to_string();
        if target.is_some() {
            sql.push_str(" AND target = ?");
        }
        if !states.is_empty() {
            sql.push_str(&format!(
                " AND state IN ({})",
                vec!["?"; states.len()].join(", ")
            ));
        }
        let mut q = sqlx::query(&sql).bind(playbook).bind(since_ms);
        if let Some(t) = target {
            q = q.bind(t);
        }
        for s in states {
            q = q.bind(*s);
        }
        Ok(q.fetch_one(&self.pool).await?.get("n"))
    }

    /// When the newest run of (playbook, target) that did something ended
    /// (or started, if it has not ended).
    pub async fn last_acting_run_ms(
        &self,
        playbook: &str,
        target: &str,
        acting_states: &[&str],
    ) -> Result<Option<i64>, StateError> {
        let sql = format!(
            "SELECT MAX(COALESCE(finished_ms, started_ms, created_ms)) AS t FROM runs WHERE playbook = ? AND target = ? AND dry_run = 0 AND state IN ({})",
            vec!["?"; acting_states.len()].join(", ")
        );
        let mut q = sqlx::query(&sql).bind(playbook).bind(target);
        for s in acting_states {
            q = q.bind(*s);
        }
        Ok(q.fetch_one(&self.pool).await?.get("t"))
    }

    /// Writes a step row before its action starts; returns its sequence
    /// number within the run.
    pub async fn begin_step(&self, s: &StepRecord) -> Result<(), StateError> {
        sqlx::query("INSERT INTO run_steps (run_id, seq, phase, idx, name, action, state, inputs, output, error, started_ms, finished_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
            .bind(&s.run_id)
            .bind(s.seq)
            .bind(&s.phase)
            .bind(s.idx)
            .bind(&s.name)
            .bind(&s.action)
            .bind(&s.state)
            .bind(s.inputs.to_string())
            .bind(s.output.as_ref().map(Value::to_string))
            .bind(&s.error)
            .bind(s.started_ms)
            .bind(s.finished_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn finish_step(
        &self,
        run_id: &str,
        seq: i64,
        state: &str,
        output: Option<&Value>,
        error: Option<&str>,
        finished_ms: i64,
    ) -> Result<(), StateError> {
        sqlx::query("UPDATE run_steps SET state = ?, output = ?, error = ?, finished_ms = ? WHERE run_id = ? AND seq = ?")
            .bind(state)
            .bind(output.map(Value::to_string))
            .bind(error)
            .bind(finished_ms)
            .bind(run_id)
            .bind(seq)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn steps_of(&self, run_id: &str) -> Result<Vec<StepRecord>, StateError> {
        let rows = sqlx::query("SELECT run_id, seq, phase, idx, name, action, state, inputs, output, error, started_ms, finished_ms FROM run_steps WHERE run_id = ? ORDER BY seq")
            .bind(run_id)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(step_of).collect())
    }

    pub async fn audit(
        &self,
        at_ms: i64,
        actor: &str,
        action: &str,
        subject: &str,
        detail: &str,
    ) -> Result<(), StateError> {
        sqlx::query(
            "INSERT INTO audit (at_ms, actor, action, subject, detail) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(at_ms)
        .bind(actor)
        .bind(action)
        .bind(subject)
        .bind(detail)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Newest first; `subject` filters by prefix.
    pub async fn recent_audit(
        &self,
        subject_prefix: &str,
        limit: i64,
    ) -> Result<Vec<AuditRecord>, StateError> {
        let rows = sqlx::query("SELECT at_ms, actor, action, subject, detail FROM audit WHERE subject LIKE ? ORDER BY id DESC LIMIT ?")
            .bind(format!("{}%", subject_prefix.replace('%', "")))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| AuditRecord {
                at_ms: r.get("at_ms"),
                actor: r.get("actor"),
                action: r.get("action"),
                subject: r.get("subject"),
                detail: r.get("detail"),
            })
            .collect())
    }

    pub async fn set_flag(
        &self,
        key: &str,
        value: &str,
        at_ms: i64,
        actor: &str,
    ) -> Result<(), StateError> {
        sqlx::query("INSERT INTO flags (key, value, at_ms, actor) VALUES (?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value, at_ms = excluded.at_ms, actor = excluded.actor")
            .bind(key)
            .bind(value)
            .bind(at_ms)
            .bind(actor)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn clear_flag(&self, key: &str) -> Result<(), StateError> {
        sqlx::query("DELETE FROM flags WHERE key = ?")
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every flag: key → (value, at_ms, actor).
    pub async fn flags(&self) -> Result<Vec<(String, String, i64, String)>, StateError> {
        let rows = sqlx::query("SELECT key, value, at_ms, actor FROM flags ORDER BY key")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get("key"), r.get("value"), r.get("at_ms"), r.get("actor")))
            .collect())
    }

    /// Saves a breaker's state and, when it changed, the transition, in one
    /// transaction.
    pub async fn save_breaker(
        &self,
        b: &BreakerRecord,
        transition: Option<&TransitionRecord>,
    ) -> Result<(), StateError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO breakers (name, state, since_ms, failures) VALUES (?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET state = excluded.state, since_ms = excluded.since_ms, failures = excluded.failures")
            .bind(&b.name)
            .bind(&b.state)
            .bind(b.since_ms)
            .bind(b.failures)
            .execute(&mut *tx)
            .await?;
        if let Some(t) = transition {
            sqlx::query("INSERT INTO breaker_transitions (name, from_state, to_state, at_ms, reason) VALUES (?, ?, ?, ?, ?)")
                .bind(&t.name)
                .bind(&t.from)
                .bind(&t.to)
                .bind(t.at_ms)
                .bind(&t.reason)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn load_breakers(&self) -> Result<Vec<BreakerRecord>, StateError> {
        let rows = sqlx::query("SELECT name, state, since_ms, failures FROM breakers")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| BreakerRecord {
                name: r.get("name"),
                state: r.get("state"),
                since_ms: r.get("since_ms"),
                failures: r.get("failures"),
            })
            .collect())
    }

    /// Newest first.
    pub async fn breaker_transitions(
        &self,
        name: &str,
        limit: i64,
    ) -> Result<Vec<TransitionRecord>, StateError> {
        let rows = sqlx::query("SELECT name, from_state, to_state, at_ms, reason FROM breaker_transitions WHERE name = ? ORDER BY id DESC LIMIT ?")
            .bind(name)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| TransitionRecord {
                name: r.get("name"),
                from: r.get("from_state"),
                to: r.get("to_state"),
                at_ms: r.get("at_ms"),
                reason: r.get("reason"),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: &str, state: &str, created_ms: i64) -> RunRecord {
        RunRecord {
            id: id.into(),
            playbook: "pb".into(),
            target: "t".into(),
            trigger: "manual".into(),
            trigger_detail: serde_json::json!({"by": "me"}),
            labels: vec![("instance".into(), "t".into())],
            value: 1.5,
            dry_run: false,
            state: state.into(),
            reason: None,
            requested_by: "me".into(),
            decided_by: None,
            decided_at_ms: None,
            created_ms,
            started_ms: None,
            finished_ms: None,
            expires_ms: Some(created_ms + 10),
            verify: None,
        }
    }

    #[tokio::test]
    async fn runs_steps_and_decisions_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let db = StateDb::open(&dir.path().join("s.db")).await.unwrap();
        db.insert_run(&run("a", "awaiting_approval", 100))
            .await
            .unwrap();
        db.insert_run(&run("b", "failed", 200)).await.unwrap();
        assert!(db.decide_run("a", true, "alice", 150).await.unwrap());
        // A second decision finds nothing waiting.
        assert!(!db.decide_run("a", false, "bob", 160).await.unwrap());
        let a = db.get_run("a").await.unwrap().unwrap();
        assert_eq!(a.state, "approved");
        assert_eq!(a.decided_by.as_deref(), Some("alice"));
        assert_eq!(a.labels, vec![("instance".to_string(), "t".to_string())]);
        db.begin_step(&StepRecord {
            run_id: "a".into(),
            seq: 0,
            phase: "step".into(),
            idx: 0,
            name: "s".into(),
            action: "wait".into(),
            state: "running".into(),
            inputs: serde_json::json!({"duration": "1s"}),
            output: None,
            error: None,
            started_ms: 170,
            finished_ms: None,
        })
        .await
        .unwrap();
        db.finish_step(
            "a",
            0,
            "ok",
            Some(&serde_json::json!({"waited": 1})),
            None,
            180,
        )
        .await
        .unwrap();
        let steps = db.steps_of("a").await.unwrap();
        assert_eq!(steps[0].state, "ok");
        assert_eq!(steps[0].finished_ms, Some(180));
        assert_eq!(
            db.count_runs_since("pb", None, 150, &["failed"])
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            db.count_runs_since("pb", Some("t"), 0, &[]).await.unwrap(),
            2
        );
        let newest = db
            .list_runs(&RunFilter {
                limit: 1,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(newest[0].id, "b");
        db.set_run_state("b", "escalated", Some("verify failed"), Some(300))
            .await
            .unwrap();
        assert_eq!(
            db.last_acting_run_ms("pb", "t", &["escalated"])
                .await
                .unwrap(),
            Some(300)
        );
    }

    #[tokio::test]
    async fn flags_and_breakers_persist() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let db = StateDb::open(&path).await.unwrap();
        db.set_flag("pause", "all", 1, "ops").await.unwrap();
        db.save_breaker(
            &BreakerRecord {
                name: "llm".into(),
                state: "open".into(),
                since_ms: 5,
                failures: 3,
            },
            Some(&TransitionRecord {
                name: "llm".into(),
                from: "closed".into(),
                to: "open".into(),
                at_ms: 5,
                reason: "3 failures".into(),
            }),
        )
        .await
        .unwrap();
        db.close().await;
        let db = StateDb::open(&path).await.unwrap();
        assert_eq!(db.flags().await.unwrap()[0].1, "all");
        assert_eq!(db.load_breakers().await.unwrap()[0].state, "open");
        assert_eq!(
            db.breaker_transitions("llm", 10).await.unwrap()[0].to,
            "open"
        );
        db.clear_flag("pause").await.unwrap();
        assert!(db.flags().await.unwrap().is_empty());
    }
}
