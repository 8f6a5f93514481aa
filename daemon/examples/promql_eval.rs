//! Evaluates PromQL queries read from stdin against data loaded from a
//! promqltest file and prints one JSON result per line in the shape of
//! Prometheus's HTTP API `data` (or `{"error": ...}`). Used by
//! `tools/promql-diff` to compare homeostat with a real Prometheus.
//!
//! Input lines: `I <time ms> <query>` (instant) or
//! `R <start ms> <end ms> <step ms> <query>` (range).
//!
//! Usage: `cargo run --example promql_eval -- DATA.test < queries`

use std::collections::BTreeMap;
use std::io::{BufRead, Write};

use homeostat::query::{format_float, promqltest, Engine, QueryValue};
use homeostat::store::Labels;
use serde_json::{json, Value};

fn metric(l: &Labels) -> BTreeMap<String, String> {
    l.iter()
        .map(|x| (x.name.to_string(), x.value.to_string()))
        .collect()
}

fn secs(t: i64) -> f64 {
    t as f64 / 1000.0
}

fn to_json(v: &QueryValue) -> Value {
    match v {
        QueryValue::Scalar { t, v } => {
            json!({"resultType": "scalar", "result": [secs(*t), format_float(*v)]})
        }
        QueryValue::String { t, v } => json!({"resultType": "string", "result": [secs(*t), v]}),
        QueryValue::Vector(s) => json!({"resultType": "vector", "result": s.iter().map(|s| json!({
            "metric": metric(&s.labels), "value": [secs(s.t), format_float(s.v)]})).collect::<Vec<_>>()}),
        QueryValue::Matrix(m) => json!({"resultType": "matrix", "result": m.iter().map(|s| json!({
            "metric": metric(&s.labels),
            "values": s.samples.iter().map(|(t, v)| json!([secs(*t), format_float(*v)])).collect::<Vec<_>>()})).collect::<Vec<_>>()}),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: promql_eval DATA.test < queries")?;
    let text = std::fs::read_to_string(&path)?;
    let store = promqltest::load_store(&path, &text)?;
    let engine = Engine::default();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let parts: Vec<&str> = line.splitn(5, ' ').collect();
        let res = match parts.as_slice() {
            ["I", t, rest @ ..] => {
                let q = rest.join(" ");
                engine.instant_query(&store, &q, t.parse()?)
            }
            ["R", s, e, st, q] => {
                engine.range_query(&store, q, s.parse()?, e.parse()?, st.parse()?)
            }
            _ => return Err(format!("bad input line: {line}").into()),
        };
        let v = match res {
            Ok(o) => to_json(&o.value),
            Err(e) => json!({"error": e.to_string(), "errorType": e.error_type()}),
        };
        writeln!(out, "{v}")?;
    }
    Ok(())
}
