//! The evaluator: walks a parsed PromQL expression and computes its value at
//! every step of an instant or range query.
//!
//! Owns selector evaluation (lookback, staleness, `offset`, `@`), subqueries,
//! binary operators with vector matching, aggregations and the dispatch of
//! function calls (their arithmetic lives in `functions`). Must not parse
//! query strings, speak HTTP or write to the store: data comes only from
//! [`Queryable::select`].
//!
//! Every instant-vector-typed node evaluates to a `Matrix` whose points sit
//! exactly on the step timestamps of the current evaluator (like Prometheus's
//! `rangeEval`); scalars evaluate to one value per step. A subquery runs a
//! child evaluator with its own start, end and step. Errors that Prometheus
//! raises with `panic`/`errorf` are returned as [`QueryError`]s, with its
//! texts.
//!
//! Where Prometheus 2.42's own engine departs from the per-step semantics
//! (its step-invariance analysis around `@`, see `step_invariant`), the
//! departure is reproduced on purpose: the goal is identical answers, and
//! differential runs against the real binary check it.

use std::cell::Cell;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use promql_parser::label::MatchOp as PMatchOp;
use promql_parser::parser::token::{
    T_ADD, T_ATAN2, T_AVG, T_BOTTOMK, T_COUNT, T_COUNT_VALUES, T_DIV, T_EQLC, T_GROUP, T_GTE,
    T_GTR, T_LAND, T_LOR, T_LSS, T_LTE, T_LUNLESS, T_MAX, T_MIN, T_MOD, T_MUL, T_NEQ, T_POW,
    T_QUANTILE, T_STDDEV, T_STDVAR, T_SUB, T_SUM, T_TOPK,
};
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{
    AggregateExpr, AtModifier, BinaryExpr, Call, Expr, LabelModifier, MatrixSelector, Offset,
    SubqueryExpr, VectorMatchCardinality, VectorSelector,
};
use rustc_hash::{FxHashMap, FxHashSet};

use super::functions::{self, WinCtx};
use super::{
    exec_err, EngineOptions, InstantSample, QueryError, QueryOutput, QueryValue, Queryable,
    RangeSeries, DEFAULT_SUBQUERY_STEP_MS,
};
use crate::store::{is_stale_nan, Label, Labels, MatchOp, Matcher, METRIC_NAME};

pub(crate) type Matrix = Vec<RangeSeries>;

type Result<T> = std::result::Result<T, QueryError>;

/// Value of an evaluated node over all steps of its evaluator.
enum Val {
    /// Instant-vector-typed: points exactly at step timestamps.
    Vector(Matrix),
    /// One value per step.
    Scalar(Vec<f64>),
    Str(String),
}

/// Range-vector argument: raw samples (stale markers removed) plus how to
/// cut the window at each step.
struct RangeArg {
    series: Matrix,
    range: i64,
    offset: i64,
    at: Option<i64>,
}

/// Per-query state shared by the evaluator and its subquery children.
struct Ctx<'a> {
    opts: &'a EngineOptions,
    db: &'a dyn Queryable,
    deadline: Option<Instant>,
    samples: Cell<usize>,
    /// Query start and end, for `@ start()` / `@ end()`.
    q_start: i64,
    q_end: i64,
}

#[derive(Clone, Copy)]
struct Ev<'a> {
    ctx: &'a Ctx<'a>,
    start: i64,
    end: i64,
    interval: i64,
    /// Inside an `@` subquery: the last sample time its selectors loaded
    /// data for (Prometheus selects data once per query from a static
    /// analysis, which matters only when `@` windows slide; see
    /// `range_function`).
    data_max: Option<i64>,
}

fn dup_labelset_err() -> QueryError {
    exec_err("vector cannot contain metrics with the same labelset")
}

fn new_ctx<'a>(opts: &'a EngineOptions, db: &'a dyn Queryable, s: i64, e: i64) -> Ctx<'a> {
    Ctx {
        opts,
        db,
        deadline: Instant::now().checked_add(opts.timeout),
        samples: Cell::new(0),
        q_start: s,
        q_end: e,
    }
}

pub(super) fn instant(
    opts: &EngineOptions,
    db: &dyn Queryable,
    expr: &Expr,
    ts: i64,
) -> Result<QueryOutput> {
    let ctx = new_ctx(opts, db, ts, ts);
    let ev = Ev {
        ctx: &ctx,
        start: ts,
        end: ts,
        interval: 1,
        data_max: None,
    };
    let value = if expr.value_type() == ValueType::Matrix {
        let ra = ev.range_arg(unwrap_paren(expr))?;
        let mut out = Vec::with_capacity(ra.series.len());
        for s in ra.series {
            let reft = ra.at.unwrap_or(ts).saturating_sub(ra.offset);
            let samples: Vec<(i64, f64)> = s
                .samples
                .iter()
                .filter(|p| p.0 >= reft.saturating_sub(ra.range) && p.0 <= reft)
                .copied()
                .collect();
            if !samples.is_empty() {
                out.push(RangeSeries {
                    labels: s.labels,
                    samples,
                });
            }
        }
        QueryValue::Matrix(out)
    } else {
        match ev.eval(expr)? {
            Val::Vector(m) => QueryValue::Vector(
                m.into_iter()
                    .filter_map(|s| {
                        s.samples.first().map(|&(_, v)| InstantSample {
                            labels: s.labels,
                            t: ts,
                            v,
                        })
                    })
                    .collect(),
            ),
            Val::Scalar(v) => QueryValue::Scalar {
                t: ts,
                v: v.first().copied().unwrap_or(f64::NAN),
            },
            Val::Str(s) => QueryValue::String { t: ts, v: s },
        }
    };
    Ok(QueryOutput {
        value,
        warnings: Vec::new(),
    })
}

pub(super) fn range(
    opts: &EngineOptions,
    db: &dyn Queryable,
    expr: &Expr,
    start: i64,
    end: i64,
    step: i64,
) -> Result<QueryOutput> {
    match expr.value_type() {
        ValueType::Matrix => {
            return Err(QueryError::BadData(
                "invalid expression type \"range vector\" for range query, must be Scalar or instant Vector".into(),
            ))
        }
        ValueType::String => {
            return Err(QueryError::BadData(
                "invalid expression type \"string\" for range query, must be Scalar or instant Vector".into(),
            ))
        }
        _ => {}
    }
    let ctx = new_ctx(opts, db, start, end);
    let ev = Ev {
        ctx: &ctx,
        start,
        end,
        interval: step,
        data_max: None,
    };
    let value = match ev.eval(expr)? {
        Val::Vector(mut m) => {
            m.retain(|s| !s.samples.is_empty());
            m.sort_by(|a, b| a.labels.cmp(&b.labels));
            QueryValue::Matrix(m)
        }
        Val::Scalar(v) => QueryValue::Matrix(vec![RangeSeries {
            labels: Labels::default(),
            samples: v
                .into_iter()
                .enumerate()
                .map(|(i, v)| (ev.ts(i), v))
                .collect(),
        }]),
        Val::Str(_) => return Err(exec_err("string result in range query")),
    };
    Ok(QueryOutput {
        value,
        warnings: Vec::new(),
    })
}

pub(super) fn unwrap_paren(mut e: &Expr) -> &Expr {
    while let Expr::Paren(p) = e {
        e = &p.expr;
    }
    e
}

fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Some(Offset::Neg(d)) => -i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
    }
}

fn system_time_ms(t: &SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

pub(crate) fn to_matchers(vs: &VectorSelector) -> Result<Vec<Matcher>> {
    if !vs.matchers.or_matchers.is_empty() {
        return Err(QueryError::BadData(
            "'or' inside label matchers is not supported".into(),
        ));
    }
    let mut out = Vec::with_capacity(vs.matchers.matchers.len() + 1);
    if let Some(name) = &vs.name {
        out.push(Matcher::equal(METRIC_NAME, name.as_str()));
    }
    for m in &vs.matchers.matchers {
        let op = match m.op {
            PMatchOp::Equal => MatchOp::Equal,
            PMatchOp::NotEqual => MatchOp::NotEqual,
            PMatchOp::Re(_) => MatchOp::RegexMatch,
            PMatchOp::NotRe(_) => MatchOp::RegexNoMatch,
        };
        out.push(
            Matcher::new(op, m.name.as_str(), m.value.as_str())
                .map_err(|e| QueryError::BadData(e.to_string()))?,
        );
    }
    Ok(out)
}

/// Labels without `__name__`.
pub(super) fn drop_name(l: &Labels) -> Labels {
    if l.get(METRIC_NAME).is_none() {
        return l.clone();
    }
    Labels::new(
        l.iter()
            .filter(|x| &*x.name != METRIC_NAME)
            .cloned()
            .collect(),
    )
}

fn keep_only(l: &Labels, names: &[String]) -> Labels {
    Labels::new(
        l.iter()
            .filter(|x| names.iter().any(|n| **n == *x.name))
            .cloned()
            .collect(),
    )
}

/// Labels without `names` and without `__name__`.
fn drop_labels_and_name(l: &Labels, names: &[String]) -> Labels {
    Labels::new(
        l.iter()
            .filter(|x| &*x.name != METRIC_NAME && !names.iter().any(|n| **n == *x.name))
            .cloned()
            .collect(),
    )
}

/// Merges series that ended up with the same labels (e.g. after dropping
/// the metric name); two points at the same step are Prometheus's
/// "same labelset" error.
fn merge_same_labels(m: Matrix) -> Result<Matrix> {
    let mut idx: FxHashMap<Labels, usize> = FxHashMap::default();
    idx.reserve(m.len());
    let mut out: Matrix = Vec::with_capacity(m.len());
    for s in m {
        if s.samples.is_empty() {
            continue;
        }
        match idx.get(&s.labels) {
            None => {
                idx.insert(s.labels.clone(), out.len());
                out.push(s);
            }
            Some(&i) => {
                let dst = &mut out[i];
                let mut merged = Vec::with_capacity(dst.samples.len() + s.samples.len());
                let (a, b) = (&dst.samples, &s.samples);
                let (mut x, mut y) = (0, 0);
                while x < a.len() || y < b.len() {
                    if y >= b.len() || (x < a.len() && a[x].0 < b[y].0) {
                        merged.push(a[x]);
                        x += 1;
                    } else if x >= a.len() || b[y].0 < a[x].0 {
                        merged.push(b[y]);
                        y += 1;
                    } else {
                        return Err(dup_labelset_err());
                    }
                }
                dst.samples = merged;
            }
        }
    }
    Ok(out)
}

/// Collects per-step output samples into series, in first-seen order.
#[derive(Default)]
struct OutAcc {
    idx: FxHashMap<Labels, usize>,
    series: Matrix,
}

/// Sentinel for "no output series yet" in per-input caches of [`OutAcc`]
/// indexes, which spare hashing label sets at every step.
const NO_OUT: usize = usize::MAX;

impl OutAcc {
    /// Index of the output series with these labels, created if needed.
    /// Callers push to a new series right away, which keeps instant-query
    /// output in the order Prometheus produces it.
    fn index_of(&mut self, labels: &Labels) -> usize {
        if let Some(&i) = self.idx.get(labels) {
            return i;
        }
        let i = self.series.len();
        self.idx.insert(labels.clone(), i);
        self.series.push(RangeSeries {
            labels: labels.clone(),
            samples: Vec::new(),
        });
        i
    }

    /// Index through a cache slot (`NO_OUT` when not yet known).
    fn cached_index(&mut self, slot: &mut usize, labels: &Labels) -> usize {
        if *slot == NO_OUT {
            *slot = self.index_of(labels);
        }
        *slot
    }

    /// Whether output series `i` already has a point at `t`.
    fn has_point(&self, i: usize, t: i64) -> bool {
        self.series[i].samples.last().is_some_and(|p| p.0 == t)
    }

    fn push_at(&mut self, i: usize, t: i64, v: f64) -> Result<()> {
        if self.has_point(i, t) {
            return Err(dup_labelset_err());
        }
        self.series[i].samples.push((t, v));
        Ok(())
    }

    fn finish(mut self) -> Matrix {
        self.series.retain(|s| !s.samples.is_empty());
        self.series
    }
}

/// Walks a matrix step by step, yielding `(series index, value)` of the
/// series that have a point at each step.
struct StepCursor {
    pos: Vec<usize>,
}

impl StepCursor {
    fn new(m: &Matrix) -> Self {
        StepCursor {
            pos: vec![0; m.len()],
        }
    }

    fn at(&mut self, m: &Matrix, ts: i64, out: &mut Vec<(usize, f64)>) {
        out.clear();
        for (i, s) in m.iter().enumerate() {
            let p = self.pos[i];
            if let Some(&(t, v)) = s.samples.get(p) {
                if t == ts {
                    out.push((i, v));
                    self.pos[i] = p + 1;
                }
            }
        }
    }
}

/// Interns label sets to small ids so per-step matching hashes integers.
#[derive(Default)]
struct Interner {
    ids: FxHashMap<Labels, u32>,
}

impl Interner {
    fn id(&mut self, l: Labels) -> u32 {
        let n = self.ids.len() as u32;
        *self.ids.entry(l).or_insert(n)
    }
}

fn is_label_name(s: &str) -> bool {
    let mut c = s.chars();
    match c.next() {
        Some(f) if f.is_ascii_alphabetic() || f == '_' => {}
        _ => return false,
    }
    c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

fn btof(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

fn is_comparison(op: u16) -> bool {
    matches!(op, T_EQLC | T_NEQ | T_GTR | T_LSS | T_GTE | T_LTE)
}

fn drops_name(op: u16) -> bool {
    matches!(op, T_ADD | T_SUB | T_MUL | T_DIV | T_POW | T_MOD)
}

fn scalar_binop(op: u16, l: f64, r: f64) -> f64 {
    match op {
        T_ADD => l + r,
        T_SUB => l - r,
        T_MUL => l * r,
        T_DIV => l / r,
        T_POW => functions::go_pow(l, r),
        T_MOD => l % r,
        T_EQLC => btof(l == r),
        T_NEQ => btof(l != r),
        T_GTR => btof(l > r),
        T_LSS => btof(l < r),
        T_GTE => btof(l >= r),
        T_LTE => btof(l <= r),
        T_ATAN2 => l.atan2(r),
        _ => f64::NAN,
    }
}

/// Value and whether to keep the element (comparisons filter).
fn vector_elem_binop(op: u16, l: f64, r: f64) -> (f64, bool) {
    match op {
        T_EQLC => (l, l == r),
        T_NEQ => (l, l != r),
        T_GTR => (l, l > r),
        T_LSS => (l, l < r),
        T_GTE => (l, l >= r),
        T_LTE => (l, l <= r),
        _ => (scalar_binop(op, l, r), true),
    }
}

impl<'a> Ev<'a> {
    fn steps(&self) -> usize {
        if self.end < self.start {
            return 0;
        }
        usize::try_from(self.end.abs_diff(self.start) / self.interval.unsigned_abs())
            .unwrap_or(usize::MAX)
            .saturating_add(1)
    }

    fn ts(&self, i: usize) -> i64 {
        self.start + i as i64 * self.interval
    }

    fn step_of(&self, ts: i64) -> usize {
        ((ts - self.start) / self.interval) as usize
    }

    /// `absent`/`absent_over_time`: 1 at every step where `input` has no
    /// sample, labelled from the equality matchers of `arg`.
    fn absent(&self, input: &[RangeSeries], steps: usize, arg: &Expr) -> Val {
        let mut present = vec![false; steps];
        for s in input {
            for p in &s.samples {
                present[self.step_of(p.0)] = true;
            }
        }
        let samples: Vec<(i64, f64)> = (0..steps)
            .filter(|&i| !present[i])
            .map(|i| (self.ts(i), 1.0))
            .collect();
        if samples.is_empty() {
            return Val::Vector(Vec::new());
        }
        Val::Vector(vec![RangeSeries {
            labels: absent_labels(arg),
            samples,
        }])
    }

    fn check_timeout(&self) -> Result<()> {
        if let Some(d) = self.ctx.deadline {
            if Instant::now() > d {
                return Err(QueryError::Timeout("expression evaluation"));
            }
        }
        Ok(())
    }

    fn add_samples(&self, n: usize) -> Result<()> {
        let cur = self.ctx.samples.get() + n;
        if cur > self.ctx.opts.max_samples {
            return Err(QueryError::TooManySamples("query execution"));
        }
        self.ctx.samples.set(cur);
        Ok(())
    }

    fn sub_samples(&self, n: usize) {
        self.ctx
            .samples
            .set(self.ctx.samples.get().saturating_sub(n));
    }

    fn at_ms(&self, at: &Option<AtModifier>) -> Option<i64> {
        match at {
            None => None,
            Some(AtModifier::Start) => Some(self.ctx.q_start),
            Some(AtModifier::End) => Some(self.ctx.q_end),
            Some(AtModifier::At(t)) => Some(system_time_ms(t)),
        }
    }

    fn eval(&self, e: &Expr) -> Result<Val> {
        self.check_timeout()?;
        match e {
            Expr::NumberLiteral(n) => Ok(Val::Scalar(vec![n.val; self.steps()])),
            Expr::StringLiteral(s) => Ok(Val::Str(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr),
            Expr::Unary(u) => match self.eval(&u.expr)? {
                Val::Scalar(v) => Ok(Val::Scalar(v.into_iter().map(|x| -x).collect())),
                Val::Vector(m) => {
                    let m = m
                        .into_iter()
                        .map(|s| RangeSeries {
                            labels: drop_name(&s.labels),
                            samples: s.samples.into_iter().map(|(t, v)| (t, -v)).collect(),
                        })
                        .collect();
                    Ok(Val::Vector(merge_same_labels(m)?))
                }
                Val::Str(_) => Err(exec_err("unary minus on a string")),
            },
            Expr::VectorSelector(vs) => Ok(Val::Vector(self.vector_selector(vs, false)?)),
            Expr::MatrixSelector(_) | Expr::Subquery(_) => Err(exec_err(
                "range vector cannot be evaluated as an instant value here",
            )),
            Expr::Binary(b) => self.binary(b),
            Expr::Aggregate(a) => self.aggregate(a),
            Expr::Call(c) => self.call(c),
            Expr::Extension(_) => Err(exec_err("extension expressions are not supported")),
        }
    }

    fn eval_vector(&self, e: &Expr) -> Result<Matrix> {
        match self.eval(e)? {
            Val::Vector(m) => Ok(m),
            _ => Err(exec_err("expected instant vector")),
        }
    }

    fn eval_scalar(&self, e: &Expr) -> Result<Vec<f64>> {
        match self.eval(e)? {
            Val::Scalar(v) => Ok(v),
            _ => Err(exec_err("expected scalar")),
        }
    }

    fn eval_string(&self, e: &Expr) -> Result<String> {
        match self.eval(e)? {
            Val::Str(s) => Ok(s),
            _ => Err(exec_err("expected string")),
        }
    }

    /// Reference-time bounds `(first, last)` of a selector over all steps.
    fn ref_bounds(&self, at: Option<i64>, off: i64) -> (i64, i64) {
        match at {
            Some(t) => (t.saturating_sub(off), t.saturating_sub(off)),
            None => (self.start.saturating_sub(off), self.end.saturating_sub(off)),
        }
    }

    /// Last sample time a selector may load.
    fn load_max(&self, at: Option<i64>, off: i64, hi: i64) -> i64 {
        match (at, self.data_max) {
            (None, Some(m)) => hi.min(m.saturating_sub(off)),
            _ => hi,
        }
    }

    /// Instant vector selector. With `want_ts` the values are the sample
    /// timestamps in seconds (for `timestamp()`).
    fn vector_selector(&self, vs: &VectorSelector, want_ts: bool) -> Result<Matrix> {
        let matchers = to_matchers(vs)?;
        let off = offset_ms(&vs.offset);
        let at = self.at_ms(&vs.at);
        let lookback = self.ctx.opts.lookback_delta_ms;
        let (lo, hi) = self.ref_bounds(at, off);
        let data = self.ctx.db.select(
            &matchers,
            lo.saturating_sub(lookback),
            self.load_max(at, off, hi),
        );
        let steps = self.steps();
        let mut out = Vec::with_capacity(data.len());
        for s in data {
            self.check_timeout()?;
            let mut pts = Vec::with_capacity(steps.min(s.samples.len() * 4 + 1));
            let mut j = 0usize;
            for i in 0..steps {
                let ts = self.ts(i);
                let reft = at.unwrap_or(ts).saturating_sub(off);
                while j < s.samples.len() && s.samples[j].0 <= reft {
                    j += 1;
                }
                if j > 0 {
                    let (t, v) = s.samples[j - 1];
                    if t >= reft.saturating_sub(lookback) && !is_stale_nan(v) {
                        pts.push((ts, if want_ts { t as f64 / 1000.0 } else { v }));
                    }
                }
            }
            self.add_samples(pts.len())?;
            if !pts.is_empty() {
                out.push(RangeSeries {
                    labels: s.labels,
                    samples: pts,
                });
            }
        }
        Ok(out)
    }

    fn range_arg(&self, e: &Expr) -> Result<RangeArg> {
        match e {
            Expr::MatrixSelector(ms) => self.matrix_selector(ms),
            Expr::Subquery(sq) => self.subquery(sq, 0),
            _ => Err(exec_err("expected range vector")),
        }
    }

    fn matrix_selector(&self, ms: &MatrixSelector) -> Result<RangeArg> {
        let vs = &ms.vs;
        let matchers = to_matchers(vs)?;
        let off = offset_ms(&vs.offset);
        let at = self.at_ms(&vs.at);
        let range = i64::try_from(ms.range.as_millis()).unwrap_or(i64::MAX);
        let (lo, hi) = self.ref_bounds(at, off);
        let mut data = self.ctx.db.select(
            &matchers,
            lo.saturating_sub(range),
            self.load_max(at, off, hi),
        );
        let series = data
            .drain(..)
            .map(|mut s| {
                s.samples.retain(|p| !is_stale_nan(p.1));
                RangeSeries {
                    labels: s.labels,
                    samples: s.samples,
                }
            })
            .collect();
        Ok(RangeArg {
            series,
            range,
            offset: off,
            at,
        })
    }

    /// Subquery; `extend_ms` lengthens the inner evaluation past its `@`
    /// time (see the `predict_linear` quirk in `range_function`).
    fn subquery(&self, sq: &SubqueryExpr, extend_ms: i64) -> Result<RangeArg> {
        let off = offset_ms(&sq.offset);
        let at = self.at_ms(&sq.at);
        let range = i64::try_from(sq.range.as_millis()).unwrap_or(i64::MAX);
        let step = match sq.step {
            // Below 1ms (or 0) means "default", never a zero step.
            Some(d) if d.as_millis() > 0 => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            _ => DEFAULT_SUBQUERY_STEP_MS,
        };
        let (lo, hi) = self.ref_bounds(at, off);
        // First multiple of the step at or after lo - range (absolute alignment).
        let first = lo.saturating_sub(range);
        let rem = first.rem_euclid(step);
        let start = if rem == 0 {
            first
        } else {
            first.saturating_add(step - rem)
        };
        let child = Ev {
            ctx: self.ctx,
            start,
            end: hi.saturating_add(extend_ms),
            interval: step,
            data_max: match at {
                Some(t) => Some(t.saturating_sub(off)),
                None => self.data_max.map(|m| m.saturating_sub(off)),
            },
        };
        if child.steps() > self.ctx.opts.max_samples {
            return Err(QueryError::TooManySamples("query execution"));
        }
        let series = if start > hi {
            Vec::new()
        } else {
            match child.eval(&sq.expr)? {
                Val::Vector(m) => m,
                Val::Scalar(v) => vec![RangeSeries {
                    labels: Labels::default(),
                    samples: v
                        .into_iter()
                        .enumerate()
                        .map(|(i, v)| (child.ts(i), v))
                        .collect(),
                }],
                Val::Str(_) => return Err(exec_err("subquery of a string")),
            }
        };
        Ok(RangeArg {
            series,
            range,
            offset: off,
            at,
        })
    }

    // ------------------------------------------------------------ binary

    fn binary(&self, b: &BinaryExpr) -> Result<Val> {
        let op = b.op.id();
        if b.modifier
            .as_ref()
            .is_some_and(|m| m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some())
        {
            // Newer PromQL than 2.42, which the parser crate accepts.
            return Err(QueryError::BadData(
                "fill modifiers are not supported".into(),
            ));
        }
        let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
        let lt = b.lhs.value_type();
        let rt = b.rhs.value_type();
        match (lt, rt) {
            (ValueType::Scalar, ValueType::Scalar) => {
                let l = self.eval_scalar(&b.lhs)?;
                let r = self.eval_scalar(&b.rhs)?;
                Ok(Val::Scalar(
                    l.into_iter()
                        .zip(r)
                        .map(|(l, r)| scalar_binop(op, l, r))
                        .collect(),
                ))
            }
            (ValueType::Vector, ValueType::Scalar) => {
                let m = self.eval_vector(&b.lhs)?;
                let s = self.eval_scalar(&b.rhs)?;
                self.vector_scalar(op, m, &s, false, return_bool)
            }
            (ValueType::Scalar, ValueType::Vector) => {
                let s = self.eval_scalar(&b.lhs)?;
                let m = self.eval_vector(&b.rhs)?;
                self.vector_scalar(op, m, &s, true, return_bool)
            }
            (ValueType::Vector, ValueType::Vector) => {
                let l = self.eval_vector(&b.lhs)?;
                let r = self.eval_vector(&b.rhs)?;
                self.vector_vector(b, op, return_bool, l, r)
            }
            _ => Err(QueryError::BadData(format!(
                "binary operator on {lt} and {rt} is not supported"
            ))),
        }
    }

    fn vector_scalar(
        &self,
        op: u16,
        m: Matrix,
        s: &[f64],
        swap: bool,
        return_bool: bool,
    ) -> Result<Val> {
        let drop = drops_name(op) || return_bool;
        let mut out = Vec::with_capacity(m.len());
        for series in m {
            let mut pts = Vec::with_capacity(series.samples.len());
            for (t, v) in series.samples {
                let sv = s.get(self.step_of(t)).copied().unwrap_or(f64::NAN);
                let (lv, rv) = if swap { (sv, v) } else { (v, sv) };
                let (mut value, mut keep) = vector_elem_binop(op, lv, rv);
                if is_comparison(op) && swap {
                    value = rv;
                }
                if return_bool {
                    value = btof(keep);
                    keep = true;
                }
                if keep {
                    pts.push((t, value));
                }
            }
            if !pts.is_empty() {
                out.push(RangeSeries {
                    labels: if drop {
                        drop_name(&series.labels)
                    } else {
                        series.labels
                    },
                    samples: pts,
                });
            }
        }
        if drop {
            out = merge_same_labels(out)?;
        }
        Ok(Val::Vector(out))
    }

    fn vector_vector(
        &self,
        b: &BinaryExpr,
        op: u16,
        return_bool: bool,
        lhs: Matrix,
        rhs: Matrix,
    ) -> Result<Val> {
        let (on, names): (bool, Vec<String>) =
            match b.modifier.as_ref().and_then(|m| m.matching.as_ref()) {
                Some(LabelModifier::Include(l)) => (true, l.labels.clone()),
                Some(LabelModifier::Exclude(l)) => (false, l.labels.clone()),
                None => (false, Vec::new()),
            };
        let card = b
            .modifier
            .as_ref()
            .map(|m| m.card.clone())
            .unwrap_or(VectorMatchCardinality::OneToOne);
        let sig = |l: &Labels| {
            if on {
                keep_only(l, &names)
            } else {
                drop_labels_and_name(l, &names)
            }
        };
        let mut interner = Interner::default();
        let lsig: Vec<u32> = lhs.iter().map(|s| interner.id(sig(&s.labels))).collect();
        let rsig: Vec<u32> = rhs.iter().map(|s| interner.id(sig(&s.labels))).collect();

        let mut acc = OutAcc::default();
        let mut lc = StepCursor::new(&lhs);
        let mut rc = StepCursor::new(&rhs);
        let mut lv = Vec::new();
        let mut rv = Vec::new();
        let mut set: FxHashSet<u32> = FxHashSet::default();
        let mut one_side: FxHashMap<u32, (usize, f64)> = FxHashMap::default();
        let mut matched: FxHashSet<u32> = FxHashSet::default();
        // (many, one) input pair -> output series; per output series the
        // match group that wrote it last.
        let mut metric_cache: FxHashMap<(usize, usize), usize> = FxHashMap::default();
        let mut last_sig: Vec<u32> = Vec::new();
        let mut lout = vec![NO_OUT; lhs.len()];
        let mut rout = vec![NO_OUT; rhs.len()];
        let include: Vec<String> = match &card {
            VectorMatchCardinality::ManyToOne(l) | VectorMatchCardinality::OneToMany(l) => {
                l.labels.clone()
            }
            _ => Vec::new(),
        };
        let one_to_many = matches!(card, VectorMatchCardinality::OneToMany(_));
        let one_to_one = matches!(card, VectorMatchCardinality::OneToOne);

        for i in 0..self.steps() {
            self.check_timeout()?;
            let ts = self.ts(i);
            lc.at(&lhs, ts, &mut lv);
            rc.at(&rhs, ts, &mut rv);
            match op {
                T_LAND => {
                    if lv.is_empty() || rv.is_empty() {
                        continue;
                    }
                    set.clear();
                    set.extend(rv.iter().map(|&(j, _)| rsig[j]));
                    for &(j, v) in &lv {
                        if set.contains(&lsig[j]) {
                            let o = acc.cached_index(&mut lout[j], &lhs[j].labels);
                            acc.push_at(o, ts, v)?;
                        }
                    }
                }
                T_LOR => {
                    set.clear();
                    for &(j, v) in &lv {
                        set.insert(lsig[j]);
                        let o = acc.cached_index(&mut lout[j], &lhs[j].labels);
                        acc.push_at(o, ts, v)?;
                    }
                    for &(j, v) in &rv {
                        if !set.contains(&rsig[j]) {
                            let o = acc.cached_index(&mut rout[j], &rhs[j].labels);
                            acc.push_at(o, ts, v)?;
                        }
                    }
                }
                T_LUNLESS => {
                    set.clear();
                    set.extend(rv.iter().map(|&(j, _)| rsig[j]));
                    for &(j, v) in &lv {
                        if !set.contains(&lsig[j]) {
                            let o = acc.cached_index(&mut lout[j], &lhs[j].labels);
                            acc.push_at(o, ts, v)?;
                        }
                    }
                }
                _ => {
                    // Prometheus short-circuits before looking for
                    // duplicates: nothing can match.
                    if lv.is_empty() || rv.is_empty() {
                        continue;
                    }
                    // "many" side samples, "one" side samples.
                    let (many, one, many_m, one_m, many_sig, one_sig) = if one_to_many {
                        (&rv, &lv, &rhs, &lhs, &rsig, &lsig)
                    } else {
                        (&lv, &rv, &lhs, &rhs, &lsig, &rsig)
                    };
                    one_side.clear();
                    for &(j, v) in one.iter() {
                        if let Some(&(dj, _)) = one_side.get(&one_sig[j]) {
                            let side = if one_to_many { "left" } else { "right" };
                            let ml = if on {
                                keep_only(&one_m[j].labels, &names)
                            } else {
                                drop_labels_and_name(&one_m[j].labels, &names)
                            };
                            return Err(exec_err(format!(
                                "found duplicate series for the match group {} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                                go_labels(&ml),
                                go_labels(&one_m[j].labels),
                                go_labels(&one_m[dj].labels)
                            )));
                        }
                        one_side.insert(one_sig[j], (j, v));
                    }
                    matched.clear();
                    for &(j, v) in many.iter() {
                        let sg = many_sig[j];
                        let Some(&(oj, ov)) = one_side.get(&sg) else {
                            continue;
                        };
                        let (vl, vr) = if one_to_many { (ov, v) } else { (v, ov) };
                        let (mut value, keep) = vector_elem_binop(op, vl, vr);
                        if return_bool {
                            value = btof(keep);
                        } else if !keep {
                            continue;
                        }
                        if one_to_one && !matched.insert(sg) {
                            return Err(exec_err("multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"));
                        }
                        let o = match metric_cache.get(&(j, oj)) {
                            Some(&o) => o,
                            None => {
                                let mut m = result_metric(
                                    &many_m[j].labels,
                                    &one_m[oj].labels,
                                    op,
                                    on,
                                    &names,
                                    one_to_one,
                                    &include,
                                );
                                if return_bool {
                                    m = drop_name(&m);
                                }
                                let o = acc.index_of(&m);
                                metric_cache.insert((j, oj), o);
                                o
                            }
                        };
                        if last_sig.len() <= o {
                            last_sig.resize(o + 1, u32::MAX);
                        }
                        if !one_to_one && acc.has_point(o, ts) && last_sig[o] == sg {
                            return Err(exec_err("multiple matches for labels: grouping labels must ensure unique matches"));
                        }
                        last_sig[o] = sg;
                        acc.push_at(o, ts, value)?;
                    }
                }
            }
        }
        Ok(Val::Vector(acc.finish()))
    }

    // ------------------------------------------------------- aggregation

    fn aggregate(&self, a: &AggregateExpr) -> Result<Val> {
        let op = a.op.id();
        let (without, mut grouping): (bool, Vec<String>) = match &a.modifier {
            None => (false, Vec::new()),
            Some(LabelModifier::Include(l)) => (false, l.labels.clone()),
            Some(LabelModifier::Exclude(l)) => (true, l.labels.clone()),
        };
        let mut params: Option<Vec<f64>> = None;
        let mut value_label: Option<String> = None;
        match op {
            T_TOPK | T_BOTTOMK | T_QUANTILE => {
                let p = a
                    .param
                    .as_ref()
                    .ok_or_else(|| QueryError::BadData("missing aggregation parameter".into()))?;
                let mut v = self.eval_scalar(p)?;
                // Prometheus 2.42 ignores the parameter when deciding that an
                // aggregation is step-invariant, and then evaluates the whole
                // aggregation, parameter included, at the first step only.
                if step_invariant(&a.expr) && !step_invariant(p) {
                    if let Some(&first) = v.first() {
                        v.iter_mut().for_each(|x| *x = first);
                    }
                }
                params = Some(v);
            }
            T_COUNT_VALUES => {
                let p = a
                    .param
                    .as_ref()
                    .ok_or_else(|| QueryError::BadData("missing aggregation parameter".into()))?;
                let s = self.eval_string(p)?;
                if !is_label_name(&s) {
                    return Err(exec_err(format!("invalid label name \"{s}\"")));
                }
                if !without {
                    grouping.push(s.clone());
                }
                value_label = Some(s);
            }
            T_SUM | T_AVG | T_COUNT | T_MIN | T_MAX | T_GROUP | T_STDDEV | T_STDVAR => {}
            _ => {
                return Err(QueryError::BadData(format!(
                    "aggregation {} is not supported",
                    a.op
                )))
            }
        }
        let m = self.eval_vector(&a.expr)?;
        let group_labels = |l: &Labels| {
            if without {
                drop_labels_and_name(l, &grouping)
            } else if grouping.is_empty() {
                Labels::default()
            } else {
                keep_only(l, &grouping)
            }
        };
        let mut interner = Interner::default();
        let mut gl: Vec<Labels> = Vec::new();
        let series_group: Vec<u32> = if value_label.is_some() {
            Vec::new()
        } else {
            m.iter()
                .map(|s| {
                    let l = group_labels(&s.labels);
                    let n = interner.ids.len();
                    let id = interner.id(l.clone());
                    if id as usize == n {
                        gl.push(l);
                    }
                    id
                })
                .collect()
        };

        let mut acc = OutAcc::default();
        let mut cur = StepCursor::new(&m);
        let mut vec = Vec::new();
        let mut groups: Vec<Group> = Vec::new();
        // Group key -> index into `groups` at this step (NO_OUT if none).
        let mut gidx: Vec<usize> = vec![NO_OUT; gl.len()];
        let mut cv_idx: FxHashMap<Labels, usize> = FxHashMap::default();
        let mut gout = vec![NO_OUT; gl.len()];
        let mut sout = vec![NO_OUT; m.len()];
        for i in 0..self.steps() {
            self.check_timeout()?;
            let ts = self.ts(i);
            cur.at(&m, ts, &mut vec);
            let param = params
                .as_ref()
                .map_or(0.0, |p| p.get(i).copied().unwrap_or(f64::NAN));
            let mut k: i64 = 0;
            if op == T_TOPK || op == T_BOTTOMK {
                if !(param <= i64::MAX as f64 && param >= i64::MIN as f64) {
                    return Err(exec_err(format!(
                        "Scalar value {} overflows int64",
                        super::format_float(param)
                    )));
                }
                k = param as i64;
                if k < 1 {
                    continue;
                }
            }
            if vec.is_empty() {
                continue;
            }
            cv_idx.clear();
            for &(j, v) in &vec {
                let gi = if let Some(vl) = &value_label {
                    let mut b = m[j].labels.builder();
                    b.set(vl, super::format_float(v));
                    let l = group_labels(&b.build());
                    match cv_idx.get(&l) {
                        Some(&g) => Some(g),
                        None => {
                            cv_idx.insert(l.clone(), groups.len());
                            groups.push(Group::new(l, u32::MAX, j, v, op));
                            None
                        }
                    }
                } else {
                    let key = series_group[j];
                    match gidx[key as usize] {
                        NO_OUT => {
                            gidx[key as usize] = groups.len();
                            groups.push(Group::new(Labels::default(), key, j, v, op));
                            None
                        }
                        g => Some(g),
                    }
                };
                let Some(g) = gi else { continue };
                groups[g].add(op, j, v, k);
            }
            for g in groups.drain(..) {
                if let Some(slot) = gidx.get_mut(g.key as usize) {
                    *slot = NO_OUT;
                }
                match op {
                    T_TOPK | T_BOTTOMK => {
                        let mut h = g.heap;
                        let top = op == T_TOPK;
                        // sort.Sort(sort.Reverse(heap)): insertion sort as Go
                        // does for small inputs, which keeps ties stable.
                        insertion_sort(&mut h, |a, b| heap_less(top, b.1, a.1));
                        for (j, v) in h {
                            let o = acc.cached_index(&mut sout[j], &m[j].labels);
                            acc.push_at(o, ts, v)?;
                        }
                    }
                    _ => {
                        let v = g.finish(op, param);
                        let o = match gout.get_mut(g.key as usize) {
                            Some(slot) => acc.cached_index(slot, &gl[g.key as usize]),
                            None => acc.index_of(&g.labels),
                        };
                        acc.push_at(o, ts, v)?;
                    }
                }
            }
        }
        Ok(Val::Vector(acc.finish()))
    }

    // --------------------------------------------------------- functions

    fn call(&self, c: &Call) -> Result<Val> {
        let name = c.func.name;
        let args: Vec<&Expr> = c.args.args.iter().map(|b| unwrap_paren(b)).collect();
        if let Some(mi) = args
            .iter()
            .position(|a| matches!(a, Expr::MatrixSelector(_) | Expr::Subquery(_)))
        {
            return self.range_function(name, &args, mi);
        }
        let steps = self.steps();
        match name {
            "time" => Ok(Val::Scalar(
                (0..steps).map(|i| self.ts(i) as f64 / 1000.0).collect(),
            )),
            "pi" => Ok(Val::Scalar(vec![std::f64::consts::PI; steps])),
            "scalar" => {
                let m = self.eval_vector(arg(&args, 0)?)?;
                let mut cur = StepCursor::new(&m);
                let mut v = Vec::new();
                let mut out = Vec::with_capacity(steps);
                for i in 0..steps {
                    cur.at(&m, self.ts(i), &mut v);
                    out.push(if v.len() == 1 { v[0].1 } else { f64::NAN });
                }
                Ok(Val::Scalar(out))
            }
            "vector" => {
                let s = self.eval_scalar(arg(&args, 0)?)?;
                Ok(Val::Vector(vec![RangeSeries {
                    labels: Labels::default(),
                    samples: s
                        .into_iter()
                        .enumerate()
                        .map(|(i, v)| (self.ts(i), v))
                        .collect(),
                }]))
            }
            "absent" => {
                let a = arg(&args, 0)?;
                let m = self.eval_vector(a)?;
                Ok(self.absent(&m, steps, a))
            }
            "timestamp" => {
                let a = arg(&args, 0)?;
                let m = if let Expr::VectorSelector(vs) = a {
                    self.vector_selector(vs, true)?
                } else {
                    self.eval_vector(a)?
                        .into_iter()
                        .map(|s| RangeSeries {
                            labels: s.labels,
                            samples: s
                                .samples
                                .into_iter()
                                .map(|(t, _)| (t, t as f64 / 1000.0))
                                .collect(),
                        })
                        .collect()
                };
                self.map_series(m, true, |_, v| Some(v))
            }
            "sort" | "sort_desc" => {
                let m = self.eval_vector(arg(&args, 0)?)?;
                let desc = name == "sort_desc";
                let mut acc = OutAcc::default();
                let mut sout = vec![NO_OUT; m.len()];
                let mut cur = StepCursor::new(&m);
                let mut v = Vec::new();
                for i in 0..steps {
                    let ts = self.ts(i);
                    cur.at(&m, ts, &mut v);
                    v.sort_by(|a, b| sort_cmp(a.1, b.1, desc));
                    for &(j, x) in &v {
                        let o = acc.cached_index(&mut sout[j], &m[j].labels);
                        acc.push_at(o, ts, x)?;
                    }
                }
                Ok(Val::Vector(acc.finish()))
            }
            "label_replace" => self.label_replace(&args),
            "label_join" => self.label_join(&args),
            "histogram_quantile" => self.histogram_quantile(&args),
            "clamp" | "clamp_min" | "clamp_max" => {
                let m = self.eval_vector(arg(&args, 0)?)?;
                let p1 = self.eval_scalar(arg(&args, 1)?)?;
                let p2 = if name == "clamp" {
                    Some(self.eval_scalar(arg(&args, 2)?)?)
                } else {
                    None
                };
                self.map_series(m, true, |i, v| {
                    let a = p1.get(i).copied().unwrap_or(f64::NAN);
                    match name {
                        "clamp_min" => Some(functions::go_max(a, v)),
                        "clamp_max" => Some(functions::go_min(a, v)),
                        _ => {
                            let max = p2
                                .as_ref()
                                .and_then(|p| p.get(i))
                                .copied()
                                .unwrap_or(f64::NAN);
                            if max < a {
                                None
                            } else {
                                Some(functions::go_max(a, functions::go_min(max, v)))
                            }
                        }
                    }
                })
            }
            "round" => {
                let m = self.eval_vector(arg(&args, 0)?)?;
                let to = match args.get(1) {
                    Some(a) => Some(self.eval_scalar(a)?),
                    None => None,
                };
                self.map_series(m, true, |i, v| {
                    let n = to
                        .as_ref()
                        .map_or(1.0, |t| t.get(i).copied().unwrap_or(f64::NAN));
                    let inv = 1.0 / n;
                    Some((v * inv + 0.5).floor() / inv)
                })
            }
            _ => {
                if let Some(f) = functions::date_fn(name) {
                    return match args.first() {
                        None => Ok(Val::Vector(vec![RangeSeries {
                            labels: Labels::default(),
                            samples: (0..steps)
                                .map(|i| {
                                    let ts = self.ts(i);
                                    (ts, f(ts / 1000))
                                })
                                .collect(),
                        }])),
                        Some(a) => {
                            let m = self.eval_vector(a)?;
                            self.map_series(m, true, |_, v| Some(f(functions::go_f64_to_i64(v))))
                        }
                    };
                }
                if let Some(f) = functions::simple_fn(name) {
                    let m = self.eval_vector(arg(&args, 0)?)?;
                    return self.map_series(m, true, |_, v| Some(f(v)));
                }
                Err(QueryError::BadData(format!(
                    "function \"{name}\" is not supported"
                )))
            }
        }
    }

    /// Applies `f(step index, value)` to every point; drops the metric name
    /// when asked and merges series that collide.
    fn map_series(
        &self,
        m: Matrix,
        drop: bool,
        f: impl Fn(usize, f64) -> Option<f64>,
    ) -> Result<Val> {
        let out: Matrix = m
            .into_iter()
            .map(|s| RangeSeries {
                labels: if drop { drop_name(&s.labels) } else { s.labels },
                samples: s
                    .samples
                    .into_iter()
                    .filter_map(|(t, v)| f(self.step_of(t), v).map(|x| (t, x)))
                    .collect(),
            })
            .collect();
        Ok(Val::Vector(merge_same_labels(out)?))
    }

    fn label_replace(&self, args: &[&Expr]) -> Result<Val> {
        let m = self.eval_vector(arg(args, 0)?)?;
        let dst = self.eval_string(arg(args, 1)?)?;
        let repl = self.eval_string(arg(args, 2)?)?;
        let src = self.eval_string(arg(args, 3)?)?;
        let re_s = self.eval_string(arg(args, 4)?)?;
        let re = regex::Regex::new(&format!("^(?:{re_s})$")).map_err(|_| {
            exec_err(format!(
                "invalid regular expression in label_replace(): {re_s}"
            ))
        })?;
        if !is_label_name(&dst) {
            return Err(exec_err(format!(
                "invalid destination label name in label_replace(): {dst}"
            )));
        }
        let out = m
            .into_iter()
            .map(|s| {
                let sv = s.labels.get(&src).unwrap_or("");
                let labels = match re.captures(sv) {
                    None => s.labels.clone(),
                    Some(caps) => {
                        let mut res = String::new();
                        caps.expand(&repl, &mut res);
                        let mut b = s.labels.builder();
                        b.del(&dst);
                        if !res.is_empty() {
                            b.set(&dst, &res);
                        }
                        b.build()
                    }
                };
                RangeSeries {
                    labels,
                    samples: s.samples,
                }
            })
            .collect();
        Ok(Val::Vector(merge_same_labels(out)?))
    }

    fn label_join(&self, args: &[&Expr]) -> Result<Val> {
        let m = self.eval_vector(arg(args, 0)?)?;
        let dst = self.eval_string(arg(args, 1)?)?;
        let sep = self.eval_string(arg(args, 2)?)?;
        let mut srcs = Vec::new();
        for a in args.iter().skip(3) {
            let s = self.eval_string(a)?;
            if !is_label_name(&s) {
                return Err(exec_err(format!(
                    "invalid source label name in label_join(): {s}"
                )));
            }
            srcs.push(s);
        }
        if !is_label_name(&dst) {
            return Err(exec_err(format!(
                "invalid destination label name in label_join(): {dst}"
            )));
        }
        let out = m
            .into_iter()
            .map(|s| {
                let joined = srcs
                    .iter()
                    .map(|n| s.labels.get(n).unwrap_or(""))
                    .collect::<Vec<_>>()
                    .join(&sep);
                let mut b = s.labels.builder();
                if joined.is_empty() {
                    b.del(&dst);
                } else {
                    b.set(&dst, &joined);
                }
                RangeSeries {
                    labels: b.build(),
                    samples: s.samples,
                }
            })
            .collect();
        Ok(Val::Vector(merge_same_labels(out)?))
    }

    fn histogram_quantile(&self, args: &[&Expr]) -> Result<Val> {
        let q = self.eval_scalar(arg(args, 0)?)?;
        let m = self.eval_vector(arg(args, 1)?)?;
        // Per series: upper bound and bucket group (labels without `le`,
        // name kept, as Prometheus's signature), output labels per group.
        let mut interner = Interner::default();
        let mut group_out: Vec<Labels> = Vec::new();
        let mut meta: Vec<Option<(f64, u32)>> = Vec::with_capacity(m.len());
        for s in &m {
            let ub = s.labels.get("le").and_then(functions::parse_go_float);
            meta.push(ub.map(|ub| {
                let key = Labels::new(
                    s.labels
                        .iter()
                        .filter(|l| &*l.name != "le")
                        .cloned()
                        .collect::<Vec<Label>>(),
                );
                let n = interner.ids.len();
                let id = interner.id(key);
                if id as usize == n {
                    group_out.push(drop_labels_and_name(&s.labels, &["le".to_owned()]));
                }
                (ub, id)
            }));
        }
        let mut acc = OutAcc::default();
        let mut gout = vec![NO_OUT; group_out.len()];
        let mut cur = StepCursor::new(&m);
        let mut v = Vec::new();
        let mut buckets: Vec<Vec<(f64, f64)>> = vec![Vec::new(); group_out.len()];
        let mut order: Vec<u32> = Vec::new();
        for i in 0..self.steps() {
            self.check_timeout()?;
            let ts = self.ts(i);
            cur.at(&m, ts, &mut v);
            order.clear();
            for &(j, x) in &v {
                if let Some((ub, g)) = meta[j] {
                    let b = &mut buckets[g as usize];
                    if b.is_empty() {
                        order.push(g);
                    }
                    b.push((ub, x));
                }
            }
            let qv = q.get(i).copied().unwrap_or(f64::NAN);
            for &g in &order {
                let b = &mut buckets[g as usize];
                let r = functions::bucket_quantile(qv, b);
                b.clear();
                let o = acc.cached_index(&mut gout[g as usize], &group_out[g as usize]);
                acc.push_at(o, ts, r)?;
            }
        }
        Ok(Val::Vector(acc.finish()))
    }

    /// Functions over a range vector: each series is cut into one window
    /// per step and reduced to at most one value.
    fn range_function(&self, name: &str, args: &[&Expr], mi: usize) -> Result<Val> {
        let f = functions::range_fn(name)
            .ok_or_else(|| QueryError::BadData(format!("function \"{name}\" is not supported")))?;
        let mut scalars: Vec<Vec<f64>> = Vec::new();
        for (i, a) in args.iter().enumerate() {
            if i != mi {
                scalars.push(self.eval_scalar(a)?);
            }
        }
        // Prometheus 2.42 quirk: when the call is not step-invariant (an
        // "@-unsafe" function such as `predict_linear`, or an argument that
        // varies per step), its engine turns `@` on the range argument into
        // an offset relative to the query start, so the window slides with
        // the step (over data loaded for the `@` time only, or a subquery
        // evaluated `end - start` past it). Reproduced so range queries
        // agree; instant queries are unaffected.
        let at_slides = !call_is_step_invariant(name, args);
        let ra = match args[mi] {
            Expr::Subquery(sq) if at_slides && sq.at.is_some() => {
                self.subquery(sq, self.end - self.start)?
            }
            e => self.range_arg(e)?,
        };
        let keep_name = name == "last_over_time";
        let steps = self.steps();
        let mut out: Matrix = Vec::with_capacity(ra.series.len());
        let mut sargs: Vec<f64> = vec![0.0; scalars.len()];
        for s in &ra.series {
            self.check_timeout()?;
            let mut pts = Vec::new();
            let (mut lo, mut hi) = (0usize, 0usize);
            let sm = &s.samples;
            for i in 0..steps {
                let ts = self.ts(i);
                let reft = match ra.at {
                    Some(at) if at_slides => at.saturating_add(ts - self.start),
                    Some(at) => at,
                    None => ts,
                }
                .saturating_sub(ra.offset);
                let mint = reft.saturating_sub(ra.range);
                // Windows only move forward, except with `@` where they are fixed.
                if hi > 0 && hi <= sm.len() && sm.get(hi - 1).is_some_and(|p| p.0 > reft) {
                    lo = 0;
                    hi = 0;
                }
                while hi < sm.len() && sm[hi].0 <= reft {
                    hi += 1;
                }
                if lo > hi {
                    lo = hi;
                }
                while lo < hi && sm[lo].0 < mint {
                    lo += 1;
                }
                if lo == hi {
                    continue;
                }
                let w = &sm[lo..hi];
                self.add_samples(w.len())?;
                for (k, sc) in scalars.iter().enumerate() {
                    sargs[k] = sc.get(i).copied().unwrap_or(f64::NAN);
                }
                if name == "holt_winters" {
                    // Checked only when called, i.e. for non-empty windows.
                    check_holt_winters(&sargs)?;
                }
                let ctx = WinCtx {
                    ts,
                    range_start: mint,
                    range_end: reft,
                    range_ms: ra.range,
                    args: &sargs,
                };
                if let Some(v) = f(w, &ctx) {
                    pts.push((ts, v));
                }
                self.sub_samples(w.len());
            }
            if !pts.is_empty() {
                out.push(RangeSeries {
                    labels: if keep_name {
                        s.labels.clone()
                    } else {
                        drop_name(&s.labels)
                    },
                    samples: pts,
                });
            }
        }
        if name == "absent_over_time" {
            return Ok(self.absent(&out, steps, args[mi]));
        }
        Ok(Val::Vector(merge_same_labels(out)?))
    }
}

/// Prometheus 2.42's step-invariance analysis (`preprocessExprHelper`):
/// which subtrees its engine evaluates once, at the evaluator's start.
fn step_invariant(e: &Expr) -> bool {
    match e {
        Expr::VectorSelector(vs) => vs.at.is_some(),
        Expr::MatrixSelector(ms) => ms.vs.at.is_some(),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => true,
        Expr::Paren(p) => step_invariant(&p.expr),
        Expr::Unary(u) => step_invariant(&u.expr),
        Expr::Binary(b) => step_invariant(&b.lhs) && step_invariant(&b.rhs),
        // The parameter is not looked at, as in Prometheus.
        Expr::Aggregate(a) => step_invariant(&a.expr),
        Expr::Call(c) => {
            let args: Vec<&Expr> = c.args.args.iter().map(|b| unwrap_paren(b)).collect();
            call_is_step_invariant(c.func.name, &args)
        }
        Expr::Subquery(sq) => sq.at.is_some(),
        Expr::Extension(_) => false,
    }
}

fn call_is_step_invariant(name: &str, args: &[&Expr]) -> bool {
    // Prometheus's `AtModifierUnsafeFunctions`.
    const UNSAFE: [&str; 10] = [
        "days_in_month",
        "day_of_month",
        "day_of_week",
        "day_of_year",
        "hour",
        "minute",
        "month",
        "year",
        "predict_linear",
        "time",
    ];
    !UNSAFE.contains(&name) && args.iter().all(|a| step_invariant(a))
}

/// Labels as Go's `labels.Labels.String()` prints them in Prometheus's
/// error messages: `{__name__="x", a="b"}`, values quoted like
/// `strconv.Quote`.
pub(crate) fn go_labels(l: &Labels) -> String {
    let mut out = String::from("{");
    for (i, x) in l.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&x.name);
        out.push_str("=\"");
        for c in x.value.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                    out.push_str(&format!("\\x{:02x}", c as u32));
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
    out
}

fn check_holt_winters(args: &[f64]) -> Result<()> {
    let sf = args.first().copied().unwrap_or(f64::NAN);
    let tf = args.get(1).copied().unwrap_or(f64::NAN);
    if !(sf > 0.0 && sf < 1.0) {
        return Err(exec_err(format!(
            "invalid smoothing factor. Expected: 0 < sf < 1, got: {sf:.6}"
        )));
    }
    if !(tf > 0.0 && tf < 1.0) {
        return Err(exec_err(format!(
            "invalid trend factor. Expected: 0 < tf < 1, got: {tf:.6}"
        )));
    }
    Ok(())
}

fn arg<'e>(args: &[&'e Expr], i: usize) -> Result<&'e Expr> {
    args.get(i)
        .copied()
        .ok_or_else(|| QueryError::BadData(format!("missing function argument {}", i + 1)))
}

/// NaN sorts last in both directions, as Prometheus's sort functions do.
fn sort_cmp(a: f64, b: f64, desc: bool) -> std::cmp::Ordering {
    use std::cmp::Ordering::*;
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Equal,
        (true, false) => Greater,
        (false, true) => Less,
        _ => {
            let o = a.partial_cmp(&b).unwrap_or(Equal);
            if desc {
                o.reverse()
            } else {
                o
            }
        }
    }
}

/// Labels of `absent()`'s output: the equality matchers of a selector
/// argument, unless the same name is also matched otherwise.
fn absent_labels(e: &Expr) -> Labels {
    let vs = match unwrap_paren(e) {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(ms) => &ms.vs,
        _ => return Labels::default(),
    };
    let mut set: Vec<(String, String)> = Vec::new();
    let mut empty: Vec<String> = Vec::new();
    for m in &vs.matchers.matchers {
        if m.name == METRIC_NAME {
            continue;
        }
        if matches!(m.op, PMatchOp::Equal) && !set.iter().any(|(n, _)| *n == m.name) {
            set.push((m.name.clone(), m.value.clone()));
        } else {
            empty.push(m.name.clone());
        }
    }
    set.retain(|(n, _)| !empty.contains(n));
    Labels::from_pairs(set)
}

/// Prometheus's result labels for a matched pair: from the "many" side,
/// name dropped for arithmetic, restricted for one-to-one `on`/`ignoring`,
/// plus the `group_x(...)` labels from the "one" side.
fn result_metric(
    many: &Labels,
    one: &Labels,
    op: u16,
    on: bool,
    names: &[String],
    one_to_one: bool,
    include: &[String],
) -> Labels {
    let mut b = many.builder();
    if drops_name(op) {
        b.del(METRIC_NAME);
    }
    if one_to_one {
        if on {
            for l in many.iter() {
                if !names.iter().any(|n| **n == *l.name) {
                    b.del(&l.name);
                }
            }
        } else {
            for n in names {
                b.del(n);
            }
        }
    }
    for n in include {
        match one.get(n) {
            Some(v) if !v.is_empty() => {
                b.set(n, v);
            }
            _ => {
                b.del(n);
            }
        }
    }
    b.build()
}

/// One aggregation group at one step.
struct Group {
    /// Labels of a `count_values` group; others use `key`.
    labels: Labels,
    /// Interned group labels, `u32::MAX` for `count_values`.
    key: u32,
    value: f64,
    mean: f64,
    count: usize,
    heap: Vec<(usize, f64)>,
}

/// Go's `vectorByValueHeap.Less` (topk) or `vectorByReverseValueHeap.Less`
/// (bottomk): NaN is always "less".
fn heap_less(top: bool, a: f64, b: f64) -> bool {
    if a.is_nan() {
        return true;
    }
    if top {
        a < b
    } else {
        a > b
    }
}

fn heap_up(h: &mut [(usize, f64)], mut j: usize, top: bool) {
    while j > 0 {
        let i = (j - 1) / 2;
        if !heap_less(top, h[j].1, h[i].1) {
            break;
        }
        h.swap(i, j);
        j = i;
    }
}

fn heap_down(h: &mut [(usize, f64)], i0: usize, n: usize, top: bool) {
    let mut i = i0;
    loop {
        let j1 = 2 * i + 1;
        if j1 >= n {
            break;
        }
        let mut j = j1;
        let j2 = j1 + 1;
        if j2 < n && heap_less(top, h[j2].1, h[j1].1) {
            j = j2;
        }
        if !heap_less(top, h[j].1, h[i].1) {
            break;
        }
        h.swap(i, j);
        i = j;
    }
}

fn insertion_sort<T>(v: &mut [T], less: impl Fn(&T, &T) -> bool) {
    for i in 1..v.len() {
        let mut j = i;
        while j > 0 && less(&v[j], &v[j - 1]) {
            v.swap(j, j - 1);
            j -= 1;
        }
    }
}

impl Group {
    fn new(labels: Labels, key: u32, j: usize, v: f64, op: u16) -> Group {
        let mut g = Group {
            labels,
            key,
            value: v,
            mean: v,
            count: 1,
            heap: Vec::new(),
        };
        match op {
            T_STDDEV | T_STDVAR => g.value = 0.0,
            T_TOPK | T_BOTTOMK | T_QUANTILE => g.heap.push((j, v)),
            T_GROUP => g.value = 1.0,
            _ => {}
        }
        g
    }

    fn add(&mut self, op: u16, j: usize, v: f64, k: i64) {
        match op {
            T_SUM => self.value += v,
            T_AVG => {
                self.count += 1;
                if self.mean.is_infinite() {
                    if v.is_infinite() && (self.mean > 0.0) == (v > 0.0) {
                        return;
                    }
                    if !v.is_infinite() && !v.is_nan() {
                        return;
                    }
                }
                let c = self.count as f64;
                self.mean += v / c - self.mean / c;
            }
            T_MAX if self.value < v || self.value.is_nan() => self.value = v,
            T_MIN if self.value > v || self.value.is_nan() => self.value = v,
            T_COUNT | T_COUNT_VALUES => self.count += 1,
            T_STDDEV | T_STDVAR => {
                self.count += 1;
                let delta = v - self.mean;
                self.mean += delta / self.count as f64;
                self.value += delta * (v - self.mean);
            }
            T_TOPK | T_BOTTOMK => {
                let top = op == T_TOPK;
                let h = &mut self.heap;
                let beats = if top { h[0].1 < v } else { h[0].1 > v };
                if (h.len() as i64) < k || beats || h[0].1.is_nan() {
                    if h.len() as i64 == k {
                        if k == 1 {
                            h[0] = (j, v);
                            return;
                        }
                        let n = h.len() - 1;
                        h.swap(0, n);
                        heap_down(h, 0, n, top);
                        h.pop();
                    }
                    h.push((j, v));
                    let last = h.len() - 1;
                    heap_up(h, last, top);
                }
            }
            T_QUANTILE => self.heap.push((j, v)),
            _ => {}
        }
    }

    fn finish(&self, op: u16, param: f64) -> f64 {
        match op {
            T_AVG => self.mean,
            T_COUNT | T_COUNT_VALUES => self.count as f64,
            T_STDVAR => self.value / self.count as f64,
            T_STDDEV => (self.value / self.count as f64).sqrt(),
            T_QUANTILE => {
                let mut vals: Vec<f64> = self.heap.iter().map(|p| p.1).collect();
                functions::quantile(param, &mut vals)
            }
            _ => self.value,
        }
    }
}
