//! `homeostat check rules` and `homeostat test rules` side by side with the
//! real `promtool` (Debian package `prometheus`): the same exit codes, and
//! the same output wherever homeostat does not deliberately say more.
//!
//! Cases: our own files in tests/testdata/promtool, and promtool 2.42's own
//! test files in ../shared/data/promtool (skipped with a note when absent).

use std::path::{Path, PathBuf};
use std::process::Command;

use homeostat_e2e::{homeostat_bin, required_program};

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
    /// Both streams, for messages.
    text: String,
}

fn run(program: &Path, args: &[&str], dir: &Path) -> Out {
    let o = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", program.display()));
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    Out {
        code: o.status.code().unwrap_or(-1),
        text: format!("{stdout}{stderr}"),
        stdout,
        stderr,
    }
}

fn promtool() -> Option<PathBuf> {
    required_program(&["promtool"], "prometheus")
}

fn ours() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/promtool")
}

fn shared() -> Option<PathBuf> {
    let base = std::env::var_os("HOMEOSTAT_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"));
    let dir = base.join("promtool");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "SKIP: {} not found (set HOMEOSTAT_SHARED_DATA); promtool 2.42 test files not run",
            dir.display()
        );
        None
    }
}

/// Runs both tools; asserts equal exit codes and returns both outputs.
fn both(pt: &Path, args: &[&str], dir: &Path) -> (Out, Out) {
    let a = run(pt, args, dir);
    let b = run(&homeostat_bin(), args, dir);
    assert_eq!(
        a.code, b.code,
        "exit codes differ for {args:?}\npromtool:\n{}\nhomeostat:\n{}",
        a.text, b.text
    );
    (a, b)
}

fn same_output(pt: &Path, args: &[&str], dir: &Path) {
    let (a, b) = both(pt, args, dir);
    assert_eq!(
        unordered_duplicates(&a.stdout),
        unordered_duplicates(&b.stdout),
        "stdout differs for {args:?}"
    );
    assert_eq!(
        unordered_duplicates(&a.stderr),
        unordered_duplicates(&b.stderr),
        "stderr differs for {args:?}"
    );
}

/// promtool loads a test's input series from a Go map, so the order of the
/// two series it names in "found duplicate series ... [A, B]" changes from
/// run to run (3 of 12 runs of 2.42 flip them). Sorting the pair keeps the
/// comparison byte-exact everywhere else.
fn unordered_duplicates(s: &str) -> String {
    const KEY: &str = "hand-side of the operation: [";
    const END: &str = "];many-to-many";
    let mut out = String::new();
    for line in s.split_inclusive('\n') {
        let pair = line.find(KEY).map(|i| i + KEY.len()).and_then(|start| {
            let end = start + line[start..].find(END)?;
            let (x, y) = line[start..end].split_once("}, {")?;
            Some((start, end, format!("{x}}}"), format!("{{{y}")))
        });
        match pair {
            Some((start, end, x, y)) => {
                let (x, y) = if x <= y { (x, y) } else { (y, x) };
                out.push_str(&format!("{}{x}, {y}{}", &line[..start], &line[end..]));
            }
            None => out.push_str(line),
        }
    }
    out
}

#[test]
fn duplicate_pairs_compare_unordered() {
    let a = "err: found duplicate series for the match group {a=\"1\"} on the right hand-side of the operation: [{b=\"4\"}, {b=\"3\"}];many-to-many matching\n";
    let b = "err: found duplicate series for the match group {a=\"1\"} on the right hand-side of the operation: [{b=\"3\"}, {b=\"4\"}];many-to-many matching\n";
    assert_eq!(unordered_duplicates(a), unordered_duplicates(b));
    assert_ne!(
        unordered_duplicates(a),
        unordered_duplicates(&a.replace('4', "5"))
    );
}

/// `file: 7:20: group ...` → `file: group ...`.
fn strip_positions(s: &str) -> String {
    let mut out = String::new();
    for line in s.lines() {
        let mut l = line.to_string();
        if let Some(i) = l.find(": ") {
            let rest = &l[i + 2..];
            let pos_len = rest
                .find(": ")
                .filter(|&j| {
                    let p = &rest[..j];
                    p.split(':').count() == 2
                        && p.split(':')
                            .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                })
                .map(|j| j + 2);
            if let Some(n) = pos_len {
                l = format!("{}{}", &l[..i + 2], &rest[n..]);
            }
        }
        out.push_str(&l);
        out.push('\n');
    }
    out
}

/// Same output, except that homeostat names the line and column where
/// promtool gives none.
fn same_but_positioned(pt: &Path, args: &[&str], dir: &Path) {
    let (a, b) = both(pt, args, dir);
    assert_eq!(a.stdout, b.stdout, "stdout differs for {args:?}");
    assert_eq!(
        strip_positions(&a.stderr),
        strip_positions(&b.stderr),
        "stderr differs beyond positions for {args:?}"
    );
    assert_ne!(
        a.stderr, b.stderr,
        "homeostat should add positions: {}",
        b.stderr
    );
}

#[test]
fn check_rules_matches_promtool() {
    let Some(pt) = promtool() else { return };
    let dir = ours();
    for f in ["good.yml", "dup.yml", "record_for.yml", "empty_group.yml"] {
        same_output(&pt, &["check", "rules", f], &dir);
    }
    for f in ["bad_template.yml", "bad_label.yml"] {
        same_but_positioned(&pt, &["check", "rules", f], &dir);
    }
    // Lint findings become fatal (exit 3) only when asked.
    let (a, _) = both(&pt, &["check", "rules", "--lint-fatal", "dup.yml"], &dir);
    assert_eq!(a.code, 3);
    let (a, _) = both(&pt, &["check", "rules", "--lint=none", "dup.yml"], &dir);
    assert_eq!(a.code, 0);

    // Same verdict and position; the parser's wording is its own.
    let (_, b) = both(&pt, &["check", "rules", "bad_expr.yml"], &dir);
    assert!(
        b.text.contains(
            "bad_expr.yml: 5:15: group \"g\", rule 1, \"A\": could not parse expression: "
        ),
        "{}",
        b.text
    );
    // promtool says 0:0 for a missing field; homeostat points at the rule.
    let (a, b) = both(&pt, &["check", "rules", "missing_expr.yml"], &dir);
    assert!(a.text.contains("field 'expr' must be set in rule"));
    assert!(
        b.text.contains(
            "missing_expr.yml: 4:9: group \"g\", rule 1, \"A\": field 'expr' must be set in rule"
        ),
        "{}",
        b.text
    );
    let (_, b) = both(&pt, &["check", "rules", "unknown_field.yml"], &dir);
    assert!(
        b.text.contains(
            "unknown_field.yml: 6:9: groups[0].rules[0].summary: unknown field \"summary\""
        ),
        "{}",
        b.text
    );
    // Several files: one bad file fails the run.
    let (a, _) = both(&pt, &["check", "rules", "good.yml", "record_for.yml"], &dir);
    assert_eq!(a.code, 1);
}

#[test]
fn test_rules_matches_promtool_on_our_cases() {
    let Some(pt) = promtool() else { return };
    let dir = ours();
    same_output(&pt, &["test", "rules", "unit_pass.yml"], &dir);
    same_output(&pt, &["test", "rules", "unit_fail.yml"], &dir);
    let (a, _) = both(
        &pt,
        &["test", "rules", "unit_pass.yml", "unit_fail.yml"],
        &dir,
    );
    assert_eq!(a.code, 1);
}

/// The bundled rules (rules/) and their unit tests are promtool's format:
/// the real promtool checks and passes them exactly as homeostat does.
#[test]
fn bundled_rules_pass_in_promtool() {
    let Some(pt) = promtool() else { return };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules");
    let mut rules = Vec::new();
    let mut tests = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("rules/") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        if name.ends_with(".rules.yml") {
            rules.push(name);
        } else if name.ends_with(".test.yml") {
            tests.push(name);
        }
    }
    rules.sort();
    tests.sort();
    assert!(
        rules.len() >= 5 && tests.len() == rules.len(),
        "{rules:?} {tests:?}"
    );
    for (cmd, files) in [("check", &rules), ("test", &tests)] {
        for f in files {
            let (a, b) = both(&pt, &[cmd, "rules", f], &dir);
            assert_eq!(a.code, 0, "promtool {cmd} rules {f}:\n{}", a.text);
            assert_eq!(b.code, 0, "homeostat {cmd} rules {f}:\n{}", b.text);
        }
    }
}

/// Every bundled alert links to its own section of docs/runbooks.md, and
/// that section exists.
#[test]
fn bundled_alerts_have_runbooks() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let runbooks = std::fs::read_to_string(root.join("docs/runbooks.md")).expect("runbooks");
    let headings: Vec<&str> = runbooks
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .collect();
    let mut alerts = 0;
    for entry in std::fs::read_dir(root.join("rules")).expect("rules/") {
        let path = entry.expect("entry").path();
        if !path.to_string_lossy().ends_with(".rules.yml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("rules file");
        let mut current: Option<&str> = None;
        for line in text.lines().map(str::trim) {
            if let Some(name) = line.strip_prefix("- alert: ") {
                assert!(
                    current.is_none(),
                    "{}: {current:?} has no runbook_url",
                    path.display()
                );
                current = Some(name.trim());
                alerts += 1;
            } else if let Some(url) = line.strip_prefix("runbook_url: ") {
                let name = current.take().expect("runbook_url outside an alert");
                let anchor = url.trim_matches('\'').rsplit('#').next().unwrap_or("");
                assert_eq!(anchor, name.to_lowercase(), "{}: {name}", path.display());
                assert!(
                    headings.contains(&name),
                    "docs/runbooks.md has no section {name}"
                );
                assert!(
                    runbooks.contains(&format!("(#{anchor})")),
                    "docs/runbooks.md's contents do not list {name}"
                );
            }
        }
        assert!(
            current.is_none(),
            "{}: {current:?} has no runbook_url",
            path.display()
        );
    }
    assert!(alerts >= 40, "only {alerts} alerts found");
}

#[test]
fn promtool_242_test_files_pass_and_fail_alike() {
    let Some(dir) = shared() else { return };
    let good = [
        "unittest.yml",
        "long-period.yml",
        "at-modifier-test.yml",
        "negative-offset-test.yml",
    ];
    let bad = [
        "failing.yml",
        "bad-promql.yml",
        "bad-rules-error-test.yml",
        "bad-rules-syntax-test.yml",
        "bad-input-series.yml",
    ];
    // Without promtool these still must pass and fail as promtool's own
    // test suite expects.
    for f in good {
        let o = run(&homeostat_bin(), &["test", "rules", f], &dir);
        assert_eq!(o.code, 0, "{f} should pass:\n{}", o.text);
        assert!(o.text.contains("  SUCCESS"), "{}", o.text);
    }
    for f in bad {
        let o = run(&homeostat_bin(), &["test", "rules", f], &dir);
        assert_eq!(o.code, 1, "{f} should fail:\n{}", o.text);
        assert!(o.text.contains("  FAILED:"), "{}", o.text);
    }
    let o = run(
        &homeostat_bin(),
        &["test", "rules", "bad-rules-syntax-test.yml"],
        &dir,
    );
    assert!(
        o.text.contains("bad-rules-syntax.yml: 7:15: group \"bad-syntax\", rule 1, \"x\": could not parse expression"),
        "{}",
        o.text
    );
    let Some(pt) = promtool() else { return };
    // Byte-for-byte where the failure is ours to word.
    for f in good
        .iter()
        .chain(&["failing.yml", "bad-promql.yml", "bad-rules-error-test.yml"])
    {
        same_output(&pt, &["test", "rules", f], &dir);
    }
    for f in [
        "rules.yml",
        "rules_duplicates.yml",
        "rules_large.yml",
        "prometheus-rules.lint.yml",
        "bad-rules-error.yml",
        "at-modifier.yml",
        "negative-offset.yml",
    ] {
        same_output(&pt, &["check", "rules", f], &dir);
    }
    both(&pt, &["check", "rules", "bad-rules-syntax.yml"], &dir);
}

/// Every PromQL expression in dashboards/*.json with Grafana's variables
/// filled in the way Grafana would (`$__rate_interval` → `1m`, `$__range` →
/// `1h`, a template variable → `.*`).
fn dashboard_exprs() -> Vec<(String, String)> {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m {
                    match (k.as_str(), x) {
                        ("expr", serde_json::Value::String(s)) if !s.trim().is_empty() => {
                            out.push(s.clone())
                        }
                        _ => walk(x, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    fn fill(expr: &str) -> String {
        let e = expr
            .replace("$__rate_interval", "1m")
            .replace("$__interval", "1m")
            .replace("$__range", "1h");
        let mut out = String::new();
        let mut chars = e.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '$' {
                out.push(c);
                continue;
            }
            if chars.peek() == Some(&'{') {
                for x in chars.by_ref() {
                    if x == '}' {
                        break;
                    }
                }
            } else {
                while chars
                    .peek()
                    .is_some_and(|x| x.is_alphanumeric() || *x == '_')
                {
                    chars.next();
                }
            }
            out.push_str(".*");
        }
        out
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards");
    let mut found = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("dashboards/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    for f in files {
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&f).unwrap())
            .unwrap_or_else(|e| panic!("{}: not JSON: {e}", f.display()));
        let mut exprs = Vec::new();
        walk(&v, &mut exprs);
        assert!(!exprs.is_empty(), "{}: no queries", f.display());
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        found.extend(exprs.iter().map(|e| (name.clone(), fill(e))));
    }
    found
}

/// The bundled Grafana dashboards only use PromQL that homeostat (their data
/// source) and Prometheus 2.42 both parse: each query becomes a recording
/// rule checked by `homeostat check rules`, and by promtool when installed.
#[test]
fn bundled_dashboards_queries_parse() {
    let exprs = dashboard_exprs();
    assert!(
        exprs.len() > 100,
        "only {} dashboard queries found",
        exprs.len()
    );
    let dir = tempfile::tempdir().unwrap();
    let mut rules = String::from("groups:\n  - name: dashboards\n    rules:\n");
    for (i, (file, e)) in exprs.iter().enumerate() {
        rules.push_str(&format!(
            "      # {file}\n      - record: dashboard:query_{i}\n        expr: {}\n",
            serde_json::to_string(e).unwrap()
        ));
    }
    std::fs::write(dir.path().join("dash.rules.yml"), &rules).unwrap();
    let ours = run(
        &homeostat_bin(),
        &["check", "rules", "dash.rules.yml"],
        dir.path(),
    );
    assert_eq!(
        ours.code, 0,
        "homeostat rejects a dashboard query:\n{}",
        ours.text
    );
    if let Some(p) = promtool() {
        let theirs = run(&p, &["check", "rules", "dash.rules.yml"], dir.path());
        assert_eq!(
            theirs.code, 0,
            "promtool rejects a dashboard query:\n{}",
            theirs.text
        );
    }
}
