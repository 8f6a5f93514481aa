//! Silences: matchers with a start, an end, a creator and a comment, in
//! Alertmanager's API v2 shape so `amtool` habits and scripts carry over.
//! Persisted in the state database; expired silences are kept there (and
//! listed) for audit.
//!
//! Owns the set of silences and the "is this alert silenced" question. It
//! does not decide what happens to a silenced alert; the dispatcher does.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use super::alertmanager::rfc3339_ms;
use super::matcher::{MatchOp, Matcher};
use crate::state::StateDb;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SilenceMatcher {
    pub name: String,
    pub value: String,
    #[serde(rename = "isRegex")]
    pub is_regex: bool,
    #[serde(rename = "isEqual", default = "yes")]
    pub is_equal: bool,
}

fn yes() -> bool {
    true
}

/// The body of `POST /api/v2/silences`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostableSilence {
    #[serde(default)]
    pub id: Option<String>,
    pub matchers: Vec<SilenceMatcher>,
    #[serde(rename = "startsAt")]
    pub starts_at: String,
    #[serde(rename = "endsAt")]
    pub ends_at: String,
    #[serde(rename = "createdBy")]
    pub created_by: String,
    pub comment: String,
}

/// A silence as stored and served.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Silence {
    pub id: String,
    pub matchers: Vec<SilenceMatcher>,
    pub starts_at_ms: i64,
    pub ends_at_ms: i64,
    pub created_by: String,
    pub comment: String,
    pub updated_at_ms: i64,
    #[serde(skip)]
    compiled: Vec<Matcher>,
}

fn compile(ms: &[SilenceMatcher]) -> Result<Vec<Matcher>, String> {
    ms.iter()
        .map(|m| {
            let op = match (m.is_regex, m.is_equal) {
                (false, true) => MatchOp::Eq,
                (false, false) => MatchOp::Ne,
                (true, true) => MatchOp::Re,
                (true, false) => MatchOp::NotRe,
            };
            Matcher::new(&m.name, op, &m.value)
        })
        .collect()
}

/// RFC 3339 to ms since the epoch.
pub fn parse_time(s: &str) -> Result<i64, String> {
    s.parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond())
        .map_err(|e| format!("{s:?} is not an RFC 3339 time: {e}"))
}

impl Silence {
    pub fn state(&self, now: i64) -> &'static str {
        if now < self.starts_at_ms {
            "pending"
        } else if now < self.ends_at_ms {
            "active"
        } else {
            "expired"
        }
    }

    pub fn mutes(&self, labels: &BTreeMap<String, String>, now: i64) -> bool {
        self.state(now) == "active" && self.compiled.iter().all(|m| m.matches_labels(labels))
    }

    /// Alertmanager's `gettableSilence`.
    pub fn to_json(&self, now: i64) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "status": {"state": self.state(now)},
            "updatedAt": rfc3339_ms(self.updated_at_ms),
            "comment": self.comment,
            "createdBy": self.created_by,
            "startsAt": rfc3339_ms(self.starts_at_ms),
            "endsAt": rfc3339_ms(self.ends_at_ms),
            "matchers": self.matchers,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SilenceError {
    #[error("{0}")]
    Invalid(String),
    #[error("silence {0} not found")]
    NotFound(String),
    #[error("silence {0} is already expired")]
    Expired(String),
    #[error("state database: {0}")]
    State(#[from] crate::state::StateError),
}

/// The silences; cheap to clone.
#[derive(Clone)]
pub struct Silences {
    inner: Arc<RwLock<BTreeMap<String, Silence>>>,
    db: Option<StateDb>,
}

impl Silences {
    pub fn new(db: Option<StateDb>) -> Self {
        Silences {
            inner: Arc::new(RwLock::new(BTreeMap::new())),
            db,
        }
    }

    /// Loads what the state database has.
    pub async fn restore(&self) -> Result<usize, crate::state::StateError> {
        let Some(db) = &self.db else { return Ok(0) };
        let mut n = 0;
        for body in db.load_silences().await? {
            match serde_json::from_str::<Silence>(&body) {
                Ok(mut s) => match compile(&s.matchers) {
                    Ok(c) => {
                        s.compiled = c;
                        self.inner.write().insert(s.id.clone(), s);
                        n += 1;
                    }
                    Err(e) => {
                        tracing::warn!(id = %s.id, error = %e, "stored silence does not compile; skipped")
                    }
                },
                Err(e) => tracing::warn!(error = %e, "stored silence unreadable; skipped"),
            }
        }
        Ok(n)
    }

    /// Creates a silence, or updates one by id: in place when only its end
    /// or comment moves and it has not expired, else the old one is expired
    /// and a new one made (as Alertmanager).
    pub async fn upsert(&self, p: PostableSilence, now: i64) -> Result<String, SilenceError> {
        let starts = parse_time(&p.starts_at).map_err(SilenceError::Invalid)?;
        let ends = parse_time(&p.ends_at).map_err(SilenceError::Invalid)?;
        if p.matchers.is_empty() {
            return Err(SilenceError::Invalid(
                "at least one matcher is required".into(),
            ));
        }
        let compiled = compile(&p.matchers).map_err(SilenceError::Invalid)?;
        if compiled.iter().all(|m| m.matches("")) {
            return Err(SilenceError::Invalid(
                "at least one matcher must not match the empty string".into(),
            ));
        }
        if ends <= starts {
            return Err(SilenceError::Invalid(
                "endsAt must be after startsAt".into(),
            ));
        }
        if ends <= now {
            return Err(SilenceError::Invalid("endsAt is in the past".into()));
        }
        if p.created_by.trim().is_empty() {
            return Err(SilenceError::Invalid("createdBy is required".into()));
        }
        if p.comment.trim().is_empty() {
            return Err(SilenceError::Invalid("comment is required".into()));
        }
        let mut kept: Option<Silence> = None;
        if let Some(old_id) = p.id.as_deref().filter(|s| !s.is_empty()) {
            let old = self
                .inner
                .read()
                .get(old_id)
                .cloned()
                .ok_or_else(|| SilenceError::NotFound(old_id.to_string()))?;
            if old.state(now) != "expired" {
                if old.matchers == p.matchers {
                    kept = Some(old);
                } else {
                    self.expire(old_id, now).await?;
                }
            }
        }
        let s = Silence {
            id: kept.as_ref().map_or_else(new_id, |o| o.id.clone()),
            matchers: p.matchers,
            // A start in the past means now; an active silence keeps its start.
            starts_at_ms: match &kept {
                Some(o) if o.state(now) == "active" => o.starts_at_ms,
                _ => starts.max(now),
            },
            ends_at_ms: ends,
            created_by: p.created_by,
            comment: p.comment,
            updated_at_ms: now,
            compiled,
        };
        self.store(&s).await?;
        let id = s.id.clone();
        self.inner.write().insert(id.clone(), s);
        Ok(id)
    }

    async fn store(&self, s: &Silence) -> Result<(), SilenceError> {
        if let Some(db) = &self.db {
            let body =
                serde_json::to_string(s).map_err(|e| SilenceError::Invalid(e.to_string()))?;
            db.save_silence(&s.id, &body, s.ends_at_ms, s.updated_at_ms)
                .await?;
        }
        Ok(())
    }

    /// Ends a silence now; a pending one ends before it began.
    pub async fn expire(&self, id: &str, now: i64) -> Result<(), SilenceError> {
        let mut s = self
            .inner
            .read()
            .get(id)
            .cloned()
            .ok_or_else(|| SilenceError::NotFound(id.to_string()))?;
        match s.state(now) {
            "expired" => return Err(SilenceError::Expired(id.to_string())),
            "pending" => {
                s.starts_at_ms = now;
                s.ends_at_ms = now;
            }
            _ => s.ends_at_ms = now,
        }
        s.updated_at_ms = now;
        self.store(&s).await?;
        self.inner.write().insert(id.to_string(), s);
        Ok(())
    }

    pub fn get(&self, id: &str) -> Option<Silence> {
        self.inner.read().get(id).cloned()
    }

    pub fn list(&self) -> Vec<Silence> {
        self.inner.read().values().cloned().collect()
    }

    /// Ids of the active silences that mute these labels.
    pub fn muted_by(&self, labels: &BTreeMap<String, String>, now: i64) -> Vec<String> {
        self.inner
            .read()
            .values()
            .filter(|s| s.mutes(labels, now))
            .map(|s| s.id.clone())
            .collect()
    }
}

/// A random UUIDv4-formatted id, as Alertmanager's.
fn new_id() -> String {
    let a = fastrand::u64(..);
    let b = fastrand::u64(..);
    let h = format!("{a:016x}{b:016x}");
    format!(
        "{}-{}-4{}-{:x}{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        8 + (b & 3),
        &h[17..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(m: &[(&str, &str, bool)], start: &str, end: &str) -> PostableSilence {
        PostableSilence {
            id: None,
            matchers: m
                .iter()
                .map(|(n, v, re)| SilenceMatcher {
                    name: n.to_string(),
                    value: v.to_string(),
                    is_regex: *re,
                    is_equal: true,
                })
                .collect(),
            starts_at: start.into(),
            ends_at: end.into(),
            created_by: "alice".into(),
            comment: "maintenance".into(),
        }
    }

    #[tokio::test]
    async fn lifecycle_and_validation() {
        let s = Silences::new(None);
        let now = parse_time("2026-11-23T10:00:00Z").unwrap();
        let id = s
            .upsert(
                post(
                    &[("instance", "db-.*", true)],
                    "2026-11-23T09:00:00Z",
                    "2026-11-23T11:00:00Z",
                ),
                now,
            )
            .await
            .unwrap();
        let l: BTreeMap<String, String> = [("instance".to_string(), "db-1".to_string())].into();
        assert_eq!(s.muted_by(&l, now), vec![id.clone()]);
        assert!(s
            .muted_by(&l, parse_time("2026-11-23T11:00:00Z").unwrap())
            .is_empty());
        s.expire(&id, now + 1).await.unwrap();
        assert!(s.muted_by(&l, now + 2).is_empty());
        assert_eq!(s.get(&id).unwrap().state(now + 2), "expired");
        assert!(matches!(
            s.expire(&id, now + 3).await,
            Err(SilenceError::Expired(_))
        ));
        for bad in [
            post(&[], "2026-11-23T09:00:00Z", "2026-11-23T11:00:00Z"),
            post(
                &[("a", ".*", true)],
                "2026-11-23T09:00:00Z",
                "2026-11-23T11:00:00Z",
            ),
            post(
                &[("a", "b", false)],
                "2026-11-23T09:00:00Z",
                "2026-11-23T09:30:00Z",
            ),
            post(
                &[("a", "(", true)],
                "2026-11-23T09:00:00Z",
                "2026-11-23T11:00:00Z",
            ),
        ] {
            assert!(s.upsert(bad, now).await.is_err());
        }
        assert_eq!(new_id().len(), 36);
    }
}
