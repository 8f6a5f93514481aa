//! Runner for Prometheus's promqltest files (the `promql/testdata/*.test`
//! format of Prometheus 2.42), used by `homeostat promql-test` and the
//! conformance test.
//!
//! Owns parsing the format (`load <step>` with series in expanding notation,
//! `clear`, `eval instant at`, `eval_fail instant at`, `eval_ordered instant
//! at` with expected samples), loading a fresh [`Store`] per `clear`, running
//! each eval through the [`Engine`] and comparing like Prometheus's test
//! framework (relative tolerance 1e-6, order only for `eval_ordered`). Like
//! Prometheus it also re-runs every passing instant eval as a range query
//! around the same time and checks the step at that time agrees. Must not
//! print or exit: the CLI formats [`FileReport`]s.

use std::fmt;
use std::path::Path;

use super::{format_float, Engine, QueryValue};
use crate::config::units::parse_duration;
use crate::store::{stale_nan, Labels, Store};

/// The file could not be read or is not valid promqltest syntax.
#[derive(Debug, thiserror::Error)]
pub enum TestFileError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}:{line}: {message}")]
    Syntax {
        file: String,
        line: usize,
        message: String,
    },
}

/// One failing eval command.
#[derive(Clone, Debug, PartialEq)]
pub struct CaseFailure {
    pub file: String,
    pub line: usize,
    pub expr: String,
    pub message: String,
}

impl fmt::Display for CaseFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.file, self.line, self.expr, self.message
        )
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct FileReport {
    pub passed: usize,
    pub failures: Vec<CaseFailure>,
}

#[derive(Clone, Debug)]
enum Expected {
    Scalar(f64),
    Sample(Labels, f64),
}

#[derive(Clone, Debug)]
enum Cmd {
    Clear,
    Load {
        step_ms: i64,
        series: Vec<(Labels, Vec<Option<f64>>)>,
    },
    Eval {
        line: usize,
        at_ms: i64,
        expr: String,
        fail: bool,
        ordered: bool,
        expected: Vec<Expected>,
    },
}

/// Reads and runs one test file.
pub fn run_file(path: &Path, engine: &Engine) -> Result<FileReport, TestFileError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| TestFileError::Read {
        file: name.clone(),
        source,
    })?;
    run_text(&name, &text, engine)
}

/// Executes only the `load` and `clear` commands of a test file and returns
/// the store as the file leaves it: test data for other tools.
pub fn load_store(name: &str, text: &str) -> Result<Store, TestFileError> {
    let mut store = Store::default();
    for cmd in parse(name, text)? {
        match cmd {
            Cmd::Clear => store = Store::default(),
            Cmd::Load { step_ms, series } => load(name, &store, step_ms, series)?,
            Cmd::Eval { .. } => {}
        }
    }
    Ok(store)
}

fn load(
    name: &str,
    store: &Store,
    step_ms: i64,
    series: Vec<(Labels, Vec<Option<f64>>)>,
) -> Result<(), TestFileError> {
    for (labels, vals) in series {
        let r = store
            .get_or_create(&labels)
            .map_err(|e| TestFileError::Syntax {
                file: name.to_owned(),
                line: 0,
                message: format!("cannot create series {labels}: {e}"),
            })?;
        for (i, v) in vals.into_iter().enumerate() {
            if let Some(v) = v {
                // A series loaded again by a later `load` without `clear`
                // keeps its earlier samples; older ones are refused.
                let _ = store.append(r, i as i64 * step_ms, v);
            }
        }
    }
    Ok(())
}

/// Runs test file content; `name` is used in messages.
pub fn run_text(name: &str, text: &str, engine: &Engine) -> Result<FileReport, TestFileError> {
    let cmds = parse(name, text)?;
    let mut store = Store::default();
    let mut report = FileReport::default();
    for cmd in cmds {
        match cmd {
            Cmd::Clear => store = Store::default(),
            Cmd::Load { step_ms, series } => load(name, &store, step_ms, series)?,
            Cmd::Eval {
                line,
                at_ms,
                expr,
                fail,
                ordered,
                expected,
            } => {
                let outcome = run_eval(engine, &store, at_ms, &expr, fail, ordered, &expected);
                match outcome {
                    Ok(()) => report.passed += 1,
                    Err(message) => report.failures.push(CaseFailure {
                        file: name.to_owned(),
                        line,
                        expr,
                        message,
                    }),
                }
            }
        }
    }
    Ok(report)
}

fn run_eval(
    engine: &Engine,
    store: &Store,
    at_ms: i64,
    expr: &str,
    fail: bool,
    ordered: bool,
    expected: &[Expected],
) -> Result<(), String> {
    let res = engine.instant_query(store, expr, at_ms);
    let out = match (res, fail) {
        (Err(_), true) => return Ok(()),
        (Ok(_), true) => return Err("expected an error, got none".into()),
        (Err(e), false) => return Err(format!("error: {e}")),
        (Ok(o), false) => o,
    };
    compare(expected, &out.value, ordered)?;
    if ordered {
        return Ok(());
    }
    // Same result in range mode, at the middle step.
    let rng = engine
        .range_query(store, expr, at_ms - 60_000, at_ms + 60_000, 60_000)
        .map_err(|e| format!("range mode: error: {e}"))?;
    let QueryValue::Matrix(m) = rng.value else {
        return Err("range mode: result is not a matrix".into());
    };
    let samples: Vec<(Labels, f64)> = m
        .into_iter()
        .filter_map(|s| {
            s.samples
                .iter()
                .find(|p| p.0 == at_ms)
                .map(|p| (s.labels.clone(), p.1))
        })
        .collect();
    let as_value = if matches!(out.value, QueryValue::Scalar { .. }) {
        QueryValue::Scalar {
            t: at_ms,
            v: samples.first().map_or(f64::NAN, |s| s.1),
        }
    } else {
        QueryValue::Vector(
            samples
                .into_iter()
                .map(|(labels, v)| super::InstantSample {
                    labels,
                    t: at_ms,
                    v,
                })
                .collect(),
        )
    };
    compare(expected, &as_value, false).map_err(|e| format!("range mode: {e}"))
}

/// Prometheus's test tolerance, as the brief of this runner states it.
fn almost_equal(expected: f64, actual: f64) -> bool {
    (expected.is_nan() && actual.is_nan())
        || expected == actual
        || (expected - actual).abs() <= 1e-6 * expected.abs()
}

fn fmt_samples<'a>(it: impl Iterator<Item = (&'a Labels, f64)>) -> String {
    let v: Vec<String> = it
        .map(|(l, v)| format!("{l} {}", format_float(v)))
        .collect();
    if v.is_empty() {
        "no samples".into()
    } else if v.len() > 8 {
        format!("[{} ... ({} in all)]", v[..8].join(", "), v.len())
    } else {
        format!("[{}]", v.join(", "))
    }
}

fn compare(expected: &[Expected], got: &QueryValue, ordered: bool) -> Result<(), String> {
    let exp_samples: Vec<(&Labels, f64)> = expected
        .iter()
        .filter_map(|e| match e {
            Expected::Sample(l, v) => Some((l, *v)),
            Expected::Scalar(_) => None,
        })
        .collect();
    let exp_str = || match expected.first() {
        Some(Expected::Scalar(v)) => format!("scalar {}", format_float(*v)),
        _ => fmt_samples(exp_samples.iter().copied()),
    };
    match got {
        QueryValue::Scalar { v, .. } => match expected {
            [Expected::Scalar(e)] if almost_equal(*e, *v) => Ok(()),
            _ => Err(format!(
                "expected {}, got scalar {}",
                exp_str(),
                format_float(*v)
            )),
        },
        QueryValue::Vector(vec) => {
            let got_str = || fmt_samples(vec.iter().map(|s| (&s.labels, s.v)));
            if expected.iter().any(|e| matches!(e, Expected::Scalar(_))) {
                return Err(format!("expected {}, got {}", exp_str(), got_str()));
            }
            let mut seen = vec![false; exp_samples.len()];
            for (pos, s) in vec.iter().enumerate() {
                let Some(i) = exp_samples.iter().position(|(l, _)| **l == s.labels) else {
                    return Err(format!(
                        "expected {}, got {} (unexpected {})",
                        exp_str(),
                        got_str(),
                        s.labels
                    ));
                };
                if ordered && i != pos {
                    return Err(format!(
                        "expected {}, got {} ({} at position {} instead of {})",
                        exp_str(),
                        got_str(),
                        s.labels,
                        pos + 1,
                        i + 1
                    ));
                }
                if !almost_equal(exp_samples[i].1, s.v) {
                    return Err(format!("expected {}, got {}", exp_str(), got_str()));
                }
                seen[i] = true;
            }
            if seen.iter().any(|s| !s) {
                return Err(format!("expected {}, got {}", exp_str(), got_str()));
            }
            Ok(())
        }
        QueryValue::Matrix(_) => Err(format!(
            "expected {}, got a range vector (not allowed in instant evaluation)",
            exp_str()
        )),
        QueryValue::String { v, .. } => Err(format!("expected {}, got string {v:?}", exp_str())),
    }
}

// ------------------------------------------------------------- parsing

fn syntax(file: &str, line: usize, message: impl Into<String>) -> TestFileError {
    TestFileError::Syntax {
        file: file.to_owned(),
        line,
        message: message.into(),
    }
}

fn parse(file: &str, text: &str) -> Result<Vec<Cmd>, TestFileError> {
    let lines: Vec<&str> = text
        .lines()
        .map(|l| {
            let t = l.trim();
            if t.starts_with('#') {
                ""
            } else {
                t
            }
        })
        .collect();
    let mut cmds = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        let lineno = i + 1;
        i += 1;
        if l.is_empty() {
            continue;
        }
        let (word, rest) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
        let rest = rest.trim();
        match word {
            "clear" => cmds.push(Cmd::Clear),
            "load" => {
                let step = parse_duration(rest)
                    .map_err(|e| syntax(file, lineno, format!("invalid step {rest:?}: {e}")))?;
                let step_ms = i64::try_from(step.as_millis())
                    .map_err(|_| syntax(file, lineno, "step too large"))?;
                let mut series = Vec::new();
                while i < lines.len() && !lines[i].is_empty() {
                    let (labels, vals) =
                        parse_series_line(lines[i]).map_err(|e| syntax(file, i + 1, e))?;
                    // As Prometheus's framework: a later definition of the
                    // same series replaces the earlier one.
                    match series.iter_mut().find(|(l, _)| *l == labels) {
                        Some(slot) => slot.1 = vals,
                        None => series.push((labels, vals)),
                    }
                    i += 1;
                }
                cmds.push(Cmd::Load { step_ms, series });
            }
            "eval" | "eval_fail" | "eval_ordered" => {
                let rest = rest
                    .strip_prefix("instant")
                    .ok_or_else(|| {
                        syntax(file, lineno, "only `instant` evaluations are supported")
                    })?
                    .trim_start();
                let rest = rest
                    .strip_prefix("at")
                    .ok_or_else(|| syntax(file, lineno, "missing `at <time>`"))?
                    .trim_start();
                let (at, expr) = rest
                    .split_once(char::is_whitespace)
                    .ok_or_else(|| syntax(file, lineno, "missing expression"))?;
                let at_d = parse_duration(at)
                    .map_err(|e| syntax(file, lineno, format!("invalid time {at:?}: {e}")))?;
                let at_ms = i64::try_from(at_d.as_millis())
                    .map_err(|_| syntax(file, lineno, "time too large"))?;
                let mut expected = Vec::new();
                while i < lines.len() && !lines[i].is_empty() {
                    let d = lines[i];
                    if let Some(v) = parse_number(d) {
                        expected.push(Expected::Scalar(v));
                    } else {
                        let (labels, vals) =
                            parse_series_line(d).map_err(|e| syntax(file, i + 1, e))?;
                        if vals.len() != 1 {
                            return Err(syntax(
                                file,
                                i + 1,
                                "expecting exactly one value per sample in instant evaluation",
                            ));
                        }
                        expected.push(Expected::Sample(labels, vals[0].unwrap_or(f64::NAN)));
                    }
                    i += 1;
                }
                cmds.push(Cmd::Eval {
                    line: lineno,
                    at_ms,
                    expr: expr.trim().to_owned(),
                    fail: word == "eval_fail",
                    ordered: word == "eval_ordered",
                    expected,
                });
            }
            _ => return Err(syntax(file, lineno, format!("unknown command {word:?}"))),
        }
    }
    Ok(cmds)
}

/// A number as the test framework reads one: Go floats plus `0x` integers.
fn parse_number(s: &str) -> Option<f64> {
    let s = s.trim();
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        return i64::from_str_radix(h, 16).ok().map(|v| v as f64);
    }
    super::functions::parse_go_float(s)
}

/// `metric{a="b"} 1 2+3x4 _ stale` → labels and values (None = omitted).
pub(crate) fn parse_series_line(line: &str) -> Result<(Labels, Vec<Option<f64>>), String> {
    let (labels, rest) = parse_series_labels(line)?;
    let mut vals = Vec::new();
    for tok in rest.split_whitespace() {
        expand_value(tok, &mut vals)?;
    }
    Ok((labels, vals))
}

fn parse_series_labels(line: &str) -> Result<(Labels, &str), String> {
    let b = line.as_bytes();
    let mut i = 0;
    let mut pairs: Vec<(String, String)> = Vec::new();
    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
        i += 1;
    }
    if i > 0 {
        pairs.push(("__name__".into(), line[..i].to_owned()));
    }
    if i < b.len() && b[i] == b'{' {
        i += 1;
        loop {
            while i < b.len() && (b[i] == b' ' || b[i] == b'\t' || b[i] == b',') {
                i += 1;
            }
            if i >= b.len() {
                return Err(format!("unterminated label set in {line:?}"));
            }
            if b[i] == b'}' {
                i += 1;
                break;
            }
            let ns = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            let name = &line[ns..i];
            if name.is_empty() {
                return Err(format!("expected label name in {line:?}"));
            }
            while i < b.len() && b[i] == b' ' {
                i += 1;
            }
            if i >= b.len() || b[i] != b'=' {
                return Err(format!("expected '=' after {name} in {line:?}"));
            }
            i += 1;
            while i < b.len() && b[i] == b' ' {
                i += 1;
            }
            let (value, used) = parse_quoted(&line[i..])
                .ok_or_else(|| format!("bad label value for {name} in {line:?}"))?;
            i += used;
            pairs.push((name.to_owned(), value));
        }
    }
    if pairs.is_empty() && !line.starts_with('{') {
        return Err(format!("expected a series description, got {line:?}"));
    }
    Ok((Labels::from_pairs(pairs), &line[i..]))
}

/// Parses a quoted string at the start of `s`; returns it and the bytes used.
fn parse_quoted(s: &str) -> Option<(String, usize)> {
    let mut chars = s.char_indices();
    let (_, q) = chars.next()?;
    if q != '"' && q != '\'' && q != '`' {
        return None;
    }
    let mut out = String::new();
    while let Some((idx, c)) = chars.next() {
        if c == q {
            return Some((out, idx + c.len_utf8()));
        }
        if c == '\\' && q != '`' {
            let (_, e) = chars.next()?;
            let c = match e {
                'n' => '\n',
                't' => '\t',
                'r' => '\r',
                '\\' | '"' | '\'' => e,
                other => {
                    out.push('\\');
                    other
                }
            };
            out.push(c);
        } else {
            out.push(c);
        }
    }
    None
}

fn expand_value(tok: &str, out: &mut Vec<Option<f64>>) -> Result<(), String> {
    let bad = || format!("invalid series value {tok:?}");
    if tok == "_" {
        out.push(None);
        return Ok(());
    }
    if let Some(n) = tok.strip_prefix("_x") {
        let n: usize = n.parse().map_err(|_| bad())?;
        out.extend(std::iter::repeat_n(None, n));
        return Ok(());
    }
    let single = |s: &str| -> Option<f64> {
        if s == "stale" {
            Some(stale_nan())
        } else {
            parse_number(s)
        }
    };
    // In series values `0x10` is "0 repeated", not hexadecimal.
    let Some((head, times)) = tok
        .rsplit_once('x')
        .filter(|(h, t)| !h.is_empty() && !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
    else {
        out.push(Some(single(tok).ok_or_else(bad)?));
        return Ok(());
    };
    let n: usize = times.parse().map_err(|_| bad())?;
    // `a`, or `a+b` / `a-b`: the sign that is not the leading one and not
    // part of an exponent starts the increment.
    let hb = head.as_bytes();
    let split = (1..hb.len())
        .find(|&k| (hb[k] == b'+' || hb[k] == b'-') && !matches!(hb[k - 1], b'e' | b'E'));
    let (a, d) = match split {
        Some(k) => (
            single(&head[..k]).ok_or_else(bad)?,
            parse_number(&head[k..]).ok_or_else(bad)?,
        ),
        None => (single(head).ok_or_else(bad)?, 0.0),
    };
    let mut v = a;
    for _ in 0..=n {
        out.push(Some(v));
        v += d;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expanding_notation() {
        let (l, v) = parse_series_line(r#"m{a="x", b='y'} 1+2x2 _x2 stale 5-1x1 _ 3x1"#).unwrap();
        assert_eq!(
            l,
            Labels::from_pairs([("__name__", "m"), ("a", "x"), ("b", "y")])
        );
        let plain: Vec<Option<f64>> = v.iter().map(|x| x.filter(|f| !f.is_nan())).collect();
        assert_eq!(
            plain,
            vec![
                Some(1.0),
                Some(3.0),
                Some(5.0),
                None,
                None,
                None,
                Some(5.0),
                Some(4.0),
                None,
                Some(3.0),
                Some(3.0)
            ]
        );
        assert!(crate::store::is_stale_nan(v[5].unwrap()));
    }

    #[test]
    fn runs_a_small_file() {
        let text = "load 5m\n  m{a=\"1\"} 0+10x10\n  m{a=\"2\"} 0+20x10\n\n\
                    eval instant at 50m sum(m)\n  {} 300\n\n\
                    eval instant at 50m m\n  m{a=\"1\"} 100\n  m{a=\"2\"} 200\n\n\
                    eval_ordered instant at 50m sort_desc(m)\n  m{a=\"2\"} 200\n  m{a=\"1\"} 100\n\n\
                    eval instant at 50m 1 + 1\n  2\n\n\
                    eval_fail instant at 50m label_replace(m, \"a\", \"\", \"\", \"\")\n\n\
                    eval instant at 50m m\n  m{a=\"1\"} 1\n";
        let r = run_text("t", text, &Engine::default()).unwrap();
        assert_eq!(r.passed, 5, "{:?}", r.failures);
        assert_eq!(r.failures.len(), 1);
        assert_eq!(r.failures[0].line, 21);
    }
}
