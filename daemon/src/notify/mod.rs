//! The notify stage: getting alerts to people and to the systems that page
//! them.
//!
//! Two paths: delivery to existing Alertmanagers (API v2, `alertmanager`),
//! and homeostat's own Alertmanager-compatible routing (`dispatch`): the
//! routing tree (`route`), silences (`silence`), inhibition, time intervals
//! and channels (`channel`: Slack, PagerDuty, email, webhook). The stage
//! takes finished alerts from the rules stage, alerts posted to
//! `/api/v2/alerts`, and playbook events; it never evaluates anything
//! itself, and never acts on the platform.

pub mod alertmanager;
pub mod channel;
pub mod dispatch;
pub mod matcher;
pub mod route;
pub mod silence;
pub mod timeinterval;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::config::{PromDuration, Secret, Validator};
use channel::email::{Email, EmailConfig, SmtpDefaults};
use channel::pagerduty::{Pagerduty, PagerdutyConfig};
use channel::slack::{Slack, SlackConfig};
use channel::webhook::{Webhook, WebhookConfig};
use channel::{Channel, ChannelMetrics, Notifier, RetryConfig};
use matcher::Matcher;
use route::{Route, RouteConfig};
use timeinterval::{Interval, TimeIntervalConfig};

pub use alertmanager::{AlertingConfig, AlertmanagerSender, AmAlert};
pub use dispatch::Dispatcher;

/// The playbook events there are; `notify.playbook_events` picks.
pub const PLAYBOOK_EVENTS: [&str; 5] = [
    "started",
    "awaiting_approval",
    "succeeded",
    "failed",
    "escalated",
];

/// The `notify:` section: `alertmanager.yml`'s `route`, `receivers`,
/// `inhibit_rules`, `time_intervals` and `global`, plus delivery settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct NotifyConfig {
    pub global: NotifyGlobal,
    /// Absent: nothing is routed (alerts still reach `alerting:`'s
    /// Alertmanagers).
    pub route: Option<RouteConfig>,
    pub receivers: Vec<ReceiverConfig>,
    pub inhibit_rules: Vec<InhibitRuleConfig>,
    pub time_intervals: Vec<TimeIntervalConfig>,
    /// Alertmanager's older name for `time_intervals`; both are read.
    pub mute_time_intervals: Vec<TimeIntervalConfig>,
    /// Notifications waiting per channel; beyond it they are dropped and
    /// counted (`result="dropped"`).
    pub queue_capacity: usize,
    pub retry: RetryConfig,
    /// Per attempt.
    pub timeout: PromDuration,
    /// Playbook events routed as notifications (label
    /// `alertname="HomeostatPlaybookRun"`, plus `playbook`, `target`,
    /// `event`, `severity`, `run_id`).
    pub playbook_events: Vec<String>,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            global: NotifyGlobal::default(),
            route: None,
            receivers: Vec::new(),
            inhibit_rules: Vec::new(),
            time_intervals: Vec::new(),
            mute_time_intervals: Vec::new(),
            queue_capacity: 1000,
            retry: RetryConfig::default(),
            timeout: PromDuration::from_secs(10),
            playbook_events: PLAYBOOK_EVENTS.iter().map(ToString::to_string).collect(),
        }
    }
}

/// Alertmanager's `global:` keys that matter here.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifyGlobal {
    /// An alert posted without `endsAt` resolves this long after its last
    /// update (default 5m).
    pub resolve_timeout: PromDuration,
    pub smtp_from: Option<String>,
    pub smtp_smarthost: Option<String>,
    pub smtp_hello: Option<String>,
    pub smtp_auth_username: Option<String>,
    pub smtp_auth_password: Option<Secret>,
    pub smtp_require_tls: bool,
    pub slack_api_url: Option<Secret>,
    pub pagerduty_url: Option<String>,
}

impl Default for NotifyGlobal {
    fn default() -> Self {
        NotifyGlobal {
            resolve_timeout: PromDuration::from_secs(300),
            smtp_from: None,
            smtp_smarthost: None,
            smtp_hello: None,
            smtp_auth_username: None,
            smtp_auth_password: None,
            smtp_require_tls: true,
            slack_api_url: None,
            pagerduty_url: None,
        }
    }
}

impl NotifyGlobal {
    fn smtp(&self) -> SmtpDefaults {
        SmtpDefaults {
            from: self.smtp_from.clone(),
            smarthost: self.smtp_smarthost.clone(),
            hello: self.smtp_hello.clone(),
            auth_username: self.smtp_auth_username.clone(),
            auth_password: self.smtp_auth_password.clone(),
            require_tls: self.smtp_require_tls,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverConfig {
    pub name: String,
    #[serde(default)]
    pub slack_configs: Vec<SlackConfig>,
    #[serde(default)]
    pub pagerduty_configs: Vec<PagerdutyConfig>,
    #[serde(default)]
    pub email_configs: Vec<EmailConfig>,
    #[serde(default)]
    pub webhook_configs: Vec<WebhookConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InhibitRuleConfig {
    pub source_matchers: Vec<String>,
    pub target_matchers: Vec<String>,
    /// Deprecated forms, still read.
    pub source_match: BTreeMap<String, String>,
    pub source_match_re: BTreeMap<String, String>,
    pub target_match: BTreeMap<String, String>,
    pub target_match_re: BTreeMap<String, String>,
    pub equal: Vec<String>,
}

/// An inhibition rule, compiled.
#[derive(Debug, Clone)]
pub struct InhibitRule {
    pub source: Vec<Matcher>,
    pub target: Vec<Matcher>,
    pub equal: Vec<String>,
}

/// Everything the dispatcher runs on, built from one config.
pub struct Compiled {
    pub route: Option<Route>,
    /// Receiver name → its channels (with running workers).
    pub receivers: BTreeMap<String, Vec<Channel>>,
    pub inhibit: Vec<InhibitRule>,
    pub intervals: BTreeMap<String, Vec<Interval>>,
    pub resolve_timeout: Duration,
    pub playbook_events: Vec<String>,
}

impl Compiled {
    /// Whether a route's time intervals keep it quiet now: outside all of
    /// its `active_time_intervals` (when it has any), or inside one of its
    /// `mute_time_intervals`.
    pub fn time_muted(&self, active: &[String], mute: &[String], now: i64) -> bool {
        let inside = |names: &[String]| {
            names.iter().any(|n| {
                self.intervals
                    .get(n)
                    .is_some_and(|set| timeinterval::any_contains(set, now))
            })
        };
        (!active.is_empty() && !inside(active)) || inside(mute)
    }
}

fn matchers_of(
    list: &[String],
    eq: &BTreeMap<String, String>,
    re: &BTreeMap<String, String>,
    path: &str,
    field: &str,
    v: &mut Validator,
) -> Vec<Matcher> {
    let mut out = Vec::new();
    for (k, val) in eq {
        out.extend(Matcher::new(k, matcher::MatchOp::Eq, val).ok());
    }
    for (k, val) in re {
        match Matcher::new(k, matcher::MatchOp::Re, val) {
            Ok(m) => out.push(m),
            Err(e) => v.error(format!("{path}.{field}_match_re.{k}"), e),
        }
    }
    for (i, s) in list.iter().enumerate() {
        match matcher::parse(s) {
            Ok(m) => out.extend(m),
            Err(e) => v.error(format!("{path}.{field}_matchers.{i}"), e),
        }
    }
    out
}

impl NotifyConfig {
    fn all_intervals(&self) -> impl Iterator<Item = &TimeIntervalConfig> {
        self.time_intervals.iter().chain(&self.mute_time_intervals)
    }

    /// Everything but the channels: routes, inhibition, intervals.
    fn compile_rules(
        &self,
        v: &mut Validator,
    ) -> (
        Option<Route>,
        Vec<InhibitRule>,
        BTreeMap<String, Vec<Interval>>,
    ) {
        let mut intervals = BTreeMap::new();
        for (field, list) in [
            ("time_intervals", &self.time_intervals),
            ("mute_time_intervals", &self.mute_time_intervals),
        ] {
            for (i, ti) in list.iter().enumerate() {
                if intervals.contains_key(&ti.name) {
                    v.error(
                        format!("notify.{field}.{i}.name"),
                        format!("time interval {:?} is defined twice", ti.name),
                    );
                }
                let mut parsed = Vec::new();
                for (j, c) in ti.time_intervals.iter().enumerate() {
                    match Interval::parse(c) {
                        Ok(p) => parsed.push(p),
                        Err(e) => v.error(format!("notify.{field}.{i}.time_intervals.{j}"), e),
                    }
                }
                intervals.insert(ti.name.clone(), parsed);
            }
        }
        let receivers: Vec<String> = self.receivers.iter().map(|r| r.name.clone()).collect();
        let names: Vec<String> = self.all_intervals().map(|t| t.name.clone()).collect();
        let route = self
            .route
            .as_ref()
            .map(|r| Route::compile(r, None, "notify.route", &receivers, &names, v));
        let inhibit = self
            .inhibit_rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let p = format!("notify.inhibit_rules.{i}");
                InhibitRule {
                    source: matchers_of(
                        &r.source_matchers,
                        &r.source_match,
                        &r.source_match_re,
                        &p,
                        "source",
                        v,
                    ),
                    target: matchers_of(
                        &r.target_matchers,
                        &r.target_match,
                        &r.target_match_re,
                        &p,
                        "target",
                        v,
                    ),
                    equal: r.equal.clone(),
                }
            })
            .collect();
        (route, inhibit, intervals)
    }

    pub fn validate(&self, path: &str, v: &mut Validator) {
        let _ = self.compile_rules(v);
        let mut seen = std::collections::BTreeSet::new();
        let smtp = self.global.smtp();
        for (i, r) in self.receivers.iter().enumerate() {
            let p = format!("{path}.receivers.{i}");
            if r.name.is_empty() {
                v.error(format!("{p}.name"), "is required");
            }
            if !seen.insert(&r.name) {
                v.error(
                    format!("{p}.name"),
                    format!("receiver {:?} is defined twice", r.name),
                );
            }
            for (j, c) in r.slack_configs.iter().enumerate() {
                c.validate(
                    &format!("{p}.slack_configs.{j}"),
                    self.global.slack_api_url.as_ref(),
                    v,
                );
            }
            for (j, c) in r.pagerduty_configs.iter().enumerate() {
                c.validate(&format!("{p}.pagerduty_configs.{j}"), v);
            }
            for (j, c) in r.email_configs.iter().enumerate() {
                c.validate(&format!("{p}.email_configs.{j}"), &smtp, v);
            }
            for (j, c) in r.webhook_configs.iter().enumerate() {
                c.validate(&format!("{p}.webhook_configs.{j}"), v);
            }
        }
        if let Some(u) = &self.global.pagerduty_url {
            channel::webhook::check_url(u, &format!("{path}.global.pagerduty_url"), v);
        }
        if self.route.is_none() && !self.receivers.is_empty() {
            v.error(
                format!("{path}.route"),
                "receivers are defined but no route sends anything to them",
            );
        }
        if self.queue_capacity == 0 {
            v.error(format!("{path}.queue_capacity"), "must be greater than 0");
        }
        if self.timeout.0.is_zero() {
            v.error(format!("{path}.timeout"), "must be greater than 0");
        }
        if self.retry.max_attempts == 0 {
            v.error(format!("{path}.retry.max_attempts"), "must be at least 1");
        }
        for (i, e) in self.playbook_events.iter().enumerate() {
            if !PLAYBOOK_EVENTS.contains(&e.as_str()) {
                v.error(
                    format!("{path}.playbook_events.{i}"),
                    format!("{e:?} is not one of {}", PLAYBOOK_EVENTS.join(", ")),
                );
            }
        }
    }

    /// The notifiers of one receiver, without workers.
    pub fn notifiers(&self, r: &ReceiverConfig, http: &reqwest::Client) -> Vec<Arc<dyn Notifier>> {
        let mut out: Vec<Arc<dyn Notifier>> = Vec::new();
        for c in &r.slack_configs {
            let url = c
                .api_url
                .clone()
                .or_else(|| self.global.slack_api_url.clone())
                .unwrap_or_else(|| Secret::new(channel::slack::POST_MESSAGE_URL));
            out.push(Arc::new(Slack {
                cfg: c.clone(),
                url,
                http: http.clone(),
            }));
        }
        for c in &r.pagerduty_configs {
            let url = c
                .url
                .clone()
                .or_else(|| self.global.pagerduty_url.clone())
                .unwrap_or_else(|| channel::pagerduty::EVENTS_URL.to_string());
            out.push(Arc::new(Pagerduty {
                cfg: c.clone(),
                url,
                http: http.clone(),
            }));
        }
        for c in &r.email_configs {
            out.push(Arc::new(Email {
                cfg: c.clone(),
                defaults: self.global.smtp(),
                timeout: self.timeout.0,
            }));
        }
        for c in &r.webhook_configs {
            out.push(Arc::new(Webhook {
                cfg: c.clone(),
                http: http.clone(),
            }));
        }
        out
    }

    /// Builds the runtime form and starts a worker per channel. Only called
    /// on a config that validated.
    pub fn compile(&self, http: &reqwest::Client, metrics: &ChannelMetrics) -> Compiled {
        let mut v = Validator::new();
        let (route, inhibit, intervals) = self.compile_rules(&mut v);
        let receivers = self
            .receivers
            .iter()
            .map(|r| {
                let chans = self
                    .notifiers(r, http)
                    .into_iter()
                    .map(|n| {
                        Channel::start(
                            n,
                            self.queue_capacity,
                            self.retry.clone(),
                            self.timeout.0,
                            metrics.clone(),
                        )
                    })
                    .collect();
                (r.name.clone(), chans)
            })
            .collect();
        Compiled {
            route,
            receivers,
            inhibit,
            intervals,
            resolve_timeout: self.global.resolve_timeout.0,
            playbook_events: self.playbook_events.clone(),
        }
    }
}
