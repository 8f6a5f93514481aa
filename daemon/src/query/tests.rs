//! Unit tests of the engine's core operators, and the conformance run over
//! Prometheus's own test files (counts only: the CI threshold is a script's).

use std::path::PathBuf;

use super::*;
use crate::store::{stale_nan, Labels, Store};

fn store(series: &[(&[(&str, &str)], &[(i64, f64)])]) -> Store {
    let s = Store::default();
    for (labels, samples) in series {
        let r = s
            .get_or_create(&Labels::from_pairs(labels.iter().copied()))
            .unwrap();
        for &(t, v) in samples.iter() {
            s.append(r, t, v).unwrap();
        }
    }
    s
}

fn vector(out: QueryOutput) -> Vec<(String, f64)> {
    match out.value {
        QueryValue::Vector(v) => v.into_iter().map(|s| (s.labels.to_string(), s.v)).collect(),
        other => panic!("not a vector: {other:?}"),
    }
}

fn scalar(out: QueryOutput) -> f64 {
    match out.value {
        QueryValue::Scalar { v, .. } => v,
        other => panic!("not a scalar: {other:?}"),
    }
}

fn demo() -> Store {
    store(&[
        (
            &[("__name__", "m"), ("job", "a")],
            &[(0, 1.0), (60_000, 2.0)],
        ),
        (
            &[("__name__", "m"), ("job", "b")],
            &[(0, 10.0), (60_000, 20.0)],
        ),
        (
            &[("__name__", "n"), ("job", "a")],
            &[(0, 100.0), (60_000, 200.0)],
        ),
    ])
}

#[test]
fn format_float_matches_go() {
    assert_eq!(format_float(1.0), "1");
    assert_eq!(format_float(0.1), "0.1");
    assert_eq!(format_float(1e21), "1000000000000000000000");
    assert_eq!(format_float(1.5e-7), "0.00000015");
    assert_eq!(format_float(f64::NAN), "NaN");
    assert_eq!(format_float(f64::INFINITY), "+Inf");
    assert_eq!(format_float(f64::NEG_INFINITY), "-Inf");
    assert_eq!(format_float(-0.0), "-0");
}

#[test]
fn scalar_arithmetic_and_errors() {
    let e = Engine::default();
    let db = Store::default();
    assert_eq!(scalar(e.instant_query(&db, "1 + 2 * 3", 0).unwrap()), 7.0);
    assert!(scalar(e.instant_query(&db, "0 / 0", 0).unwrap()).is_nan());
    assert_eq!(scalar(e.instant_query(&db, "2 ^ 10", 0).unwrap()), 1024.0);
    let err = e.instant_query(&db, "sum(", 0).unwrap_err();
    assert_eq!(err.error_type(), "bad_data");
}

#[test]
fn selector_lookback_and_staleness() {
    let e = Engine::default();
    let db = store(&[(
        &[("__name__", "m")],
        &[(0, 1.0), (10_000, 2.0), (20_000, stale_nan())],
    )]);
    assert_eq!(
        vector(e.instant_query(&db, "m", 15_000).unwrap()),
        vec![("m".into(), 2.0)]
    );
    assert!(vector(e.instant_query(&db, "m", 25_000).unwrap()).is_empty());
    let db = store(&[(&[("__name__", "m")], &[(0, 1.0)])]);
    assert_eq!(vector(e.instant_query(&db, "m", 300_000).unwrap()).len(), 1);
    assert!(vector(e.instant_query(&db, "m", 300_001).unwrap()).is_empty());
    assert_eq!(
        vector(e.instant_query(&db, "m offset -1m", 0).unwrap()),
        vec![("m".into(), 1.0)]
    );
}

#[test]
fn binary_matching_and_name_dropping() {
    let e = Engine::default();
    let db = demo();
    let v = vector(e.instant_query(&db, "m + on(job) n", 60_000).unwrap());
    assert_eq!(v, vec![(r#"{job="a"}"#.into(), 202.0)]);
    let v = vector(e.instant_query(&db, "m > 5", 60_000).unwrap());
    assert_eq!(v, vec![(r#"m{job="b"}"#.into(), 20.0)]);
    let v = vector(e.instant_query(&db, "m > bool 5", 60_000).unwrap());
    assert_eq!(v.len(), 2);
    assert_eq!(v[0], (r#"{job="a"}"#.into(), 0.0));
    let v = vector(e.instant_query(&db, "m and n", 60_000).unwrap());
    assert_eq!(v, vec![(r#"m{job="a"}"#.into(), 2.0)]);
    let v = vector(e.instant_query(&db, "m unless n", 60_000).unwrap());
    assert_eq!(v, vec![(r#"m{job="b"}"#.into(), 20.0)]);
    let v = vector(
        e.instant_query(&db, "m + on() group_left n", 60_000)
            .unwrap(),
    );
    assert_eq!(v[1], (r#"{job="b"}"#.into(), 220.0));
    let err = e.instant_query(&db, "m + on() n", 60_000).unwrap_err();
    assert_eq!(err.error_type(), "execution");
    assert!(
        err.to_string().contains("multiple matches for labels"),
        "{err}"
    );
    let err = e.instant_query(&db, "n + on() m", 60_000).unwrap_err();
    assert!(err.to_string().contains("found duplicate series"), "{err}");
}

#[test]
fn aggregations() {
    let e = Engine::default();
    let db = demo();
    let q = |s: &str| vector(e.instant_query(&db, s, 60_000).unwrap());
    assert_eq!(q("sum(m)"), vec![("{}".into(), 22.0)]);
    assert_eq!(
        q("count by (job) ({__name__=~\"m|n\"})")[0],
        (r#"{job="a"}"#.into(), 2.0)
    );
    assert_eq!(q("max without (job) (m)"), vec![("{}".into(), 20.0)]);
    assert_eq!(q("topk(1, m)"), vec![(r#"m{job="b"}"#.into(), 20.0)]);
    assert_eq!(q("bottomk(1, m)"), vec![(r#"m{job="a"}"#.into(), 2.0)]);
    assert_eq!(q("quantile(0.5, m)"), vec![("{}".into(), 11.0)]);
    assert_eq!(q("stddev(m)"), vec![("{}".into(), 9.0)]);
    assert_eq!(q("count_values(\"v\", m)").len(), 2);
}

#[test]
fn functions_and_range_queries() {
    let e = Engine::default();
    let s: Vec<(i64, f64)> = (0..=10).map(|i| (i * 10_000, i as f64 * 10.0)).collect();
    let db = store(&[(&[("__name__", "c")], &s)]);
    let v = vector(e.instant_query(&db, "rate(c[50s])", 100_000).unwrap());
    assert_eq!(v.len(), 1);
    assert!((v[0].1 - 1.0).abs() < 1e-9);
    assert_eq!(v[0].0, "{}");
    let v = vector(
        e.instant_query(&db, "max_over_time(c[1m:10s])", 100_000)
            .unwrap(),
    );
    assert_eq!(v, vec![("{}".into(), 100.0)]);
    let v = vector(e.instant_query(&db, "c @ 50", 100_000).unwrap());
    assert_eq!(v, vec![("c".into(), 50.0)]);
    let v = vector(e.instant_query(&db, "absent(nope{job=\"x\"})", 0).unwrap());
    assert_eq!(v, vec![(r#"{job="x"}"#.into(), 1.0)]);
    let out = e.range_query(&db, "c * 2", 0, 100_000, 50_000).unwrap();
    match out.value {
        QueryValue::Matrix(m) => {
            assert_eq!(m.len(), 1);
            assert_eq!(
                m[0].samples,
                vec![(0, 0.0), (50_000, 100.0), (100_000, 200.0)]
            );
        }
        other => panic!("{other:?}"),
    }
    let out = e.range_query(&db, "time()", 0, 60_000, 60_000).unwrap();
    assert!(
        matches!(out.value, QueryValue::Matrix(ref m) if m[0].samples == vec![(0, 0.0), (60_000, 60.0)])
    );
    assert!(e.range_query(&db, "c[1m]", 0, 60_000, 60_000).is_err());
}

#[test]
fn too_many_samples() {
    let e = Engine::new(EngineOptions {
        max_samples: 1,
        ..EngineOptions::default()
    });
    let err = e.instant_query(&demo(), "m", 60_000).unwrap_err();
    assert_eq!(err.error_type(), "execution");
    assert!(err
        .to_string()
        .starts_with("query processing would load too many samples"));
}

/// Runs every promqltest file of the shared data and prints the counts. Does
/// not fail on conformance gaps; a missing data directory is a skip.
#[test]
fn promql_conformance_counts() {
    let dir = std::env::var_os("HOMEOSTAT_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"))
        .join("promql");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        println!("SKIP: promql conformance data {} not found", dir.display());
        return;
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "test"))
        .collect();
    files.sort();
    let engine = Engine::default();
    let (mut passed, mut failed) = (0, 0);
    for f in &files {
        match promqltest::run_file(f, &engine) {
            Ok(r) => {
                println!(
                    "{}: {} passed, {} failed",
                    f.display(),
                    r.passed,
                    r.failures.len()
                );
                passed += r.passed;
                failed += r.failures.len();
            }
            Err(e) => println!("{e}"),
        }
    }
    println!("conformance: {passed} passed, {failed} failed");
}
