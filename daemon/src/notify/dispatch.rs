//! The dispatcher: Alertmanager's grouping and notification pipeline.
//!
//! Alerts (from the rules stage, from `POST /api/v2/alerts`) are merged by
//! fingerprint and put into aggregation groups per matching route. A group
//! flushes `group_wait` after it is created (at once when its alert started
//! longer ago than that), then every `group_interval`. A flush drops
//! inhibited and silenced alerts, honours the route's time intervals, and
//! sends to each channel of the receiver only when the notification log
//! says something changed or `repeat_interval` has passed: Alertmanager's
//! `DedupStage`, rule for rule. Playbook events are routed by the same tree
//! and sent at once.
//!
//! Owns alerts, groups and the notification log (in memory: a restart
//! re-sends firing groups once, as a fresh Alertmanager without its
//! nflog would). Delivery itself belongs to the channels.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use serde::Deserialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::channel::{ChannelMetrics, Job, NotifAlert, Notification, RunEvent};
use super::route::{labelset_string, Route};
use super::silence::{parse_time, Silences};
use super::{AmAlert, Compiled, InhibitRule, NotifyConfig};
use crate::collect::now_ms;

/// How long an emptied group lingers before it is removed, as
/// Alertmanager's maintenance interval.
const EMPTY_GROUP_TTL_MS: i64 = 30_000;
/// Resolved alerts are forgotten this long after they ended.
const RESOLVED_RETENTION_MS: i64 = 15 * 60_000;

/// FNV-1a over `name\xffvalue\xff`, sorted by name: Prometheus's
/// `model.LabelSet.Fingerprint`, so fingerprints match Alertmanager's.
pub fn fingerprint(labels: &BTreeMap<String, String>) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for (k, v) in labels {
        for b in k.bytes().chain([0xff]).chain(v.bytes()).chain([0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    h
}

/// An alert as the dispatcher keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub starts_at: i64,
    pub ends_at: i64,
    /// `endsAt` was not given; it is now + resolve_timeout.
    pub timeout: bool,
    pub generator_url: String,
    pub updated_at: i64,
    pub value: Option<f64>,
    pub fp: u64,
}

impl Alert {
    pub fn resolved(&self, now: i64) -> bool {
        self.ends_at <= now
    }

    /// Alertmanager's `Alert.Merge`: `o` is the newer update.
    fn merge(&self, o: &Alert) -> Alert {
        if o.updated_at < self.updated_at {
            return o.merge(self);
        }
        let mut res = o.clone();
        res.starts_at = self.starts_at.min(o.starts_at);
        let now = o.updated_at;
        if o.resolved(now) {
            if self.resolved(now) && self.ends_at > o.ends_at {
                res.ends_at = self.ends_at;
            }
        } else if self.ends_at > o.ends_at && !self.timeout {
            res.ends_at = self.ends_at;
        }
        res
    }

    fn to_notif(&self, now: i64) -> NotifAlert {
        let resolved = self.resolved(now);
        NotifAlert {
            status: if resolved { "resolved" } else { "firing" },
            labels: self.labels.clone(),
            annotations: self.annotations.clone(),
            starts_at_ms: self.starts_at,
            ends_at_ms: resolved.then_some(self.ends_at),
            generator_url: self.generator_url.clone(),
            fingerprint: self.fp,
            value: self.value,
        }
    }
}

/// Alertmanager's `postableAlert`.
#[derive(Debug, Clone, Deserialize)]
pub struct PostableAlert {
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(rename = "startsAt", default)]
    pub starts_at: Option<String>,
    #[serde(rename = "endsAt", default)]
    pub ends_at: Option<String>,
    #[serde(rename = "generatorURL", default)]
    pub generator_url: String,
}

impl PostableAlert {
    /// Validated as Alertmanager does: labels present and named well,
    /// times readable and in order.
    pub fn into_alert(self, now: i64, resolve_timeout: Duration) -> Result<Alert, String> {
        if self.labels.is_empty() {
            return Err("at least one label pair required".into());
        }
        for (k, v) in &self.labels {
            if !crate::collect::relabel::valid_label_name(k) {
                return Err(format!("invalid label name {k:?}"));
            }
            if v.is_empty() {
                return Err(format!("empty value for label {k:?}"));
            }
        }
        let parse = |s: &Option<String>| -> Result<Option<i64>, String> {
            match s.as_deref() {
                None | Some("") | Some("0001-01-01T00:00:00Z") => Ok(None),
                Some(t) => parse_time(t).map(Some),
            }
        };
        let starts = parse(&self.starts_at)?;
        let ends = parse(&self.ends_at)?;
        let starts_at = match (starts, ends) {
            (Some(s), _) => s,
            (None, Some(e)) if e < now => e,
            _ => now,
        };
        let (ends_at, timeout) = match ends {
            Some(e) => (e, false),
            None => (now + resolve_timeout.as_millis() as i64, true),
        };
        if ends_at < starts_at {
            return Err("start time must be before end time".into());
        }
        let fp = fingerprint(&self.labels);
        Ok(Alert {
            labels: self.labels,
            annotations: self.annotations,
            starts_at,
            ends_at,
            timeout,
            generator_url: self.generator_url,
            updated_at: now,
            value: None,
            fp,
        })
    }
}

/// What a group flushes with: a route's settings.
#[derive(Debug, Clone)]
struct GroupRoute {
    receiver: String,
    group_wait: i64,
    group_interval: i64,
    repeat_interval: i64,
    mute: Vec<String>,
    active: Vec<String>,
}

impl GroupRoute {
    fn of(r: &Route) -> Self {
        GroupRoute {
            receiver: r.receiver.clone(),
            group_wait: r.group_wait.as_millis() as i64,
            group_interval: r.group_interval.as_millis() as i64,
            repeat_interval: r.repeat_interval.as_millis() as i64,
            mute: r.mute_time_intervals.clone(),
            active: r.active_time_intervals.clone(),
        }
    }
}

struct Group {
    key: String,
    labels: BTreeMap<String, String>,
    route: GroupRoute,
    alerts: HashMap<u64, Alert>,
    next_flush: i64,
    has_flushed: bool,
    empty_since: Option<i64>,
}

/// The notification log entry of one (group, receiver, channel).
#[derive(Debug, Clone, Default)]
pub struct LogEntry {
    pub firing: BTreeSet<u64>,
    pub resolved: BTreeSet<u64>,
    pub at: i64,
}

/// Alertmanager's `DedupStage.needsUpdate`.
pub fn needs_update(
    entry: Option<&LogEntry>,
    firing: &BTreeSet<u64>,
    resolved: &BTreeSet<u64>,
    send_resolved: bool,
    repeat: i64,
    now: i64,
) -> bool {
    let Some(e) = entry else {
        return !firing.is_empty();
    };
    if !firing.is_subset(&e.firing) {
        return true;
    }
    if firing.is_empty() {
        return !e.firing.is_empty();
    }
    if send_resolved && !resolved.is_subset(&e.resolved) {
        return true;
    }
    e.at < now - repeat
}

type LogKey = (String, String, usize);

#[derive(Default)]
struct State {
    alerts: HashMap<u64, Alert>,
    groups: BTreeMap<String, Group>,
    nflog: HashMap<LogKey, LogEntry>,
    inflight: HashSet<LogKey>,
}

struct Inner {
    state: Mutex<State>,
    compiled: RwLock<Arc<Compiled>>,
    silences: Silences,
    external_url: RwLock<String>,
    wake: Notify,
    metrics: ChannelMetrics,
}

/// Handle to the dispatcher; cheap to clone.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

fn empty_compiled() -> Compiled {
    Compiled {
        route: None,
        receivers: BTreeMap::new(),
        inhibit: Vec::new(),
        intervals: BTreeMap::new(),
        resolve_timeout: Duration::from_secs(300),
        playbook_events: Vec::new(),
    }
}

/// Alertmanager's inhibitor for one moment: the firing source alerts of
/// each rule, found once, so a flush checks each alert against the few
/// sources instead of every alert held.
struct Inhibitor<'a> {
    rules: &'a [InhibitRule],
    sources: Vec<Vec<&'a Alert>>,
}

impl<'a> Inhibitor<'a> {
    fn new(rules: &'a [InhibitRule], alerts: &'a HashMap<u64, Alert>, now: i64) -> Self {
        let sources = rules
            .iter()
            .map(|r| {
                alerts
                    .values()
                    .filter(|s| {
                        !s.resolved(now) && super::matcher::matches_all(&r.source, &s.labels)
                    })
                    .collect()
            })
            .collect();
        Inhibitor { rules, sources }
    }

    /// The fingerprint of an alert inhibiting these labels:
    /// Alertmanager's `Inhibitor.Mutes`, where an alert matching both
    /// sides of a rule cannot be inhibited by another such alert.
    fn mutes(&self, labels: &BTreeMap<String, String>) -> Option<u64> {
        let get = |l: &'a BTreeMap<String, String>, n: &str| l.get(n).map_or("", String::as_str);
        for (r, sources) in self.rules.iter().zip(&self.sources) {
            if !super::matcher::matches_all(&r.target, labels) {
                continue;
            }
            let two_sided = super::matcher::matches_all(&r.source, labels);
            for s in sources {
                if r.equal
                    .iter()
                    .any(|n| get(&s.labels, n) != labels.get(n).map_or("", String::as_str))
                {
                    continue;
                }
                if two_sided && super::matcher::matches_all(&r.target, &s.labels) {
                    continue;
                }
                return Some(s.fp);
            }
        }
        None
    }
}

impl Dispatcher {
    pub fn new(silences: Silences, metrics: ChannelMetrics) -> Self {
        Dispatcher {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                compiled: RwLock::new(Arc::new(empty_compiled())),
                silences,
                external_url: RwLock::new(String::new()),
                wake: Notify::new(),
                metrics,
            }),
        }
    }

    pub fn silences(&self) -> &Silences {
        &self.inner.silences
    }

    pub fn metrics(&self) -> &ChannelMetrics {
        &self.inner.metrics
    }

    /// Applies a (re)loaded config: channels restart, groups are rebuilt
    /// from the alerts held, the notification log stays, so nothing already
    /// sent is sent again.
    pub fn apply(&self, cfg: &NotifyConfig, external_url: &str, http: &reqwest::Client) {
        let compiled = Arc::new(cfg.compile(http, &self.inner.metrics));
        *self.inner.external_url.write() = external_url.to_string();
        *self.inner.compiled.write() = compiled.clone();
        let now = now_ms();
        let mut st = self.inner.state.lock();
        st.groups.clear();
        let alerts: Vec<Alert> = st.alerts.values().cloned().collect();
        for a in alerts {
            Self::route_into(&compiled, &mut st, &a, now);
        }
        drop(st);
        self.inner.wake.notify_one();
    }

    /// A receiver's channels, for `homeostat notify test`.
    pub fn receiver(&self, name: &str) -> Option<Vec<super::channel::Channel>> {
        self.inner.compiled.read().receivers.get(name).cloned()
    }

    pub fn resolve_timeout(&self) -> Duration {
        self.inner.compiled.read().resolve_timeout
    }

    /// Takes alerts from the rules stage.
    pub fn put_am(&self, alerts: &[AmAlert]) {
        let now = now_ms();
        let mut out = Vec::with_capacity(alerts.len());
        for a in alerts {
            let p = PostableAlert {
                labels: a.labels.clone(),
                annotations: a.annotations.clone(),
                starts_at: Some(a.starts_at.clone()),
                ends_at: Some(a.ends_at.clone()),
                generator_url: a.generator_url.clone(),
            };
            match p.into_alert(now, self.resolve_timeout()) {
                Ok(mut al) => {
                    al.value = a.value;
                    out.push(al);
                }
                Err(e) => tracing::warn!(error = %e, "alert not routed"),
            }
        }
        self.put(out, now);
    }

    /// Merges alerts in and routes them into groups.
    pub fn put(&self, alerts: Vec<Alert>, now: i64) {
        if alerts.is_empty() {
            return;
        }
        let compiled = self.inner.compiled.read().clone();
        let mut st = self.inner.state.lock();
        for a in alerts {
            let merged = match st.alerts.get(&a.fp) {
                // Alertmanager merges only overlapping lifetimes; a new
                // firing after a resolution is a new alert.
                Some(old)
                    if (a.ends_at > old.starts_at && a.ends_at < old.ends_at)
                        || (a.starts_at > old.starts_at && a.starts_at < old.ends_at) =>
                {
                    old.merge(&a)
                }
                _ => a,
            };
            st.alerts.insert(merged.fp, merged.clone());
            Self::route_into(&compiled, &mut st, &merged, now);
        }
        drop(st);
        self.inner.wake.notify_one();
    }

    fn route_into(compiled: &Compiled, st: &mut State, a: &Alert, now: i64) {
        let Some(root) = &compiled.route else { return };
        for r in root.match_labels(&a.labels) {
            let labels = r.group_labels(&a.labels);
            let key = format!("{}:{}", r.key, labelset_string(&labels));
            let route = GroupRoute::of(r);
            let g = st.groups.entry(key.clone()).or_insert_with(|| Group {
                key,
                labels,
                next_flush: now + route.group_wait,
                route,
                alerts: HashMap::new(),
                has_flushed: false,
                empty_since: None,
            });
            g.alerts.insert(a.fp, a.clone());
            g.empty_since = None;
            if !g.has_flushed && a.starts_at + g.route.group_wait <= now {
                g.next_flush = g.next_flush.min(now);
            }
        }
    }

    /// Runs flushes until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let mut maintained = 0;
        loop {
            let now = now_ms();
            let next = {
                let mut st = self.inner.state.lock();
                // Housekeeping once a second, not on every wake: with
                // thousands of groups the loop wakes often.
                if now - maintained >= 1000 {
                    maintained = now;
                    st.groups
                        .retain(|_, g| g.empty_since.is_none_or(|t| now - t < EMPTY_GROUP_TTL_MS));
                    st.alerts
                        .retain(|_, a| !a.resolved(now) || now - a.ends_at < RESOLVED_RETENTION_MS);
                }
                st.groups
                    .values()
                    .filter(|g| g.empty_since.is_none())
                    .map(|g| g.next_flush)
                    .min()
            };
            let wait = next.map_or(Duration::from_secs(30), |n| {
                Duration::from_millis((n - now).clamp(0, 30_000) as u64)
            });
            if !wait.is_zero() {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = self.inner.wake.notified() => continue,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            self.flush_due(now_ms());
        }
    }

    /// Flushes every group whose time has come.
    pub fn flush_due(&self, now: i64) {
        let compiled = self.inner.compiled.read().clone();
        let mut st = self.inner.state.lock();
        let State {
            alerts,
            groups,
            nflog,
            inflight,
        } = &mut *st;
        let due: Vec<String> = groups
            .values()
            .filter(|g| g.next_flush <= now && g.empty_since.is_none())
            .map(|g| g.key.clone())
            .collect();
        if due.is_empty() {
            return;
        }
        let inhibitor = Inhibitor::new(&compiled.inhibit, alerts, now);
        for key in due {
            if let Some(g) = groups.get_mut(&key) {
                self.flush(&compiled, &inhibitor, g, nflog, inflight, now);
            }
        }
    }

    fn flush(
        &self,
        compiled: &Compiled,
        inhibitor: &Inhibitor<'_>,
        g: &mut Group,
        nflog: &mut HashMap<LogKey, LogEntry>,
        inflight: &mut HashSet<LogKey>,
        now: i64,
    ) {
        g.next_flush = now + g.route.group_interval;
        g.has_flushed = true;
        let muted_by_time = compiled.time_muted(&g.route.active, &g.route.mute, now);
        let mut alerts: Vec<&Alert> = g.alerts.values().collect();
        alerts.sort_by_key(|a| (a.starts_at, a.fp));
        let shown: Vec<&Alert> = if muted_by_time {
            Vec::new()
        } else {
            alerts
                .into_iter()
                .filter(|a| inhibitor.mutes(&a.labels).is_none())
                .filter(|a| self.inner.silences.muted_by(&a.labels, now).is_empty())
                .collect()
        };
        // Resolved alerts leave the group once every channel has been told
        // (or had nothing to be told); until then they stay, so a send that
        // is still in flight or failed is not the end of them.
        let mut deferred = false;
        if !shown.is_empty() {
            let firing: BTreeSet<u64> = shown
                .iter()
                .filter(|a| !a.resolved(now))
                .map(|a| a.fp)
                .collect();
            let resolved: BTreeSet<u64> = shown
                .iter()
                .filter(|a| a.resolved(now))
                .map(|a| a.fp)
                .collect();
            let sent_resolved: Vec<(u64, i64)> = shown
                .iter()
                .filter(|a| a.resolved(now))
                .map(|a| (a.fp, a.updated_at))
                .collect();
            let channels = compiled
                .receivers
                .get(&g.route.receiver)
                .cloned()
                .unwrap_or_default();
            for (idx, ch) in channels.iter().enumerate() {
                let lk: LogKey = (g.key.clone(), g.route.receiver.clone(), idx);
                if inflight.contains(&lk) {
                    deferred = true;
                    continue;
                }
                let send_resolved = ch.notifier.send_resolved();
                if !needs_update(
                    nflog.get(&lk),
                    &firing,
                    &resolved,
                    send_resolved,
                    g.route.repeat_interval,
                    now,
                ) {
                    continue;
                }
                let to_send: Vec<NotifAlert> = shown
                    .iter()
                    .filter(|a| send_resolved || !a.resolved(now))
                    .map(|a| a.to_notif(now))
                    .collect();
                let entry = LogEntry {
                    firing: firing.clone(),
                    resolved: resolved.clone(),
                    at: now,
                };
                if to_send.is_empty() {
                    nflog.insert(lk, entry);
                    continue;
                }
                deferred = true;
                let n = Notification::new(
                    &g.route.receiver,
                    &g.key,
                    g.labels.clone(),
                    to_send,
                    &self.inner.external_url.read(),
                );
                let (tx, rx) = tokio::sync::oneshot::channel();
                inflight.insert(lk.clone());
                ch.enqueue(Job {
                    notification: n,
                    done: Some(tx),
                });
                let me = self.clone();
                let flushed = std::time::Instant::now();
                let sent_resolved = sent_resolved.clone();
                tokio::spawn(async move {
                    let ok = matches!(rx.await, Ok(Ok(())));
                    let mut st = me.inner.state.lock();
                    st.inflight.remove(&lk);
                    if !ok {
                        return;
                    }
                    // Stamped when the send finished, as Alertmanager's log
                    // is; counted from the flush's clock so an injected
                    // clock stays consistent.
                    let at = now + flushed.elapsed().as_millis() as i64;
                    if let Some(g) = st.groups.get_mut(&lk.0) {
                        for (fp, updated) in &sent_resolved {
                            if g.alerts.get(fp).is_some_and(|a| a.updated_at == *updated) {
                                g.alerts.remove(fp);
                            }
                        }
                        if g.alerts.is_empty() && g.empty_since.is_none() {
                            g.empty_since = Some(at);
                        }
                    }
                    st.nflog.insert(lk, LogEntry { at, ..entry });
                });
            }
        }
        if !deferred {
            g.alerts.retain(|_, a| !a.resolved(now));
            if g.alerts.is_empty() {
                g.empty_since = Some(now);
            }
        }
    }

    /// Routes a playbook event at once (no grouping) to the receivers its
    /// labels reach, unless silenced, inhibited or outside time intervals.
    pub fn playbook_event(
        &self,
        run: RunEvent,
        severity: &str,
        mut annotations: BTreeMap<String, String>,
    ) -> usize {
        let compiled = self.inner.compiled.read().clone();
        // A playbook's own `notify` step always goes out.
        if run.event != "notify" && !compiled.playbook_events.contains(&run.event) {
            return 0;
        }
        let Some(root) = &compiled.route else {
            return 0;
        };
        let now = now_ms();
        let labels: BTreeMap<String, String> = [
            ("alertname", "HomeostatPlaybookRun"),
            ("playbook", run.playbook.as_str()),
            ("target", run.target.as_str()),
            ("event", run.event.as_str()),
            ("severity", severity),
            ("run_id", run.run_id.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        if !self.inner.silences.muted_by(&labels, now).is_empty() {
            return 0;
        }
        {
            let st = self.inner.state.lock();
            if Inhibitor::new(&compiled.inhibit, &st.alerts, now)
                .mutes(&labels)
                .is_some()
            {
                return 0;
            }
        }
        annotations
            .entry("summary".into())
            .or_insert_with(|| run.summary.clone());
        let alert = NotifAlert {
            status: if run.event == "succeeded" {
                "resolved"
            } else {
                "firing"
            },
            labels: labels.clone(),
            annotations,
            starts_at_ms: now,
            ends_at_ms: (run.event == "succeeded").then_some(now),
            generator_url: format!(
                "{}/api/v1/playbooks/runs/{}",
                self.inner.external_url.read().trim_end_matches('/'),
                run.run_id
            ),
            fingerprint: fingerprint(&labels),
            value: None,
        };
        let mut sent = 0;
        for r in root.match_labels(&labels) {
            if compiled.time_muted(&r.active_time_intervals, &r.mute_time_intervals, now) {
                continue;
            }
            let gl = r.group_labels(&labels);
            let key = format!("{}:{}", r.key, labelset_string(&gl));
            for ch in compiled.receivers.get(&r.receiver).into_iter().flatten() {
                if alert.status == "resolved"
                    && !ch.notifier.send_resolved()
                    && ch.notifier.kind() != "pagerduty"
                {
                    continue;
                }
                let mut n = Notification::new(
                    &r.receiver,
                    &key,
                    gl.clone(),
                    vec![alert.clone()],
                    &self.inner.external_url.read(),
                );
                n.run = Some(run.clone());
                ch.enqueue(Job {
                    notification: n,
                    done: None,
                });
                sent += 1;
            }
        }
        sent
    }

    /// Alertmanager's `gettableAlert` list.
    pub fn alerts_json(&self, now: i64) -> Vec<serde_json::Value> {
        let compiled = self.inner.compiled.read().clone();
        let st = self.inner.state.lock();
        let inhibitor = Inhibitor::new(&compiled.inhibit, &st.alerts, now);
        let mut out: Vec<(i64, u64, serde_json::Value)> = st
            .alerts
            .values()
            .filter(|a| !a.resolved(now))
            .map(|a| {
                let silenced = self.inner.silences.muted_by(&a.labels, now);
                let inhibited_by: Vec<String> = inhibitor
                    .mutes(&a.labels)
                    .map(|f| format!("{f:016x}"))
                    .into_iter()
                    .collect();
                let receivers: BTreeSet<String> = compiled
                    .route
                    .as_ref()
                    .map(|r| r.match_labels(&a.labels).into_iter().map(|r| r.receiver.clone()).collect())
                    .unwrap_or_default();
                let state = if silenced.is_empty() && inhibited_by.is_empty() { "active" } else { "suppressed" };
                let v = serde_json::json!({
                    "labels": a.labels,
                    "annotations": a.annotations,
                    "startsAt": super::alertmanager::rfc3339_ms(a.starts_at),
                    "endsAt": super::alertmanager::rfc3339_ms(a.ends_at),
                    "updatedAt": super::alertmanager::rfc3339_ms(a.updated_at),
                    "generatorURL": a.generator_url,
                    "fingerprint": format!("{:016x}", a.fp),
                    "receivers": receivers.iter().map(|r| serde_json::json!({"name": r})).collect::<Vec<_>>(),
                    "status": {"state": state, "silencedBy": silenced, "inhibitedBy": inhibited_by},
                });
                (a.starts_at, a.fp, v)
            })
            .collect();
        out.sort_by_key(|(s, f, _)| (*s, *f));
        out.into_iter().map(|(_, _, v)| v).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::channel::{Notifier, SendError};

    fn set(v: &[u64]) -> BTreeSet<u64> {
        v.iter().copied().collect()
    }

    #[test]
    fn dedup_follows_alertmanager() {
        let e = LogEntry {
            firing: set(&[1, 2]),
            resolved: set(&[]),
            at: 1000,
        };
        let after =
            |firing: &[u64], resolved: &[u64], send_resolved: bool, repeat: i64, now: i64| {
                needs_update(
                    Some(&e),
                    &set(firing),
                    &set(resolved),
                    send_resolved,
                    repeat,
                    now,
                )
            };
        // First notification only with something firing.
        assert!(needs_update(None, &set(&[1]), &set(&[]), true, 100, 0));
        assert!(!needs_update(None, &set(&[]), &set(&[1]), true, 100, 0));
        // A new firing alert.
        assert!(after(&[1, 3], &[], true, 10_000, 1001));
        // Fewer firing, nothing newly resolved shown: wait for repeat.
        assert!(!after(&[1], &[], true, 10_000, 1001));
        // Newly resolved, sent only with send_resolved.
        assert!(after(&[1], &[2], true, 10_000, 1001));
        assert!(!after(&[1], &[2], false, 10_000, 1001));
        // All resolved: always, to clear the log.
        assert!(after(&[], &[1, 2], false, 10_000, 1001));
        // Repeat.
        assert!(after(&[1, 2], &[], true, 500, 1501));
        assert!(!after(&[1, 2], &[], true, 500, 1500));
    }

    #[test]
    fn fingerprint_is_prometheus_model_fingerprint() {
        // model.LabelSet{"__name__": "up", "job": "x"}.Fingerprint() — FNV-1a
        // over the sorted pairs with 0xff separators; empty set is the
        // offset basis.
        assert_eq!(fingerprint(&BTreeMap::new()), 0xcbf29ce484222325);
        let a: BTreeMap<String, String> = [("a".to_string(), "b".to_string())].into();
        let b: BTreeMap<String, String> = [("a".to_string(), "c".to_string())].into();
        assert_ne!(fingerprint(&a), fingerprint(&b));
    }

    struct Rec(Arc<Mutex<Vec<Notification>>>);

    #[async_trait::async_trait]
    impl Notifier for Rec {
        fn kind(&self) -> &'static str {
            "webhook"
        }
        fn send_resolved(&self) -> bool {
            true
        }
        async fn notify(&self, n: &Notification) -> Result<(), SendError> {
            self.0.lock().push(n.clone());
            Ok(())
        }
    }

    fn alert(labels: &[(&str, &str)], starts: i64, ends: i64, now: i64) -> Alert {
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        Alert {
            fp: fingerprint(&labels),
            labels,
            annotations: BTreeMap::new(),
            starts_at: starts,
            ends_at: ends,
            timeout: false,
            generator_url: String::new(),
            updated_at: now,
            value: None,
        }
    }

    /// A dispatcher with one webhook-like receiver recording in memory,
    /// driven by an injected clock.
    fn rig(yaml: &str) -> (Dispatcher, Arc<Mutex<Vec<Notification>>>) {
        let cfg: NotifyConfig = serde_norway::from_str(yaml).unwrap();
        let d = Dispatcher::new(Silences::new(None), ChannelMetrics::default());
        let mut v = crate::config::Validator::new();
        let (route, inhibit, intervals) = cfg.compile_rules(&mut v);
        assert!(v.issues.is_empty(), "{:?}", v.issues);
        let rec = Arc::new(Mutex::new(Vec::new()));
        let ch = super::super::channel::Channel::start(
            Arc::new(Rec(rec.clone())),
            10,
            Default::default(),
            Duration::from_secs(1),
            ChannelMetrics::default(),
        );
        *d.inner.compiled.write() = Arc::new(Compiled {
            route,
            receivers: [("r".to_string(), vec![ch])].into(),
            inhibit,
            intervals,
            resolve_timeout: Duration::from_secs(300),
            playbook_events: vec![],
        });
        (d, rec)
    }

    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    #[tokio::test]
    async fn groups_waits_repeats_inhibits() {
        let (d, rec) = rig(r#"
route: {receiver: r, group_by: [alertname], group_wait: 10s, group_interval: 20s, repeat_interval: 60s}
receivers: [{name: r}]
inhibit_rules: [{source_matchers: ['alertname="Down"'], target_matchers: ['severity="warning"'], equal: [cluster]}]
"#);
        let t0 = 1_000_000;
        d.put(
            vec![
                alert(&[("alertname", "A"), ("i", "1")], t0, t0 + 3_600_000, t0),
                alert(&[("alertname", "A"), ("i", "2")], t0, t0 + 3_600_000, t0),
                alert(
                    &[
                        ("alertname", "W"),
                        ("severity", "warning"),
                        ("cluster", "a"),
                    ],
                    t0,
                    t0 + 3_600_000,
                    t0,
                ),
                alert(
                    &[
                        ("alertname", "W"),
                        ("severity", "warning"),
                        ("cluster", "b"),
                    ],
                    t0,
                    t0 + 3_600_000,
                    t0,
                ),
                alert(
                    &[("alertname", "Down"), ("cluster", "a")],
                    t0,
                    t0 + 3_600_000,
                    t0,
                ),
            ],
            t0,
        );
        d.flush_due(t0 + 9_999);
        settle().await;
        assert!(rec.lock().is_empty(), "group_wait not honoured");
        d.flush_due(t0 + 10_000);
        settle().await;
        {
            let got = rec.lock();
            let mut keys: Vec<(String, usize)> = got
                .iter()
                .map(|n| (n.group_key.clone(), n.alerts.len()))
                .collect();
            keys.sort();
            assert_eq!(
                keys,
                [
                    ("{}:{alertname=\"A\"}".to_string(), 2),
                    ("{}:{alertname=\"Down\"}".to_string(), 1),
                    // cluster a's warning is inhibited.
                    ("{}:{alertname=\"W\"}".to_string(), 1),
                ]
            );
        }
        rec.lock().clear();
        // Nothing changed: no notification until repeat_interval.
        d.flush_due(t0 + 30_000);
        d.flush_due(t0 + 50_000);
        settle().await;
        assert!(rec.lock().is_empty());
        d.flush_due(t0 + 70_001);
        settle().await;
        assert_eq!(rec.lock().len(), 3, "repeat after repeat_interval");
        rec.lock().clear();
        // One resolves: a notification with it resolved, at the next interval.
        let now = t0 + 80_000;
        d.put(
            vec![alert(&[("alertname", "A"), ("i", "1")], t0, now, now)],
            now,
        );
        d.flush_due(now);
        settle().await;
        assert!(rec.lock().is_empty(), "waits for group_interval");
        d.flush_due(t0 + 90_001);
        settle().await;
        let got = rec.lock().clone();
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0]
                .alerts
                .iter()
                .filter(|a| a.status == "resolved")
                .count(),
            1
        );
    }

    #[tokio::test]
    async fn time_intervals_mute_and_activate_routes() {
        // 2026-11-23 10:00 UTC is a Monday morning.
        let t0 = parse_time("2026-11-23T10:00:00Z").unwrap();
        let (d, rec) = rig(r#"
route:
  receiver: r
  group_by: [alertname]
  group_wait: 0s
  group_interval: 1m
  routes:
    - matchers: ['team="night"']
      active_time_intervals: [nights]
    - matchers: ['team="office"']
      mute_time_intervals: [office-hours]
    - matchers: ['team="weekend"']
      mute_time_intervals: [weekends]
receivers: [{name: r}]
time_intervals:
  - name: nights
    time_intervals: [{times: [{start_time: '22:00', end_time: '24:00'}]}]
  - name: office-hours
    time_intervals: [{weekdays: ['monday:friday'], times: [{start_time: '09:00', end_time: '17:00'}]}]
  - name: weekends
    time_intervals: [{weekdays: [saturday, sunday]}]
"#);
        d.put(
            vec![
                alert(
                    &[("alertname", "N"), ("team", "night")],
                    t0,
                    t0 + 3_600_000,
                    t0,
                ),
                alert(
                    &[("alertname", "O"), ("team", "office")],
                    t0,
                    t0 + 3_600_000,
                    t0,
                ),
                alert(
                    &[("alertname", "W"), ("team", "weekend")],
                    t0,
                    t0 + 3_600_000,
                    t0,
                ),
            ],
            t0,
        );
        d.flush_due(t0);
        settle().await;
        let names: Vec<String> = rec
            .lock()
            .iter()
            .map(|n| n.group_labels["alertname"].clone())
            .collect();
        // Outside the nights, inside office hours, not a weekend.
        assert_eq!(names, ["W"]);
    }
}
