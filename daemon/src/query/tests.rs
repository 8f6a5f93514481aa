//! Unit tests of the engine's core operators, and the conformance run over
//! Prometheus's own test files (counts only: the CI threshold is a script's).

use super::*;
use crate::store::{stale_nan, Labels, Store};

/// A series for [`store`]: label pairs and samples.
type TestSeries<'a> = (&'a [(&'a str, &'a str)], &'a [(i64, f64)]);

fn store(series: &[TestSeries]) -> Store {
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

/// Every step of a range query equals the instant query at that time
/// (Prometheus's own invariant, outside `@ start()/end()` and its quirks).
#[test]
fn range_steps_equal_instant_queries() {
    let mut samples_a = Vec::new();
    let mut samples_b = Vec::new();
    for i in 0..40i64 {
        let t = i * 15_000;
        if i % 7 != 3 {
            samples_a.push((t, (i * 3 % 11) as f64));
        }
        samples_b.push((t, if i == 25 { stale_nan() } else { i as f64 * 2.0 }));
    }
    let db = store(&[
        (&[("__name__", "a"), ("job", "x"), ("i", "1")], &samples_a),
        (&[("__name__", "a"), ("job", "y"), ("i", "1")], &samples_b),
        (&[("__name__", "b"), ("job", "x")], &samples_b),
    ]);
    let e = Engine::default();
    let queries = [
        "a",
        "a offset 1m",
        "rate(a[1m])",
        "sum by (i) (a)",
        "a / on(job) group_left b",
        "a and b",
        "a or b",
        "topk(1, a)",
        "max_over_time(a[2m:20s])",
        "deriv(a[90s])",
        "absent(nope)",
        "absent_over_time(b[30s])",
        "changes(a[5m])",
        "count_values(\"v\", a)",
        "histogram_quantile(0.5, a)",
        "a @ 100",
        "scalar(b) * a",
        "time()",
    ];
    for q in queries {
        let QueryValue::Matrix(m) = e.range_query(&db, q, 0, 600_000, 30_000).unwrap().value else {
            panic!("{q}: not a matrix");
        };
        for step in 0..=20 {
            let t = step * 30_000;
            let mut from_range: Vec<(String, f64)> = m
                .iter()
                .filter_map(|s| {
                    s.samples
                        .iter()
                        .find(|p| p.0 == t)
                        .map(|p| (s.labels.to_string(), p.1))
                })
                .collect();
            let mut inst = match e.instant_query(&db, q, t).unwrap().value {
                QueryValue::Scalar { v, .. } => vec![("{}".to_string(), v)],
                QueryValue::Vector(v) => {
                    v.into_iter().map(|s| (s.labels.to_string(), s.v)).collect()
                }
                other => panic!("{q}: {other:?}"),
            };
            from_range.sort_by(|a, b| a.0.cmp(&b.0));
            inst.sort_by(|a, b| a.0.cmp(&b.0));
            let same = from_range.len() == inst.len()
                && from_range
                    .iter()
                    .zip(&inst)
                    .all(|(a, b)| a.0 == b.0 && (a.1 == b.1 || (a.1.is_nan() && b.1.is_nan())));
            assert!(same, "{q} at {t}: range {from_range:?} vs instant {inst:?}");
        }
    }
}

/// Prometheus 2.42 evaluates step-invariant parts once, and the analysis has
/// two quirks that range queries must reproduce.
#[test]
fn step_invariance_quirks_of_2_42() {
    let s: Vec<(i64, f64)> = (0..=40).map(|i| (i * 15_000, (i * i) as f64)).collect();
    let db = store(&[(&[("__name__", "m")], &s)]);
    let e = Engine::default();
    let points = |q: &str| match e
        .range_query(&db, q, 300_000, 420_000, 60_000)
        .unwrap()
        .value
    {
        QueryValue::Matrix(m) => m.into_iter().next().map(|s| s.samples).unwrap_or_default(),
        other => panic!("{other:?}"),
    };
    // predict_linear is "@-unsafe": its window slides from the @ time with
    // the step instead of staying put (data still ends at the @ time).
    let slid = points("predict_linear(m[2m] @ 300, 0)");
    let fixed = points("deriv(m[2m] @ 300)");
    assert_eq!(fixed.len(), 3);
    assert!(fixed.windows(2).all(|w| w[0].1 == w[1].1));
    assert!(slid.len() >= 2);
    assert_ne!(slid[0].1, slid[1].1);
    // An aggregation over step-invariant input takes its parameter at the
    // first step only.
    // m is 400 at 300s only, so k is 2 there and NaN (an error) later.
    let k = points(
        r#"count(topk(scalar(m < 500) / 400 + 1, vector(1) or label_replace(vector(2), "a", "b", "", "") or label_replace(vector(3), "a", "c", "", "")))"#,
    );
    assert_eq!(k.len(), 3);
    assert!(k.iter().all(|p| p.1 == 2.0), "{k:?}");
}

/// Odd and hostile queries give a result or an error, never a panic.
#[test]
fn hostile_queries_do_not_panic() {
    let db = demo();
    let e = Engine::default();
    let queries = [
        "",
        "(",
        "m[0s]",
        "rate(m[0s])",
        "max_over_time(m[1m:0s])",
        "max_over_time(m[100y:1ms])",
        "topk(1e30, m)",
        "topk(NaN, m)",
        "quantile(NaN, m)",
        "m @ 1e12",
        "m offset 1000y",
        "m offset -1000y",
        "rate(m[1000y])",
        "label_replace(m, \"a\", \"$99999999999\", \"job\", \"(.*)\")",
        "label_replace(m, \"a\", \"x\", \"job\", \"(((\")",
        "histogram_quantile(0.5, {le=\"abc\"})",
        "count_values(\"\", m)",
        "count_values(\"0bad\", m)",
        "holt_winters(m[5m], 2, 0.5)",
        "year(m * 1e300)",
        "-(-(-m))",
        "m / 0 > bool Inf",
        "{__name__=~\"(\"}",
        "sum by (__name__) (m) or n",
        "m and on(nope) n unless n",
    ];
    for q in queries {
        let _ = e.instant_query(&db, q, 60_000);
        let _ = e.range_query(&db, q, 0, 120_000, 30_000);
    }
    let err = e
        .instant_query(&db, "max_over_time(m[100y:1ms])", 60_000)
        .unwrap_err();
    assert_eq!(err.error_type(), "execution");
    assert_eq!(
        e.range_query(&db, "m", 0, 1_000_000_000, 1)
            .unwrap_err()
            .error_type(),
        "bad_data"
    );
}
