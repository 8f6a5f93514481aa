//! The Prometheus query API, as Grafana's Prometheus data source calls it:
//! `query`, `query_range`, `series`, `labels`, `label/<name>/values`,
//! `metadata`, `query_exemplars`. GET with a query string and POST with a
//! form body are both accepted; times are RFC 3339 or Unix seconds (floats),
//! durations are Prometheus durations or float seconds.
//!
//! Parameters are parsed here; evaluation belongs to the query stage, which
//! runs on the blocking pool so a heavy query never stalls the HTTP workers.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::ser::{SerializeMap, SerializeTuple};
use serde::{Serialize, Serializer};
use serde_json::{json, Value};

use super::api::ApiError;
use super::AppState;
use crate::config::units::parse_duration;
use crate::query::{format_float, QueryError, QueryOutput, QueryValue};
use crate::store::{Labels, Matcher};

/// Most points a range query may return per series, as Prometheus.
const MAX_POINTS: i64 = 11_000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/query", get(query).post(query))
        .route("/api/v1/query_range", get(query_range).post(query_range))
        .route("/api/v1/series", get(series).post(series))
        .route("/api/v1/labels", get(labels).post(labels))
        .route("/api/v1/label/{name}/values", get(label_values))
        .route("/api/v1/metadata", get(metadata))
        .route("/api/v1/query_exemplars", get(exemplars).post(exemplars))
}

/// Query-string and form parameters together, repeated keys kept.
struct Params(Vec<(String, String)>);

/// Extracts query-string and form parameters in one go, so every handler
/// reads them the same way. The body limit layer bounds what is read.
impl<S: Send + Sync> axum::extract::FromRequest<S> for Params {
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let raw = parts.uri.query().map(str::to_string);
        let req = axum::extract::Request::from_parts(parts.clone(), body);
        let body = Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(Params::new(&parts.method, &parts.headers, raw, &body))
    }
}

impl Params {
    fn new(method: &Method, headers: &HeaderMap, raw: Option<String>, body: &Bytes) -> Params {
        let mut v: Vec<(String, String)> = raw
            .as_deref()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        let is_form = headers
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|c| c.to_str().ok())
            .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
        if method == Method::POST && is_form {
            v.extend(form_urlencoded::parse(body).into_owned());
        }
        Params(v)
    }

    fn get(&self, key: &str) -> Option<&str> {
        // Form values win over the query string, as in Go's Request.FormValue.
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

fn now_ms() -> i64 {
    crate::collect::now_ms()
}

/// Prometheus's `parseTime`: Unix seconds (fractions allowed) or RFC 3339.
pub fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(f) = s.parse::<f64>() {
        if f.is_finite() {
            return Ok((f * 1000.0).round() as i64);
        }
    }
    parse_rfc3339(s).ok_or_else(|| format!("cannot parse {s:?} to a valid timestamp"))
}

fn parse_rfc3339(s: &str) -> Option<i64> {
    // humantime reads only UTC ("Z"); fold a numeric offset in by hand.
    // `get` rather than slicing: the input is user text and may not be ASCII.
    let split = s
        .len()
        .checked_sub(6)
        .and_then(|i| Some((s.get(..i)?, s.get(i..)?)));
    let (base, offset_s) = match split {
        Some((b, off))
            if (off.starts_with('+') || off.starts_with('-'))
                && off.as_bytes().get(3) == Some(&b':') =>
        {
            let sign = if off.starts_with('-') { -1 } else { 1 };
            let h: i64 = off.get(1..3)?.parse().ok()?;
            let m: i64 = off.get(4..6)?.parse().ok()?;
            (format!("{b}Z"), sign * (h * 3600 + m * 60))
        }
        _ => (s.to_string(), 0),
    };
    let t = humantime::parse_rfc3339_weak(base.trim_end_matches('Z')).ok()?;
    let ms = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    };
    Some(ms - offset_s * 1000)
}

/// Prometheus's `parseDuration`: float seconds or a Prometheus duration.
pub fn parse_step(s: &str) -> Result<i64, String> {
    if let Ok(f) = s.parse::<f64>() {
        let ms = (f * 1000.0).round();
        if f.is_finite() && ms.abs() < i64::MAX as f64 {
            return Ok(ms as i64);
        }
        return Err(format!(
            "cannot parse {s:?} to a valid duration. It overflows int64"
        ));
    }
    parse_duration(s)
        .map(|d| d.as_millis() as i64)
        .map_err(|_| format!("cannot parse {s:?} to a valid duration"))
}

fn time_param(p: &Params, key: &str, default: i64) -> Result<i64, ApiError> {
    match p.get(key) {
        None | Some("") => Ok(default),
        Some(s) => parse_time(s)
            .map_err(|e| ApiError::bad_data(format!("invalid parameter \"{key}\": {e}"))),
    }
}

fn labels_json(l: &Labels) -> BTreeMap<&str, &str> {
    l.iter().map(|x| (&*x.name, &*x.value)).collect()
}

/// Seconds with millisecond precision, as the JSON number Prometheus writes.
fn ts_secs(t: i64) -> f64 {
    t as f64 / 1000.0
}

/// `[<unix seconds>, "<value>"]`.
struct Point(i64, f64);

impl Serialize for Point {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_tuple(2)?;
        seq.serialize_element(&ts_secs(self.0))?;
        seq.serialize_element(&format_float(self.1))?;
        seq.end()
    }
}

/// A label set as a JSON object, written straight from the store's labels.
struct LabelsObj<'a>(&'a Labels);

impl Serialize for LabelsObj<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for l in self.0.iter() {
            map.serialize_entry(&*l.name, &*l.value)?;
        }
        map.end()
    }
}

/// Points of one series as a JSON array, without collecting them first.
struct Points<'a>(&'a [(i64, f64)]);

impl Serialize for Points<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|&(t, v)| Point(t, v)))
    }
}

/// A query result in Prometheus's `data` shape, serialised directly: large
/// results never become an intermediate JSON tree.
pub struct QueryData<'a>(pub &'a QueryValue);

impl Serialize for QueryData<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct VectorItem<'a> {
            metric: LabelsObj<'a>,
            value: Point,
        }
        #[derive(Serialize)]
        struct MatrixItem<'a> {
            metric: LabelsObj<'a>,
            values: Points<'a>,
        }
        let mut map = s.serialize_map(Some(2))?;
        match self.0 {
            QueryValue::Scalar { t, v } => {
                map.serialize_entry("resultType", "scalar")?;
                map.serialize_entry("result", &Point(*t, *v))?;
            }
            QueryValue::String { t, v } => {
                map.serialize_entry("resultType", "string")?;
                map.serialize_entry("result", &(ts_secs(*t), v))?;
            }
            QueryValue::Vector(samples) => {
                map.serialize_entry("resultType", "vector")?;
                let items: Vec<VectorItem<'_>> = samples
                    .iter()
                    .map(|x| VectorItem {
                        metric: LabelsObj(&x.labels),
                        value: Point(x.t, x.v),
                    })
                    .collect();
                map.serialize_entry("result", &items)?;
            }
            QueryValue::Matrix(series) => {
                map.serialize_entry("resultType", "matrix")?;
                let items: Vec<MatrixItem<'_>> = series
                    .iter()
                    .map(|x| MatrixItem {
                        metric: LabelsObj(&x.labels),
                        values: Points(&x.samples),
                    })
                    .collect();
                map.serialize_entry("result", &items)?;
            }
        }
        map.end()
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        // Prometheus: bad_data 400, timeout 503, execution 422.
        let status = match e.error_type() {
            "bad_data" => StatusCode::BAD_REQUEST,
            "timeout" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        ApiError {
            status,
            error_type: e.error_type(),
            message: e.to_string(),
        }
    }
}

/// The success envelope around a query result.
fn respond_query(out: &QueryOutput) -> Response {
    #[derive(Serialize)]
    struct Body<'a> {
        status: &'static str,
        data: QueryData<'a>,
        #[serde(skip_serializing_if = "<[String]>::is_empty")]
        warnings: &'a [String],
    }
    Json(Body {
        status: "success",
        data: QueryData(&out.value),
        warnings: &out.warnings,
    })
    .into_response()
}

fn respond(data: Value, warnings: &[String]) -> Response {
    let mut body = json!({"status": "success", "data": data});
    if !warnings.is_empty() {
        body["warnings"] = json!(warnings);
    }
    Json(body).into_response()
}

/// A per-request timeout shorter than the engine's, from `timeout=`.
fn engine_for(s: &AppState, p: &Params) -> Result<crate::query::Engine, ApiError> {
    let mut opts = s.engine.read().options().clone();
    if let Some(t) = p.get("timeout").filter(|t| !t.is_empty()) {
        let ms = parse_step(t)
            .map_err(|e| ApiError::bad_data(format!("invalid parameter \"timeout\": {e}")))?;
        let d = Duration::from_millis(ms.max(0) as u64);
        if d < opts.timeout {
            opts.timeout = d;
        }
    }
    Ok(crate::query::Engine::new(opts))
}

async fn run_blocking<T, F>(f: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            error_type: "internal",
            message: format!("query panicked: {e}"),
        })
    })
}

fn query_param(p: &Params) -> Result<String, ApiError> {
    p.get("query")
        .filter(|q| !q.is_empty())
        .map(str::to_string)
        .ok_or_else(|| ApiError::bad_data("invalid parameter \"query\": query must not be empty"))
}

fn required_time(p: &Params, key: &str) -> Result<i64, ApiError> {
    parse_time(p.get(key).unwrap_or(""))
        .map_err(|e| ApiError::bad_data(format!("invalid parameter \"{key}\": {e}")))
}

/// Runs an evaluation on the blocking pool and renders its outcome.
async fn evaluate<F>(prepared: Result<F, ApiError>) -> Response
where
    F: FnOnce() -> Result<QueryOutput, QueryError> + Send + 'static,
{
    let result = match prepared {
        Ok(f) => run_blocking(move || f().map_err(ApiError::from)).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(out) => respond_query(&out),
        Err(e) => e.into_response(),
    }
}

async fn query(State(s): State<AppState>, p: Params) -> Response {
    let prepared = (|| {
        let q = query_param(&p)?;
        let ts = time_param(&p, "time", now_ms())?;
        let engine = engine_for(&s, &p)?;
        let store = s.store.clone();
        Ok(move || engine.instant_query(store.as_ref(), &q, ts))
    })();
    evaluate(prepared).await
}

async fn query_range(State(s): State<AppState>, p: Params) -> Response {
    let prepared = (|| {
        let q = query_param(&p)?;
        let start = required_time(&p, "start")?;
        let end = required_time(&p, "end")?;
        if end < start {
            return Err(ApiError::bad_data(
                "invalid parameter \"end\": end timestamp must not be before start time",
            ));
        }
        let step = parse_step(p.get("step").unwrap_or(""))
            .map_err(|e| ApiError::bad_data(format!("invalid parameter \"step\": {e}")))?;
        if step <= 0 {
            return Err(ApiError::bad_data(
                "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer",
            ));
        }
        if (end - start) / step > MAX_POINTS {
            return Err(ApiError::bad_data(
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
            ));
        }
        let engine = engine_for(&s, &p)?;
        let store = s.store.clone();
        Ok(move || engine.range_query(store.as_ref(), &q, start, end, step))
    })();
    evaluate(prepared).await
}

/// Parses every `match[]` selector into matcher sets.
fn match_sets(p: &Params, required: bool) -> Result<Vec<Vec<Matcher>>, ApiError> {
    let raw = p.all("match[]");
    if raw.is_empty() && required {
        return Err(ApiError::bad_data("no match[] parameter provided"));
    }
    raw.iter()
        .map(|m| crate::query::parse_selector(m).map_err(ApiError::from))
        .collect()
}

/// Prometheus defaults series/label lookups to all time.
const MIN_TIME: i64 = i64::MIN / 2;
const MAX_TIME: i64 = i64::MAX / 2;

async fn series(State(s): State<AppState>, p: Params) -> Response {
    let r = (|| {
        let sets = match_sets(&p, true)?;
        let start = time_param(&p, "start", MIN_TIME)?;
        let end = time_param(&p, "end", MAX_TIME)?;
        let mut out: Vec<Labels> = sets
            .iter()
            .flat_map(|m| s.store.series(m, start, end))
            .collect();
        out.sort();
        out.dedup();
        Ok::<_, ApiError>(
            out.iter()
                .map(labels_json)
                .map(|m| json!(m))
                .collect::<Vec<_>>(),
        )
    })();
    match r {
        Ok(v) => respond(json!(v), &[]),
        Err(e) => e.into_response(),
    }
}

async fn labels(State(s): State<AppState>, p: Params) -> Response {
    match match_sets(&p, false) {
        Ok(sets) => {
            let mut names: Vec<String> = if sets.is_empty() {
                s.store.label_names(&[])
            } else {
                sets.iter().flat_map(|m| s.store.label_names(m)).collect()
            };
            names.sort();
            names.dedup();
            respond(json!(names), &[])
        }
        Err(e) => e.into_response(),
    }
}

async fn label_values(State(s): State<AppState>, Path(name): Path<String>, p: Params) -> Response {
    if !crate::collect::relabel::valid_label_name(&name) {
        return ApiError::bad_data(format!("invalid label name: {name:?}")).into_response();
    }
    match match_sets(&p, false) {
        Ok(sets) => {
            let mut values: Vec<String> = if sets.is_empty() {
                s.store.label_values(&name, &[])
            } else {
                sets.iter()
                    .flat_map(|m| s.store.label_values(&name, m))
                    .collect()
            };
            values.sort();
            values.dedup();
            respond(json!(values), &[])
        }
        Err(e) => e.into_response(),
    }
}

async fn metadata(State(s): State<AppState>, p: Params) -> Response {
    let limit: Option<usize> = p
        .get("limit")
        .and_then(|l| l.parse::<i64>().ok())
        .filter(|l| *l >= 0)
        .map(|l| l as usize);
    let metric = p.get("metric").filter(|m| !m.is_empty());
    let mut out = serde_json::Map::new();
    for (name, entries) in s.targets.metadata() {
        if metric.is_some_and(|m| m != name) {
            continue;
        }
        if limit.is_some_and(|l| out.len() >= l) {
            break;
        }
        let list: Vec<Value> = entries
            .into_iter()
            .map(|m| json!({"type": m.kind, "help": m.help, "unit": m.unit}))
            .collect();
        out.insert(name, Value::Array(list));
    }
    respond(Value::Object(out), &[])
}

/// homeostat does not store exemplars (the parser skips them); an empty
/// answer lets Grafana's exemplar toggle work instead of erroring.
async fn exemplars() -> Response {
    respond(json!([]), &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_like_prometheus() {
        assert_eq!(parse_time("1435781451.781").unwrap(), 1_435_781_451_781);
        assert_eq!(parse_time("1435781451").unwrap(), 1_435_781_451_000);
        assert_eq!(
            parse_time("2015-07-01T20:10:51.781Z").unwrap(),
            1_435_781_451_781
        );
        assert_eq!(
            parse_time("2015-07-01T22:10:51.781+02:00").unwrap(),
            1_435_781_451_781
        );
        assert_eq!(
            parse_time("2015-07-01T20:10:51Z").unwrap(),
            1_435_781_451_000
        );
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("2015-07-01T20:10:5é+02:00").is_err());
        assert!(parse_time("ééééééé").is_err());
    }

    #[test]
    fn steps_parse_as_float_or_duration() {
        assert_eq!(parse_step("15").unwrap(), 15_000);
        assert_eq!(parse_step("0.5").unwrap(), 500);
        assert_eq!(parse_step("1m").unwrap(), 60_000);
        assert!(parse_step("soon").is_err());
    }
}
