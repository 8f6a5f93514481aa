//! PromQL evaluation over the series store, with Prometheus 2.42's semantics.
//!
//! Owns the public query API ([`Engine`], [`QueryOutput`], [`QueryValue`],
//! [`QueryError`]), the evaluator (`eval`), the function library
//! (`functions`) and the conformance runner for Prometheus's own promqltest
//! files ([`promqltest`]). Parsing is delegated to the `promql-parser` crate;
//! evaluation is hand-written because it is the product's core.
//!
//! Inputs: a [`Queryable`] (the [`Store`] in production, anything that can
//! `select` in tests) and a query string with its evaluation time(s).
//! Output: a value shaped like Prometheus's API result. This module must not
//! speak HTTP (the web stage does) and never writes to the store: every data
//! access goes through [`Queryable::select`].
//!
//! Design: each expression node is evaluated once for all steps of the query
//! (like Prometheus's `rangeEval`), so a range query loads every selector's
//! samples once and walks them with cursors instead of re-selecting per step.

mod config;
mod eval;
mod functions;
pub mod promqltest;

use std::sync::Once;
use std::time::Duration;

pub use config::QueryConfig;
pub(crate) use eval::go_labels;

use crate::store::{Labels, Matcher, SeriesSamples, Store};

/// The read side of a series database, as the engine needs it.
pub trait Queryable: Send + Sync {
    /// Series matching all matchers with at least one sample in
    /// `[mint_ms, maxt_ms]` (inclusive), their samples in that range.
    fn select(&self, matchers: &[Matcher], mint_ms: i64, maxt_ms: i64) -> Vec<SeriesSamples>;
}

impl Queryable for Store {
    fn select(&self, matchers: &[Matcher], mint_ms: i64, maxt_ms: i64) -> Vec<SeriesSamples> {
        Store::select(self, matchers, mint_ms, maxt_ms)
    }
}

/// Engine limits; the defaults are Prometheus's.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// How far back an instant selector looks for a sample (default 5m).
    pub lookback_delta_ms: i64,
    /// Wall-clock limit for one query, checked between evaluation steps.
    pub timeout: Duration,
    /// Most samples one query may hold in memory.
    pub max_samples: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            lookback_delta_ms: 300_000,
            timeout: Duration::from_secs(120),
            max_samples: 50_000_000,
        }
    }
}

/// Step of a subquery written without one (`x[5m:]`): Prometheus uses the
/// global evaluation interval, 1m by default.
pub(crate) const DEFAULT_SUBQUERY_STEP_MS: i64 = 60_000;

/// Most steps a range query may have, as Prometheus's HTTP API enforces.
pub const MAX_POINTS_PER_SERIES: u64 = 11_000;

/// One element of an instant vector.
#[derive(Clone, Debug, PartialEq)]
pub struct InstantSample {
    pub labels: Labels,
    pub t: i64,
    pub v: f64,
}

/// One series of a range vector (or of a range query's result).
#[derive(Clone, Debug, PartialEq)]
pub struct RangeSeries {
    pub labels: Labels,
    pub samples: Vec<(i64, f64)>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum QueryValue {
    Scalar { t: i64, v: f64 },
    String { t: i64, v: String },
    Vector(Vec<InstantSample>),
    Matrix(Vec<RangeSeries>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct QueryOutput {
    pub value: QueryValue,
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The query does not parse or is not valid for this kind of query.
    #[error("{0}")]
    BadData(String),
    #[error("query timed out in {0}")]
    Timeout(&'static str),
    #[error("query processing would load too many samples into memory in {0}")]
    TooManySamples(&'static str),
    /// A runtime error with Prometheus's message, e.g. duplicate label sets.
    #[error("{0}")]
    Execution(String),
}

impl QueryError {
    /// The `errorType` of Prometheus's API for this error.
    pub fn error_type(&self) -> &'static str {
        match self {
            QueryError::BadData(_) => "bad_data",
            QueryError::Timeout(_) => "timeout",
            QueryError::TooManySamples(_) | QueryError::Execution(_) => "execution",
        }
    }
}

pub(crate) fn exec_err(msg: impl Into<String>) -> QueryError {
    QueryError::Execution(msg.into())
}

/// Formats like Go's `strconv.FormatFloat(v, 'f', -1, 64)`, as Prometheus's
/// JSON does: shortest round-trip digits, never an exponent.
pub fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v == f64::INFINITY {
        "+Inf".to_owned()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        // Rust's Display is the shortest round-trip representation and
        // never uses an exponent, exactly Go's 'f' with precision -1.
        format!("{v}")
    }
}

/// Parses a query. Registers the 2.42 functions that the parser crate no
/// longer knows (holt_winters) on first use.
pub(crate) fn parse(query: &str) -> Result<promql_parser::parser::Expr, QueryError> {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        use promql_parser::parser::value::ValueType;
        use promql_parser::parser::Function;
        // Fails only if the parser already has it built in, which is fine.
        let _ = promql_parser::parser::register_extra_functions(vec![Function::new(
            "holt_winters",
            vec![ValueType::Matrix, ValueType::Scalar, ValueType::Scalar],
            0,
            ValueType::Vector,
            false,
        )]);
    });
    // The parser is a dependency fed with user input: a panic in it must
    // not take the caller (an HTTP handler, a rule group) down.
    match std::panic::catch_unwind(|| promql_parser::parser::parse(query)) {
        Ok(Ok(expr)) => Ok(expr),
        Ok(Err(e)) => Err(QueryError::BadData(format!("parse error: {e}"))),
        Err(_) => Err(QueryError::BadData(
            "parse error: the parser failed on this query".into(),
        )),
    }
}

/// A parsed PromQL expression, kept by callers that evaluate the same
/// expression repeatedly (rules).
#[derive(Clone, Debug)]
pub struct Expr {
    ast: promql_parser::parser::Expr,
}

impl Expr {
    pub fn parse(query: &str) -> Result<Expr, QueryError> {
        parse(query).map(|ast| Expr { ast })
    }

    /// Prometheus's canonical rendering of the expression (used for
    /// `generatorURL` and the rules API).
    pub fn to_query_string(&self) -> String {
        self.ast.to_string()
    }

    /// The metric names every selector of the expression reads, or `None`
    /// when some selector is not pinned to one name (`{job="x"}`,
    /// `{__name__=~"a|b"}`): then any series may matter.
    pub fn metric_names(&self) -> Option<Vec<String>> {
        use promql_parser::parser::Expr as E;
        use promql_parser::util::{walk_expr, ExprVisitor};
        struct Names(Vec<String>, bool);
        impl ExprVisitor for Names {
            type Error = ();
            fn pre_visit(&mut self, e: &E) -> Result<bool, ()> {
                let vs = match e {
                    E::VectorSelector(vs) => vs,
                    E::MatrixSelector(ms) => &ms.vs,
                    _ => return Ok(true),
                };
                let name = vs.name.clone().or_else(|| {
                    vs.matchers.matchers.iter().find_map(|m| {
                        (m.name == "__name__"
                            && matches!(m.op, promql_parser::label::MatchOp::Equal))
                        .then(|| m.value.clone())
                    })
                });
                match name {
                    Some(n) if vs.matchers.or_matchers.is_empty() => self.0.push(n),
                    _ => self.1 = false,
                }
                Ok(true)
            }
        }
        let mut v = Names(Vec::new(), true);
        let _ = walk_expr(&mut v, &self.ast);
        v.0.sort();
        v.0.dedup();
        v.1.then_some(v.0)
    }
}

/// Evaluates PromQL queries; cheap to share, holds no per-query state.
#[derive(Clone, Debug, Default)]
pub struct Engine {
    opts: EngineOptions,
}

impl Engine {
    pub fn new(opts: EngineOptions) -> Self {
        Engine { opts }
    }

    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    /// Evaluates `query` at `ts_ms`.
    pub fn instant_query(
        &self,
        db: &dyn Queryable,
        query: &str,
        ts_ms: i64,
    ) -> Result<QueryOutput, QueryError> {
        let expr = parse(query)?;
        eval::instant(&self.opts, db, &expr, ts_ms)
    }

    /// Evaluates an expression parsed once with [`Expr::parse`] at `ts_ms`;
    /// rules use this so an evaluation cycle does not re-parse.
    pub fn instant_expr(
        &self,
        db: &dyn Queryable,
        expr: &Expr,
        ts_ms: i64,
    ) -> Result<QueryOutput, QueryError> {
        eval::instant(&self.opts, db, &expr.ast, ts_ms)
    }

    /// Evaluates `query` at every step from `start_ms` to `end_ms`; the result
    /// is always a matrix sorted by labels.
    pub fn range_query(
        &self,
        db: &dyn Queryable,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<QueryOutput, QueryError> {
        if step_ms <= 0 {
            return Err(QueryError::BadData(
                "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
            ));
        }
        if end_ms < start_ms {
            return Err(QueryError::BadData(
                "end timestamp must not be before start time".into(),
            ));
        }
        // Prometheus's API limit; it also bounds the per-step buffers.
        if (end_ms.abs_diff(start_ms) / step_ms.unsigned_abs()) > MAX_POINTS_PER_SERIES {
            return Err(QueryError::BadData(
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)".into(),
            ));
        }
        let expr = parse(query)?;
        eval::range(&self.opts, db, &expr, start_ms, end_ms, step_ms)
    }
}

#[cfg(test)]
mod tests;

/// Parses a series selector (`match[]` of the series and label APIs) into
/// store matchers. Prometheus refuses selectors that match everything, such
/// as `{job=~".*"}`, because they would list every series.
pub fn parse_selector(s: &str) -> Result<Vec<Matcher>, QueryError> {
    let expr = parse(s)?;
    let promql_parser::parser::Expr::VectorSelector(vs) = expr else {
        return Err(QueryError::BadData(format!(
            "invalid parameter \"match[]\": {s:?} is not a series selector"
        )));
    };
    let matchers = eval::to_matchers(&vs)?;
    if matchers.iter().all(|m| m.matches("")) {
        return Err(QueryError::BadData(
            "invalid parameter \"match[]\": match[] must contain at least one non-empty matcher"
                .into(),
        ));
    }
    Ok(matchers)
}

/// Parses label matchers written as in PromQL (`severity=~"warn|crit",
/// cluster!="test"`), as alert filters use them: unlike [`parse_selector`],
/// matchers that match the empty string are fine.
pub fn parse_label_matchers(s: &str) -> Result<Vec<Matcher>, QueryError> {
    // The parser refuses a selector whose every matcher matches "" (PromQL's
    // rule for queries); a leading placeholder that cannot match "" lifts
    // that, and is dropped again.
    const PLACEHOLDER: &str = "__homeostat_filter__";
    let text = format!("{{{PLACEHOLDER}=~\".+\", {s}}}");
    let expr = parse(&text)?;
    let promql_parser::parser::Expr::VectorSelector(vs) = expr else {
        return Err(QueryError::BadData(format!(
            "{s:?} is not a list of label matchers"
        )));
    };
    let mut m = eval::to_matchers(&vs)?;
    m.retain(|m| m.name != PLACEHOLDER);
    Ok(m)
}
