//! `homeostat test rules`: promtool 2.42's rule unit-test format and
//! semantics (`cmd/promtool/unittest.go`).
//!
//! Owns reading a test file (`rule_files`, `evaluation_interval`,
//! `group_eval_order`, `tests` with `input_series` in expanding notation,
//! `alert_rule_test`, `promql_expr_test`, `external_labels`,
//! `external_url`), running each test group against a fresh in-memory store
//! with the daemon's own [`Group::eval`], and producing promtool's messages.
//! It returns text; the CLI decides where it goes and the exit code.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::file::{self, Text};
use super::group::{AlertState, EvalEnv, Group};
use crate::config::units::format_duration;
use crate::config::PromDuration;
use crate::query::promqltest::parse_series_line;
use crate::query::{go_labels, Engine, EngineOptions, QueryValue};
use crate::store::{Labels, Store};

#[derive(Deserialize, Default)]
#[serde(default)]
struct TestFile {
    rule_files: Vec<String>,
    evaluation_interval: Option<PromDuration>,
    group_eval_order: Vec<String>,
    tests: Vec<TestGroup>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TestGroup {
    interval: Option<PromDuration>,
    input_series: Vec<InputSeries>,
    alert_rule_test: Vec<AlertTest>,
    promql_expr_test: Vec<ExprTest>,
    external_labels: BTreeMap<String, String>,
    external_url: String,
    name: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct InputSeries {
    series: Text,
    values: Text,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AlertTest {
    eval_time: PromDuration,
    alertname: String,
    exp_alerts: Vec<ExpAlert>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ExpAlert {
    exp_labels: BTreeMap<String, Text>,
    exp_annotations: BTreeMap<String, Text>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ExprTest {
    expr: String,
    eval_time: PromDuration,
    exp_samples: Vec<ExpSample>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ExpSample {
    labels: String,
    value: f64,
}

/// The outcome of one test file: promtool's error texts, empty on success.
#[derive(Debug, Default)]
pub struct TestReport {
    pub errors: Vec<String>,
}

impl TestReport {
    pub fn passed(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Runs one test file as `promtool test rules` does.
pub fn run_file(path: &Path) -> TestReport {
    let name = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            return TestReport {
                errors: vec![format!("{name}: cannot read: {e}")],
            }
        }
    };
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    run_text(&name, &text, &base)
}

/// Runs test-file text; rule files resolve against `base`.
pub fn run_text(name: &str, text: &str, base: &Path) -> TestReport {
    let index = crate::config::locate::LineIndex::build(text);
    let (parsed, issues) = crate::config::parse_tracked::<TestFile>(text, &index);
    let fail = |errors| TestReport { errors };
    if !issues.is_empty() {
        return fail(
            issues
                .iter()
                .map(|i| {
                    let pos = i.line.map(|l| format!("{l}: ")).unwrap_or_default();
                    let field = i
                        .path
                        .as_deref()
                        .map(|p| format!("{}: ", crate::config::locate::display_path(p)))
                        .unwrap_or_default();
                    format!("{name}: {pos}{field}{}", i.message)
                })
                .collect(),
        );
    }
    let Some(tf) = parsed else {
        return fail(vec![format!("{name}: not a test file")]);
    };
    let eval_interval = tf
        .evaluation_interval
        .map(|d| d.0)
        .filter(|d| !d.is_zero())
        .unwrap_or(Duration::from_secs(60));
    // promtool joins relative names onto the test file's directory.
    let mut files = Vec::new();
    for f in &tf.rule_files {
        let joined = if Path::new(f).is_absolute() || base.as_os_str().is_empty() {
            PathBuf::from(f)
        } else {
            base.join(f)
        };
        match file::expand_globs(&[joined.to_string_lossy().into_owned()], Path::new("")) {
            Ok(found) => files.extend(found),
            Err(e) => return fail(vec![e]),
        }
    }
    let mut errors = Vec::new();
    for tg in &tf.tests {
        errors.extend(run_group(tg, &files, eval_interval, &tf.group_eval_order));
    }
    TestReport { errors }
}

fn run_group(
    tg: &TestGroup,
    files: &[PathBuf],
    eval_interval: Duration,
    order: &[String],
) -> Vec<String> {
    let interval = tg.interval.map(|d| d.0).unwrap_or(eval_interval);
    let specs = match file::load_files(files) {
        Ok(s) => s,
        Err(errs) => return errs.iter().map(ToString::to_string).collect(),
    };
    let mut groups: Vec<Group> = specs.into_iter().map(|s| Group::new(s, interval)).collect();
    let rank = |g: &Group| order.iter().position(|n| *n == g.name).unwrap_or(0);
    groups.sort_by_key(|g| rank(g));

    let store = Store::default();
    let step_ms = interval.as_millis() as i64;
    for s in &tg.input_series {
        let line = format!("{} {}", s.series.0, s.values.0);
        let (labels, vals) = match parse_series_line(&line) {
            Ok(x) => x,
            Err(e) => return vec![e],
        };
        let r = match store.get_or_create(&labels) {
            Ok(r) => r,
            Err(e) => return vec![format!("cannot load {}: {e}", s.series.0)],
        };
        for (i, v) in vals.into_iter().enumerate() {
            if let Some(v) = v {
                let _ = store.append(r, i as i64 * step_ms, v);
            }
        }
    }

    let engine = Engine::new(EngineOptions::default());
    let external: Vec<(String, String)> = tg
        .external_labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let env = EvalEnv {
        engine: &engine,
        store: &store,
        external_labels: &external,
        external_url: &tg.external_url,
        resend_delay_ms: 60_000,
    };

    let max_eval = tg
        .alert_rule_test
        .iter()
        .map(|t| t.eval_time.0)
        .chain(tg.promql_expr_test.iter().map(|t| t.eval_time.0))
        .max()
        .unwrap_or_default();
    let mut alert_times: Vec<Duration> = tg.alert_rule_test.iter().map(|t| t.eval_time.0).collect();
    alert_times.sort();
    alert_times.dedup();

    let name_line = if tg.name.is_empty() {
        String::new()
    } else {
        format!("    name: {},\n", tg.name)
    };
    let mut errs = Vec::new();
    let step = eval_interval.as_millis().max(1) as i64;
    let max_ms = max_eval.as_millis() as i64;
    let mut curr = 0;
    let mut ts = 0i64;
    while ts <= max_ms {
        let mut eval_errs = Vec::new();
        for g in &mut groups {
            g.eval(&env, ts);
            for r in &g.rules {
                if let Some(e) = &r.last_error {
                    eval_errs.push(format!(
                        "    rule: {}, time: {}, err: {e}",
                        r.spec.name(),
                        go_duration(ts)
                    ));
                }
            }
        }
        if !eval_errs.is_empty() {
            errs.extend(eval_errs);
            return errs;
        }
        while curr < alert_times.len() {
            let t = alert_times[curr].as_millis() as i64;
            if !(ts <= t && t < ts + step) {
                break;
            }
            for tc in tg
                .alert_rule_test
                .iter()
                .filter(|tc| tc.eval_time.0 == alert_times[curr])
            {
                let mut got: Vec<(Labels, Labels)> = Vec::new();
                for g in &groups {
                    for r in g.rules.iter().filter(|r| r.spec.name() == tc.alertname) {
                        if !r.is_alerting() {
                            continue;
                        }
                        for a in r.active.values() {
                            if a.state == AlertState::Firing {
                                got.push((
                                    a.labels.clone(),
                                    Labels::from_pairs(a.annotations.clone()),
                                ));
                            }
                        }
                    }
                }
                let mut exp: Vec<(Labels, Labels)> = tc
                    .exp_alerts
                    .iter()
                    .map(|a| {
                        let mut l: Vec<(String, String)> = a
                            .exp_labels
                            .iter()
                            .map(|(k, v)| (k.clone(), v.0.clone()))
                            .collect();
                        l.push(("alertname".into(), tc.alertname.clone()));
                        let an: Vec<(String, String)> = a
                            .exp_annotations
                            .iter()
                            .map(|(k, v)| (k.clone(), v.0.clone()))
                            .collect();
                        (Labels::from_pairs(l), Labels::from_pairs(an))
                    })
                    .collect();
                got.sort();
                exp.sort();
                if got != exp {
                    errs.push(format!(
                        "{name_line}    alertname: {}, time: {}, \n        exp:{}, \n        got:{}",
                        tc.alertname,
                        format_duration(tc.eval_time.0),
                        indent(&alerts_string(&exp), "            "),
                        indent(&alerts_string(&got), "            "),
                    ));
                }
            }
            curr += 1;
        }
        ts += step;
    }

    'cases: for tc in &tg.promql_expr_test {
        let at = tc.eval_time.as_millis();
        let time = format_duration(tc.eval_time.0);
        let got = match engine.instant_query(&store, &tc.expr, at) {
            Ok(o) => o.value,
            Err(e) => {
                errs.push(format!("    expr: {:?}, time: {time}, err: {e}", tc.expr));
                continue;
            }
        };
        let mut got: Vec<(Labels, f64)> = match got {
            QueryValue::Vector(v) => v.into_iter().map(|s| (s.labels, s.v)).collect(),
            QueryValue::Scalar { v, .. } => vec![(Labels::default(), v)],
            _ => {
                errs.push(format!(
                    "    expr: {:?}, time: {time}, err: query wasn't instant or range vector",
                    tc.expr
                ));
                continue;
            }
        };
        let mut exp = Vec::new();
        for s in &tc.exp_samples {
            let labels = if s.labels.trim().is_empty() {
                Labels::default()
            } else {
                match parse_series_line(&s.labels) {
                    Ok((l, _)) => l,
                    Err(e) => {
                        errs.push(format!(
                            "    expr: {:?}, time: {time}, err: labels {:?}: {e}",
                            tc.expr, s.labels
                        ));
                        continue 'cases;
                    }
                }
            };
            exp.push((labels, s.value));
        }
        let by_labels = |a: &(Labels, f64), b: &(Labels, f64)| a.0.cmp(&b.0);
        exp.sort_by(by_labels);
        got.sort_by(by_labels);
        // promtool compares with reflect.DeepEqual: exact values.
        let same = exp.len() == got.len()
            && exp
                .iter()
                .zip(&got)
                .all(|(e, g)| e.0 == g.0 && e.1.to_bits() == g.1.to_bits());
        if !same {
            errs.push(format!(
                "    expr: {:?}, time: {time},\n        exp: {}\n        got: {}",
                tc.expr,
                samples_string(&exp),
                samples_string(&got)
            ));
        }
    }
    errs
}

fn alerts_string(v: &[(Labels, Labels)]) -> String {
    if v.is_empty() {
        return "[]".into();
    }
    let mut s = String::from("[\n");
    for (i, (l, a)) in v.iter().enumerate() {
        if i > 0 {
            s.push_str(",\n");
        }
        s.push_str(&format!("{i}:"));
        s.push_str(&indent(
            &format!("\nLabels:{}\nAnnotations:{}", go_labels(l), go_labels(a)),
            "  ",
        ));
    }
    s.push_str("\n]");
    s
}

fn indent(s: &str, prefix: &str) -> String {
    s.split('\n')
        .collect::<Vec<_>>()
        .join(&format!("\n{prefix}"))
}

fn samples_string(v: &[(Labels, f64)]) -> String {
    v.iter()
        .map(|(l, x)| format!("{} {}", go_labels(l), go_float_e(*x)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Go's `strconv.FormatFloat(v, 'E', -1, 64)`: `1E+00`, `6.1E+01`.
pub fn go_float_e(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let s = format!("{v:E}");
    let (mant, exp) = s.split_once('E').unwrap_or((&s, "0"));
    let e: i32 = exp.parse().unwrap_or(0);
    format!("{mant}E{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
}

/// Go's `time.Duration.String()` for whole milliseconds: `0s`, `1m0s`,
/// `1h0m0s`, `2m59.999s`.
pub fn go_duration(ms: i64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let neg = ms < 0;
    let ms = ms.unsigned_abs();
    let (h, m) = (ms / 3_600_000, (ms / 60_000) % 60);
    let (s, frac) = ((ms / 1000) % 60, ms % 1000);
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if ms < 1000 {
        out.push_str(&format!("{ms}ms"));
        return out;
    }
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&s.to_string());
    if frac > 0 {
        let f = format!("{frac:03}");
        out.push('.');
        out.push_str(f.trim_end_matches('0'));
    }
    out.push('s');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_formats() {
        assert_eq!(go_float_e(1.0), "1E+00");
        assert_eq!(go_float_e(61.0), "6.1E+01");
        assert_eq!(go_float_e(0.5), "5E-01");
        assert_eq!(go_float_e(0.0), "0E+00");
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(60_000), "1m0s");
        assert_eq!(go_duration(3_600_000), "1h0m0s");
        assert_eq!(go_duration(179_999), "2m59.999s");
        assert_eq!(go_duration(86_400_000), "24h0m0s");
    }

    #[test]
    fn bundled_rules_pass_their_tests() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.to_string_lossy().ends_with(".test.yml") {
                let r = run_file(&p);
                assert!(r.passed(), "{}: {:#?}", p.display(), r.errors);
                n += 1;
            }
        }
        assert!(n > 0, "no bundled rule tests in {}", dir.display());
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn passing_and_failing_alert_tests() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "r.yml",
            "groups:\n  - name: g\n    rules:\n      - alert: Down\n        expr: up == 0\n        for: 2m\n        labels: {severity: page}\n        annotations:\n          summary: '{{ $labels.instance }} down, value {{ $value }}'\n",
        );
        let ok = write(
            dir.path(),
            "ok.yml",
            "rule_files: [r.yml]\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n      - series: 'up{instance=\"a\"}'\n        values: '1 0x5'\n    alert_rule_test:\n      - eval_time: 2m\n        alertname: Down\n        exp_alerts: []\n      - eval_time: 3m\n        alertname: Down\n        exp_alerts:\n          - exp_labels: {severity: page, instance: a}\n            exp_annotations: {summary: 'a down, value 0'}\n    promql_expr_test:\n      - expr: ALERTS\n        eval_time: 2m\n        exp_samples:\n          - labels: 'ALERTS{alertname=\"Down\",alertstate=\"pending\",instance=\"a\",severity=\"page\"}'\n            value: 1\n",
        );
        let r = run_file(&ok);
        assert!(r.passed(), "{:#?}", r.errors);

        let bad = write(
            dir.path(),
            "bad.yml",
            "rule_files: [r.yml]\ntests:\n  - interval: 1m\n    name: t1\n    input_series:\n      - series: 'up{instance=\"a\"}'\n        values: '0x5'\n    alert_rule_test:\n      - eval_time: 1m\n        alertname: Down\n        exp_alerts: [{exp_labels: {instance: a}}]\n",
        );
        let r = run_file(&bad);
        assert_eq!(r.errors.len(), 1, "{:#?}", r.errors);
        assert!(
            r.errors[0]
                .starts_with("    name: t1,\n    alertname: Down, time: 1m, \n        exp:["),
            "{}",
            r.errors[0]
        );
        assert!(r.errors[0].ends_with("got:[]"), "{}", r.errors[0]);
    }
}
