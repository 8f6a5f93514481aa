//! Circuit breakers as a service for the platform's applications, and the
//! `breaker` action that playbooks use to trip or reset one.
//!
//! Named breakers with the usual three states: closed (traffic flows;
//! `failure_threshold` consecutive failures open it), open (callers should
//! fail fast; after `recovery_timeout` it half-opens), half-open (the next
//! `half_open_trials` reports decide: one failure re-opens, that many
//! successes close). Applications read `GET /api/v1/breakers/<name>` and
//! report outcomes to `POST …/report`. Every transition is persisted and
//! restored on restart, published on Redis pub/sub (`<channel_prefix><name>`)
//! for instant fan-out to many replicas, and exported as metrics.
//!
//! This module owns breaker state and its transitions; HTTP lives in the
//! web stage, persistence in the state stage (written by the task started
//! with [`BreakerRegistry::run`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{typed, Action, ActionError, Ctx, ParamIssue};
use crate::collect::now_ms;
use crate::config::{PromDuration, Validator};
use crate::state::{BreakerRecord, StateDb, TransitionRecord};

/// Transitions queued for persistence and publication; beyond this the
/// oldest are dropped with a warning (the in-memory state stays right).
const QUEUE: usize = 1024;

/// Per-breaker settings; unset fields take `breakers.defaults`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerSettings {
    /// Consecutive failures that open a closed breaker (default 3).
    pub failure_threshold: u32,
    /// How long a breaker stays open before it half-opens (default 30s).
    pub recovery_timeout: PromDuration,
    /// Trial requests that decide a half-open breaker (default 5).
    pub half_open_trials: u32,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            failure_threshold: 3,
            recovery_timeout: PromDuration::from_secs(30),
            half_open_trials: 5,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerConfig {
    pub name: String,
    pub failure_threshold: Option<u32>,
    pub recovery_timeout: Option<PromDuration>,
    pub half_open_trials: Option<u32>,
}

/// The `breakers:` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakersConfig {
    pub defaults: BreakerSettings,
    pub breakers: Vec<BreakerConfig>,
    /// Where transitions are published (`redis://…`); none: not published.
    pub redis_url: Option<String>,
    /// Channel name before the breaker's name.
    pub channel_prefix: String,
    /// Bearer token applications present to report outcomes; none: open.
    pub report_token: Option<String>,
}

impl Default for BreakersConfig {
    fn default() -> Self {
        BreakersConfig {
            defaults: BreakerSettings::default(),
            breakers: Vec::new(),
            redis_url: None,
            channel_prefix: "homeostat:breaker:".into(),
            report_token: None,
        }
    }
}

impl BreakersConfig {
    fn settings_of(&self, b: &BreakerConfig) -> BreakerSettings {
        BreakerSettings {
            failure_threshold: b
                .failure_threshold
                .unwrap_or(self.defaults.failure_threshold),
            recovery_timeout: b.recovery_timeout.unwrap_or(self.defaults.recovery_timeout),
            half_open_trials: b.half_open_trials.unwrap_or(self.defaults.half_open_trials),
        }
    }

    pub fn validate(&self, path: &str, v: &mut Validator) {
        let mut seen = std::collections::HashSet::new();
        let check = |p: String, s: &BreakerSettings, v: &mut Validator| {
            if s.failure_threshold == 0 {
                v.error(format!("{p}.failure_threshold"), "must be at least 1");
            }
            if s.half_open_trials == 0 {
                v.error(format!("{p}.half_open_trials"), "must be at least 1");
            }
            if s.recovery_timeout.0.is_zero() {
                v.error(format!("{p}.recovery_timeout"), "must be greater than 0");
            }
        };
        check(format!("{path}.defaults"), &self.defaults, v);
        for (i, b) in self.breakers.iter().enumerate() {
            let p = format!("{path}.breakers.{i}");
            if b.name.is_empty()
                || !b
                    .name
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b"-_.:".contains(&c))
            {
                v.error(
                    format!("{p}.name"),
                    "must be letters, digits, '-', '_', '.' or ':' (it is a URL path segment)",
                );
            } else if !seen.insert(&b.name) {
                v.error(
                    format!("{p}.name"),
                    format!("duplicate breaker {:?}", b.name),
                );
            }
            check(p, &self.settings_of(b), v);
        }
        if let Some(u) = &self.redis_url {
            if redis::Client::open(u.as_str()).is_err() {
                v.error(format!("{path}.redis_url"), "is not a redis:// URL");
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Closed,
    Open,
    HalfOpen,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        match s {
            "closed" => Some(State::Closed),
            "open" => Some(State::Open),
            "half_open" | "half-open" => Some(State::HalfOpen),
            _ => None,
        }
    }
}

/// What applications read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BreakerView {
    pub name: String,
    pub state: State,
    /// Whether a caller should send traffic now.
    pub allow: bool,
    pub since_ms: i64,
    /// Consecutive failures while closed.
    pub failures: u32,
    /// Half-open: trials still to be reported before the decision.
    pub trials_left: u32,
    pub failure_threshold: u32,
    pub recovery_timeout_seconds: f64,
    pub half_open_trials: u32,
}

#[derive(Debug, Clone)]
struct Breaker {
    settings: BreakerSettings,
    state: State,
    since_ms: i64,
    failures: u32,
    trials_ok: u32,
}

/// A state change, queued for the state database and Redis.
#[derive(Debug, Clone)]
pub struct Transition {
    pub name: String,
    pub from: State,
    pub to: State,
    pub at_ms: i64,
    pub reason: String,
    pub failures: u32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    breaker: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransitionLabels {
    breaker: String,
    from: String,
    to: String,
}

struct Inner {
    breakers: Mutex<BTreeMap<String, Breaker>>,
    cfg: Mutex<BreakersConfig>,
    tx: mpsc::Sender<Transition>,
    rx: Mutex<Option<mpsc::Receiver<Transition>>>,
    state_gauge: Family<StateLabels, Gauge<i64, std::sync::atomic::AtomicI64>>,
    transitions: Family<TransitionLabels, Counter<u64, AtomicU64>>,
    dropped: Counter,
}

/// The breakers; cheap to clone.
#[derive(Clone)]
pub struct BreakerRegistry {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for BreakerRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BreakerRegistry").finish_non_exhaustive()
    }
}

/// Why a report or a change was not taken.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BreakerError {
    #[error("no breaker named {0:?} (breakers are declared under breakers.breakers)")]
    Unknown(String),
}

impl BreakerRegistry {
    pub fn new(registry: &mut Registry) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let r = BreakerRegistry {
            inner: Arc::new(Inner {
                breakers: Mutex::new(BTreeMap::new()),
                cfg: Mutex::new(BreakersConfig::default()),
                tx,
                rx: Mutex::new(Some(rx)),
                state_gauge: Family::default(),
                transitions: Family::default(),
                dropped: Counter::default(),
            }),
        };
        registry.register(
            "homeostat_breaker_state",
            "Current state of each circuit breaker: 1 for the state it is in.",
            r.inner.state_gauge.clone(),
        );
        registry.register(
            "homeostat_breaker_transitions",
            "Circuit breaker state changes.",
            r.inner.transitions.clone(),
        );
        registry.register(
            "homeostat_breaker_events_dropped",
            "Breaker transitions not persisted or published because the queue was full.",
            r.inner.dropped.clone(),
        );
        r
    }

    /// A registry for validation and tests, with its own metrics.
    pub fn detached() -> Self {
        Self::new(&mut Registry::default())
    }

    /// Applies a (re)loaded config: new breakers start closed (or as
    /// restored), settings change in place, removed ones are forgotten.
    pub fn apply(&self, cfg: &BreakersConfig) {
        let mut map = self.inner.breakers.lock();
        let wanted: HashMap<&str, BreakerSettings> = cfg
            .breakers
            .iter()
            .map(|b| (b.name.as_str(), cfg.settings_of(b)))
            .collect();
        map.retain(|name, _| wanted.contains_key(name.as_str()));
        for (name, settings) in &wanted {
            map.entry(name.to_string())
                .and_modify(|b| b.settings = *settings)
                .or_insert_with(|| Breaker {
                    settings: *settings,
                    state: State::Closed,
                    since_ms: now_ms(),
                    failures: 0,
                    trials_ok: 0,
                });
        }
        for (name, b) in map.iter() {
            self.export(name, b.state);
        }
        drop(map);
        *self.inner.cfg.lock() = cfg.clone();
        let names: Vec<String> = self.inner.breakers.lock().keys().cloned().collect();
        for n in names {
            self.schedule(&n);
        }
    }

    /// Restores persisted states (at start, after [`BreakerRegistry::apply`]).
    pub fn restore(&self, records: &[BreakerRecord]) {
        let mut map = self.inner.breakers.lock();
        for r in records {
            if let (Some(b), Some(state)) = (map.get_mut(&r.name), State::parse(&r.state)) {
                b.state = state;
                b.since_ms = r.since_ms;
                b.failures = u32::try_from(r.failures).unwrap_or(0);
                b.trials_ok = 0;
            }
        }
        let names: Vec<(String, State)> = map.iter().map(|(k, b)| (k.clone(), b.state)).collect();
        drop(map);
        for (n, s) in names {
            self.export(&n, s);
            self.schedule(&n);
        }
    }

    pub fn report_token(&self) -> Option<String> {
        self.inner.cfg.lock().report_token.clone()
    }

    pub fn list(&self) -> Vec<BreakerView> {
        let map = self.inner.breakers.lock();
        map.iter().map(|(n, b)| view(n, b)).collect()
    }

    pub fn get(&self, name: &str) -> Option<BreakerView> {
        self.inner.breakers.lock().get(name).map(|b| view(name, b))
    }

    /// Records call outcomes reported by an application.
    pub fn report(
        &self,
        name: &str,
        successes: u32,
        failures: u32,
    ) -> Result<BreakerView, BreakerError> {
        let mut changes = Vec::new();
        let v = {
            let mut map = self.inner.breakers.lock();
            let b = map
                .get_mut(name)
                .ok_or_else(|| BreakerError::Unknown(name.to_string()))?;
            // Failures first within one report: a batch that saw any failure
            // must not close a half-open breaker.
            for _ in 0..failures {
                match b.state {
                    State::Closed => {
                        b.failures += 1;
                        if b.failures >= b.settings.failure_threshold {
                            let reason = format!("{} consecutive failures", b.failures);
                            changes.push(move_to(name, b, State::Open, reason));
                        }
                    }
                    State::HalfOpen => {
                        changes.push(move_to(
                            name,
                            b,
                            State::Open,
                            "a half-open trial failed".into(),
                        ));
                    }
                    State::Open => {}
                }
            }
            for _ in 0..successes {
                match b.state {
                    State::Closed => b.failures = 0,
                    State::HalfOpen => {
                        b.trials_ok += 1;
                        if b.trials_ok >= b.settings.half_open_trials {
                            let reason = format!("{} half-open trials succeeded", b.trials_ok);
                            changes.push(move_to(name, b, State::Closed, reason));
                        }
                    }
                    State::Open => {}
                }
            }
            view(name, b)
        };
        for t in changes {
            self.emit(t);
        }
        Ok(v)
    }

    /// Moves a breaker by hand (API, playbook); a no-op when it is there.
    pub fn set(&self, name: &str, to: State, by: &str) -> Result<BreakerView, BreakerError> {
        let (v, change) = {
            let mut map = self.inner.breakers.lock();
            let b = map
                .get_mut(name)
                .ok_or_else(|| BreakerError::Unknown(name.to_string()))?;
            let change = (b.state != to).then(|| move_to(name, b, to, format!("set by {by}")));
            (view(name, b), change)
        };
        if let Some(t) = change {
            self.emit(t);
        }
        Ok(v)
    }

    fn emit(&self, t: Transition) {
        self.export(&t.name, t.to);
        self.inner
            .transitions
            .get_or_create(&TransitionLabels {
                breaker: t.name.clone(),
                from: t.from.as_str().into(),
                to: t.to.as_str().into(),
            })
            .inc();
        tracing::info!(breaker = %t.name, from = t.from.as_str(), to = t.to.as_str(), reason = %t.reason, "breaker transition");
        let name = t.name.clone();
        if self.inner.tx.try_send(t).is_err() {
            self.inner.dropped.inc();
            tracing::warn!(breaker = %name, "breaker transition queue full; not persisted or published");
        }
        self.schedule(&name);
    }

    fn export(&self, name: &str, state: State) {
        for s in [State::Closed, State::Open, State::HalfOpen] {
            self.inner
                .state_gauge
                .get_or_create(&StateLabels {
                    breaker: name.to_string(),
                    state: s.as_str().into(),
                })
                .set(i64::from(s == state));
        }
    }

    /// An open breaker half-opens after its recovery timeout: a timer per
    /// opening, which does nothing if the breaker moved on meanwhile.
    fn schedule(&self, name: &str) {
        let Some((since, wait)) = self.inner.breakers.lock().get(name).and_then(|b| {
            (b.state == State::Open).then(|| {
                let due = b.since_ms + b.settings.recovery_timeout.0.as_millis() as i64;
                (
                    b.since_ms,
                    Duration::from_millis((due - now_ms()).max(0) as u64),
                )
            })
        }) else {
            return;
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let me = self.clone();
        let name = name.to_string();
        rt.spawn(async move {
            tokio::time::sleep(wait).await;
            let change = {
                let mut map = me.inner.breakers.lock();
                match map.get_mut(&name) {
                    Some(b) if b.state == State::Open && b.since_ms == since => Some(move_to(
                        &name,
                        b,
                        State::HalfOpen,
                        "recovery timeout elapsed".into(),
                    )),
                    _ => None,
                }
            };
            if let Some(t) = change {
                me.emit(t);
            }
        });
    }

    /// Persists and publishes transitions in order until `stop`.
    pub async fn run(self, db: StateDb, stop: CancellationToken) {
        let Some(mut rx) = self.inner.rx.lock().take() else {
            return;
        };
        let mut conn: Option<(String, redis::aio::MultiplexedConnection)> = None;
        loop {
            let t = tokio::select! {
                _ = stop.cancelled() => break,
                t = rx.recv() => match t { Some(t) => t, None => break },
            };
            let rec = BreakerRecord {
                name: t.name.clone(),
                state: t.to.as_str().into(),
                since_ms: t.at_ms,
                failures: i64::from(t.failures),
            };
            let tr = TransitionRecord {
                name: t.name.clone(),
                from: t.from.as_str().into(),
                to: t.to.as_str().into(),
                at_ms: t.at_ms,
                reason: t.reason.clone(),
            };
            if let Err(e) = db.save_breaker(&rec, Some(&tr)).await {
                tracing::warn!(breaker = %t.name, error = %e, "cannot persist breaker transition");
            }
            let (url, prefix) = {
                let c = self.inner.cfg.lock();
                (c.redis_url.clone(), c.channel_prefix.clone())
            };
            let Some(url) = url else { continue };
            if conn.as_ref().is_none_or(|(u, _)| *u != url) {
                conn = super::redis::connect(&url, Duration::from_secs(2))
                    .await
                    .map_err(|e| tracing::warn!(error = %e, "cannot connect to Redis to publish breaker transitions"))
                    .ok()
                    .map(|c| (url.clone(), c));
            }
            if let Some((_, c)) = conn.as_mut() {
                let msg = json!({
                    "breaker": t.name, "from": t.from.as_str(), "to": t.to.as_str(),
                    "at_ms": t.at_ms, "reason": t.reason,
                })
                .to_string();
                let r: Result<i64, _> = redis::cmd("PUBLISH")
                    .arg(format!("{prefix}{}", t.name))
                    .arg(msg)
                    .query_async(c)
                    .await;
                if let Err(e) = r {
                    tracing::warn!(breaker = %t.name, error = %e, "cannot publish breaker transition");
                    conn = None;
                }
            }
        }
    }
}

fn move_to(name: &str, b: &mut Breaker, to: State, reason: String) -> Transition {
    let t = Transition {
        name: name.to_string(),
        from: b.state,
        to,
        at_ms: now_ms(),
        reason,
        failures: b.failures,
    };
    b.state = to;
    b.since_ms = t.at_ms;
    b.trials_ok = 0;
    if to == State::Closed {
        b.failures = 0;
    }
    t
}

fn view(name: &str, b: &Breaker) -> BreakerView {
    BreakerView {
        name: name.to_string(),
        state: b.state,
        allow: b.state != State::Open,
        since_ms: b.since_ms,
        failures: b.failures,
        trials_left: if b.state == State::HalfOpen {
            b.settings.half_open_trials.saturating_sub(b.trials_ok)
        } else {
            0
        },
        failure_threshold: b.settings.failure_threshold,
        recovery_timeout_seconds: b.settings.recovery_timeout.0.as_secs_f64(),
        half_open_trials: b.settings.half_open_trials,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    name: String,
    /// open | half_open | closed
    state: String,
}

fn check(p: &Params) -> Result<State, ParamIssue> {
    State::parse(&p.state)
        .ok_or_else(|| ParamIssue::new("state", "must be open, half_open or closed"))
}

/// `breaker`: trip or reset a named breaker from a playbook.
pub struct BreakerAction;

#[async_trait::async_trait]
impl Action for BreakerAction {
    fn name(&self) -> &'static str {
        "breaker"
    }

    fn validate(&self, params: &Value) -> Result<(), ParamIssue> {
        check(&typed::<Params>(params)?).map(|_| ())
    }

    fn describe(&self, params: &Value) -> String {
        match typed::<Params>(params) {
            Ok(p) => format!("set breaker {} to {}", p.name, p.state),
            Err(e) => format!("breaker (invalid: {})", e.message),
        }
    }

    async fn execute(&self, ctx: &Ctx<'_>, params: &Value) -> Result<Value, ActionError> {
        let p: Params = typed(params).map_err(|e| ActionError::Params(e.message))?;
        let to = check(&p).map_err(|e| ActionError::Params(e.message))?;
        let before = ctx.deps.breakers.get(&p.name).ok_or_else(|| {
            ActionError::Params(BreakerError::Unknown(p.name.clone()).to_string())
        })?;
        let after = ctx
            .deps
            .breakers
            .set(
                &p.name,
                to,
                &format!("playbook {} run {}", ctx.playbook, ctx.run_id),
            )
            .map_err(ActionError::failed)?;
        Ok(json!({ "breaker": p.name, "from": before.state, "to": after.state }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(settings: BreakerSettings) -> BreakerRegistry {
        let r = BreakerRegistry::detached();
        r.apply(&BreakersConfig {
            defaults: settings,
            breakers: vec![BreakerConfig {
                name: "llm".into(),
                failure_threshold: None,
                recovery_timeout: None,
                half_open_trials: None,
            }],
            ..Default::default()
        });
        r
    }

    #[tokio::test]
    async fn closed_open_half_open_closed() {
        let r = registry(BreakerSettings {
            recovery_timeout: PromDuration(Duration::from_millis(50)),
            ..Default::default()
        });
        assert_eq!(r.report("llm", 0, 2).unwrap().state, State::Closed);
        // A success resets the run of failures.
        r.report("llm", 1, 0).unwrap();
        assert_eq!(r.report("llm", 0, 2).unwrap().state, State::Closed);
        let v = r.report("llm", 0, 1).unwrap();
        assert_eq!((v.state, v.allow), (State::Open, false));
        tokio::time::sleep(Duration::from_millis(120)).await;
        let v = r.get("llm").unwrap();
        assert_eq!((v.state, v.trials_left), (State::HalfOpen, 5));
        assert_eq!(r.report("llm", 4, 0).unwrap().trials_left, 1);
        assert_eq!(r.report("llm", 1, 0).unwrap().state, State::Closed);
        // Half-open again, then one failed trial re-opens.
        r.set("llm", State::HalfOpen, "test").unwrap();
        assert_eq!(r.report("llm", 3, 1).unwrap().state, State::Open);
        assert_eq!(
            r.report("nope", 1, 0),
            Err(BreakerError::Unknown("nope".into()))
        );
    }

    #[test]
    fn restore_keeps_state_and_validation_names_fields() {
        let r = registry(BreakerSettings::default());
        r.restore(&[BreakerRecord {
            name: "llm".into(),
            state: "open".into(),
            since_ms: now_ms(),
            failures: 3,
        }]);
        assert_eq!(r.get("llm").unwrap().state, State::Open);
        let cfg = BreakersConfig {
            breakers: vec![BreakerConfig {
                name: "a b".into(),
                failure_threshold: Some(0),
                recovery_timeout: None,
                half_open_trials: None,
            }],
            ..Default::default()
        };
        let mut v = Validator::new();
        cfg.validate("breakers", &mut v);
        let text = format!("{:?}", v.issues);
        assert!(text.contains("breakers.breakers.0.name"), "{text}");
        assert!(
            text.contains("breakers.breakers.0.failure_threshold"),
            "{text}"
        );
    }
}
