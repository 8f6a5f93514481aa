//! PromQL's function arithmetic, as Prometheus 2.42 computes it.
//!
//! Owns the pure numeric parts: reductions of a range-vector window
//! (`rate`, `*_over_time`, `holt_winters`, ...), element-wise math, date
//! functions, bucket and sample quantiles, and Go's float conventions
//! (`math.Max`/`Min`, `ParseFloat`). Must not touch labels, the store or
//! evaluation order: the evaluator (`eval`) cuts windows and builds series.

/// What a range function sees of its step besides the window's samples.
pub(super) struct WinCtx<'a> {
    /// The evaluation timestamp of the step.
    pub ts: i64,
    /// Window bounds after `offset`/`@`: `[range_start, range_end]`.
    pub range_start: i64,
    pub range_end: i64,
    pub range_ms: i64,
    /// Scalar arguments at this step, in call order without the range vector.
    pub args: &'a [f64],
}

pub(super) type RangeFn = fn(&[(i64, f64)], &WinCtx) -> Option<f64>;

pub(super) fn range_fn(name: &str) -> Option<RangeFn> {
    Some(match name {
        "rate" => |w, c| extrapolated_rate(w, c, true, true),
        "increase" => |w, c| extrapolated_rate(w, c, true, false),
        "delta" => |w, c| extrapolated_rate(w, c, false, false),
        "irate" => |w, _| instant_value(w, true),
        "idelta" => |w, _| instant_value(w, false),
        "changes" => |w, _| {
            let mut n = 0usize;
            for p in w.windows(2) {
                let (prev, cur) = (p[0].1, p[1].1);
                if cur != prev && !(cur.is_nan() && prev.is_nan()) {
                    n += 1;
                }
            }
            Some(n as f64)
        },
        "resets" => |w, _| Some(w.windows(2).filter(|p| p[1].1 < p[0].1).count() as f64),
        "deriv" => |w, _| {
            if w.len() < 2 {
                return None;
            }
            Some(linear_regression(w, w[0].0).0)
        },
        "predict_linear" => |w, c| {
            if w.len() < 2 {
                return None;
            }
            let (slope, intercept) = linear_regression(w, c.ts);
            Some(slope * c.args.first().copied().unwrap_or(f64::NAN) + intercept)
        },
        "holt_winters" => |w, c| {
            let sf = c.args.first().copied().unwrap_or(f64::NAN);
            let tf = c.args.get(1).copied().unwrap_or(f64::NAN);
            holt_winters(w, sf, tf)
        },
        "avg_over_time" => |w, _| {
            let mut mean = 0.0f64;
            let mut count = 0.0f64;
            for &(_, v) in w {
                count += 1.0;
                if mean.is_infinite() {
                    if v.is_infinite() && (mean > 0.0) == (v > 0.0) {
                        continue;
                    }
                    if !v.is_infinite() && !v.is_nan() {
                        continue;
                    }
                }
                mean += v / count - mean / count;
            }
            Some(mean)
        },
        "sum_over_time" => |w, _| Some(w.iter().map(|p| p.1).sum()),
        "count_over_time" => |w, _| Some(w.len() as f64),
        "max_over_time" => |w, _| {
            let mut m = w[0].1;
            for &(_, v) in w {
                if v > m || m.is_nan() {
                    m = v;
                }
            }
            Some(m)
        },
        "min_over_time" => |w, _| {
            let mut m = w[0].1;
            for &(_, v) in w {
                if v < m || m.is_nan() {
                    m = v;
                }
            }
            Some(m)
        },
        "quantile_over_time" => |w, c| {
            let mut vals: Vec<f64> = w.iter().map(|p| p.1).collect();
            Some(quantile(
                c.args.first().copied().unwrap_or(f64::NAN),
                &mut vals,
            ))
        },
        "stddev_over_time" => |w, _| Some(variance(w).sqrt()),
        "stdvar_over_time" => |w, _| Some(variance(w)),
        "last_over_time" => |w, _| w.last().map(|p| p.1),
        "present_over_time" | "absent_over_time" => |_, _| Some(1.0),
        _ => return None,
    })
}

fn extrapolated_rate(w: &[(i64, f64)], c: &WinCtx, is_counter: bool, is_rate: bool) -> Option<f64> {
    if w.len() < 2 {
        return None;
    }
    let (first, last) = (w[0], w[w.len() - 1]);
    let mut result = last.1 - first.1;
    if is_counter {
        let mut prev = first.1;
        for &(_, v) in &w[1..] {
            if v < prev {
                result += prev;
            }
            prev = v;
        }
    }
    let mut to_start = (first.0 - c.range_start) as f64 / 1000.0;
    let to_end = (c.range_end - last.0) as f64 / 1000.0;
    let sampled = (last.0 - first.0) as f64 / 1000.0;
    let avg_step = sampled / (w.len() - 1) as f64;
    if is_counter && result > 0.0 && first.1 >= 0.0 {
        let to_zero = sampled * (first.1 / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let threshold = avg_step * 1.1;
    let mut interval = sampled;
    interval += if to_start < threshold {
        to_start
    } else {
        avg_step / 2.0
    };
    interval += if to_end < threshold {
        to_end
    } else {
        avg_step / 2.0
    };
    let mut factor = interval / sampled;
    if is_rate {
        factor /= c.range_ms as f64 / 1000.0;
    }
    Some(result * factor)
}

fn instant_value(w: &[(i64, f64)], is_rate: bool) -> Option<f64> {
    if w.len() < 2 {
        return None;
    }
    let last = w[w.len() - 1];
    let prev = w[w.len() - 2];
    let mut result = if is_rate && last.1 < prev.1 {
        last.1
    } else {
        last.1 - prev.1
    };
    let dt = last.0 - prev.0;
    if dt == 0 {
        return None;
    }
    if is_rate {
        result /= dt as f64 / 1000.0;
    }
    Some(result)
}

fn holt_winters(w: &[(i64, f64)], sf: f64, tf: f64) -> Option<f64> {
    if w.len() < 2 {
        return None;
    }
    let mut s0 = 0.0;
    let mut s1 = w[0].1;
    let mut b = w[1].1 - w[0].1;
    for (i, &(_, v)) in w.iter().enumerate().skip(1) {
        let x = sf * v;
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let y = (1.0 - sf) * (s1 + b);
        s0 = s1;
        s1 = x + y;
    }
    Some(s1)
}

fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

fn variance(w: &[(i64, f64)]) -> f64 {
    let mut count = 0.0;
    let (mut mean, mut c_mean) = (0.0, 0.0);
    let (mut aux, mut c_aux) = (0.0, 0.0);
    for &(_, v) in w {
        count += 1.0;
        let delta = v - (mean + c_mean);
        (mean, c_mean) = kahan_inc(delta / count, mean, c_mean);
        (aux, c_aux) = kahan_inc(delta * (v - (mean + c_mean)), aux, c_aux);
    }
    (aux + c_aux) / count
}

/// Least-squares fit with x in seconds relative to `intercept_t`.
pub(super) fn linear_regression(w: &[(i64, f64)], intercept_t: i64) -> (f64, f64) {
    let mut n = 0.0;
    let (mut sx, mut cx) = (0.0, 0.0);
    let (mut sy, mut cy) = (0.0, 0.0);
    let (mut sxy, mut cxy) = (0.0, 0.0);
    let (mut sx2, mut cx2) = (0.0, 0.0);
    let init_y = w[0].1;
    let mut const_y = true;
    for (i, &(t, v)) in w.iter().enumerate() {
        if const_y && i > 0 && v != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = (t - intercept_t) as f64 / 1e3;
        (sx, cx) = kahan_inc(x, sx, cx);
        (sy, cy) = kahan_inc(v, sy, cy);
        (sxy, cxy) = kahan_inc(x * v, sxy, cxy);
        (sx2, cx2) = kahan_inc(x * x, sx2, cx2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    let (sx, sy, sxy, sx2) = (sx + cx, sy + cy, sxy + cxy, sx2 + cx2);
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    (slope, sy / n - slope * sx / n)
}

/// Prometheus's `quantile` over sample values (NaN sorts first).
pub(super) fn quantile(q: f64, vals: &mut [f64]) -> f64 {
    if vals.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    vals.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal),
    });
    let n = vals.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    vals[lower as usize] * (1.0 - weight) + vals[upper as usize] * weight
}

/// Quantile from cumulative classic-histogram buckets `(upper bound, count)`.
pub(super) fn bucket_quantile(q: f64, buckets: &mut [(f64, f64)]) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    if buckets.is_empty() {
        return f64::NAN;
    }
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    if buckets[buckets.len() - 1].0 != f64::INFINITY {
        return f64::NAN;
    }
    // Coalesce equal upper bounds.
    let mut out: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for &b in buckets.iter() {
        match out.last_mut() {
            Some(l) if l.0 == b.0 => l.1 += b.1,
            _ => out.push(b),
        }
    }
    // Ensure monotonic counts.
    let mut max = f64::NEG_INFINITY;
    for b in out.iter_mut() {
        if b.1 > max {
            max = b.1;
        } else if b.1 < max {
            b.1 = max;
        }
    }
    if out.len() < 2 {
        return f64::NAN;
    }
    let observations = out[out.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let n = out.len() - 1;
    let b = out[..n].partition_point(|x| x.1 < rank);
    if b == n {
        return out[n - 1].0;
    }
    if b == 0 && out[0].0 <= 0.0 {
        return out[0].0;
    }
    let mut start = 0.0;
    let end = out[b].0;
    let mut count = out[b].1;
    if b > 0 {
        start = out[b - 1].0;
        count -= out[b - 1].1;
        rank -= out[b - 1].1;
    }
    start + (end - start) * (rank / count)
}

/// Go's `math.Max`: +Inf wins over NaN, NaN wins over numbers.
pub(super) fn go_max(x: f64, y: f64) -> f64 {
    if x == f64::INFINITY || y == f64::INFINITY {
        return f64::INFINITY;
    }
    if x.is_nan() || y.is_nan() {
        return f64::NAN;
    }
    if x == 0.0 && x == y {
        return if x.is_sign_negative() { y } else { x };
    }
    if x > y {
        x
    } else {
        y
    }
}

/// Go's `math.Min`: -Inf wins over NaN, NaN wins over numbers.
pub(super) fn go_min(x: f64, y: f64) -> f64 {
    if x == f64::NEG_INFINITY || y == f64::NEG_INFINITY {
        return f64::NEG_INFINITY;
    }
    if x.is_nan() || y.is_nan() {
        return f64::NAN;
    }
    if x == 0.0 && x == y {
        return if x.is_sign_negative() { x } else { y };
    }
    if x < y {
        x
    } else {
        y
    }
}

/// Go's `math.Frexp`: `f = frac * 2^exp` with `|frac|` in [0.5, 1).
fn go_frexp(f: f64) -> (f64, i64) {
    if f == 0.0 || f.is_infinite() || f.is_nan() {
        return (f, 0);
    }
    let (f, mut exp) = if f.abs() < f64::MIN_POSITIVE {
        (f * (1u64 << 52) as f64, -52)
    } else {
        (f, 0)
    };
    let mut x = f.to_bits();
    exp += ((x >> 52) & 0x7ff) as i64 - 1023 + 1;
    x &= !(0x7ff << 52);
    x |= 1022 << 52;
    (f64::from_bits(x), exp)
}

/// Go's `math.Ldexp`: `frac * 2^exp`, with Go's handling of denormals.
fn go_ldexp(frac: f64, exp: i64) -> f64 {
    if frac == 0.0 || frac.is_infinite() || frac.is_nan() {
        return frac;
    }
    let (frac, e) = if frac.abs() < f64::MIN_POSITIVE {
        (frac * (1u64 << 52) as f64, -52)
    } else {
        (frac, 0)
    };
    let mut exp = exp.saturating_add(e);
    let mut x = frac.to_bits();
    exp = exp.saturating_add(((x >> 52) & 0x7ff) as i64 - 1023);
    if exp < -1075 {
        return 0.0f64.copysign(frac);
    }
    if exp > 1023 {
        return if frac < 0.0 {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        };
    }
    let mut m = 1.0;
    if exp < -1022 {
        exp += 53;
        m = 1.0 / (1u64 << 53) as f64;
    }
    x &= !(0x7ff << 52);
    x |= ((exp + 1023) as u64) << 52;
    m * f64::from_bits(x)
}

fn go_is_odd_int(x: f64) -> bool {
    if x.abs() >= (1u64 << 53) as f64 {
        return false;
    }
    x.fract() == 0.0 && (x.trunc() as i64) & 1 == 1
}

/// Go's `math.Pow`, which PromQL's `^` uses. It is not correctly rounded,
/// and huge results differ from libm's in the last bits, which `%` can
/// turn into entirely different values; so it is ported as it is.
pub(super) fn go_pow(x: f64, y: f64) -> f64 {
    if y == 0.0 || x == 1.0 {
        return 1.0;
    }
    if y == 1.0 {
        return x;
    }
    if x.is_nan() || y.is_nan() {
        return f64::NAN;
    }
    if x == 0.0 {
        if y < 0.0 {
            return if x.is_sign_negative() && go_is_odd_int(y) {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            };
        }
        return if x.is_sign_negative() && go_is_odd_int(y) {
            x
        } else {
            0.0
        };
    }
    if y.is_infinite() {
        return if x == -1.0 {
            1.0
        } else if (x.abs() < 1.0) == (y > 0.0) {
            0.0
        } else {
            f64::INFINITY
        };
    }
    if x.is_infinite() {
        if x < 0.0 {
            return go_pow(1.0 / x, -y);
        }
        return if y < 0.0 { 0.0 } else { f64::INFINITY };
    }
    if y == 0.5 {
        return x.sqrt();
    }
    if y == -0.5 {
        return 1.0 / x.sqrt();
    }
    let ya = y.abs();
    let (mut yi, mut yf) = (ya.trunc(), ya.fract());
    if yf != 0.0 && x < 0.0 {
        return f64::NAN;
    }
    if yi >= 9_223_372_036_854_775_808.0 {
        return if x == -1.0 {
            1.0
        } else if (x.abs() < 1.0) == (y > 0.0) {
            0.0
        } else {
            f64::INFINITY
        };
    }
    let mut a1 = 1.0;
    let mut ae: i64 = 0;
    if yf != 0.0 {
        if yf > 0.5 {
            yf -= 1.0;
            yi += 1.0;
        }
        a1 = (yf * x.ln()).exp();
    }
    let (mut x1, mut xe) = go_frexp(x);
    let mut i = yi as i64;
    while i != 0 {
        if !(-(1 << 12)..=(1 << 12)).contains(&xe) {
            ae += xe;
            break;
        }
        if i & 1 == 1 {
            a1 *= x1;
            ae += xe;
        }
        x1 *= x1;
        xe <<= 1;
        if x1 < 0.5 {
            x1 += x1;
            xe -= 1;
        }
        i >>= 1;
    }
    if y < 0.0 {
        a1 = 1.0 / a1;
        ae = -ae;
    }
    go_ldexp(a1, ae)
}

/// Go's `int64(f)` on amd64: out-of-range and NaN give `math.MinInt64`.
pub(super) fn go_f64_to_i64(v: f64) -> i64 {
    // 2^63 is exactly representable; every float below it converts.
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    if v.is_nan() || !(-TWO_63..TWO_63).contains(&v) {
        i64::MIN
    } else {
        v as i64
    }
}

/// Like Go's `strconv.ParseFloat(s, 64)` for the forms label values use.
pub(super) fn parse_go_float(s: &str) -> Option<f64> {
    let t = s.trim_start_matches('+');
    match t.to_ascii_lowercase().as_str() {
        "inf" | "infinity" => {
            return Some(if s.starts_with('-') {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            })
        }
        "nan" => return Some(f64::NAN),
        _ => {}
    }
    s.parse::<f64>().ok()
}

pub(super) fn simple_fn(name: &str) -> Option<fn(f64) -> f64> {
    Some(match name {
        "abs" => f64::abs,
        "ceil" => f64::ceil,
        "floor" => f64::floor,
        "exp" => f64::exp,
        "sqrt" => f64::sqrt,
        "ln" => f64::ln,
        "log2" => f64::log2,
        "log10" => f64::log10,
        "sgn" => |v| {
            if v < 0.0 {
                -1.0
            } else if v > 0.0 {
                1.0
            } else {
                v
            }
        },
        "sin" => f64::sin,
        "cos" => f64::cos,
        "tan" => f64::tan,
        "asin" => f64::asin,
        "acos" => f64::acos,
        "atan" => f64::atan,
        "sinh" => f64::sinh,
        "cosh" => f64::cosh,
        "tanh" => f64::tanh,
        "asinh" => f64::asinh,
        "acosh" => f64::acosh,
        "atanh" => f64::atanh,
        "deg" => |v| v * 180.0 / std::f64::consts::PI,
        "rad" => |v| v * std::f64::consts::PI / 180.0,
        _ => return None,
    })
}

// Go's time package, ported for the date functions: Prometheus feeds
// `time.Unix(int64(v), 0).UTC()` even for NaN and ±Inf (which become
// math.MinInt64 and wrap around), so matching it exactly means doing the
// same unsigned "absolute time" arithmetic.

const SECONDS_PER_DAY: u64 = 86_400;
const DAYS_PER_400_YEARS: u64 = 365 * 400 + 97;
const DAYS_PER_100_YEARS: u64 = 365 * 100 + 24;
const DAYS_PER_4_YEARS: u64 = 365 * 4 + 1;
const ABSOLUTE_ZERO_YEAR: i64 = -292_277_022_399;
/// Go's `unixToInternal + internalToAbsolute`.
const UNIX_TO_ABSOLUTE: i64 = 9_223_372_028_715_321_600;
const DAYS_BEFORE: [u64; 13] = [
    0,
    31,
    31 + 28,
    31 + 28 + 31,
    31 + 28 + 31 + 30,
    31 + 28 + 31 + 30 + 31,
    31 + 28 + 31 + 30 + 31 + 30,
    31 + 28 + 31 + 30 + 31 + 30 + 31,
    31 + 28 + 31 + 30 + 31 + 30 + 31 + 31,
    31 + 28 + 31 + 30 + 31 + 30 + 31 + 31 + 30,
    31 + 28 + 31 + 30 + 31 + 30 + 31 + 31 + 30 + 31,
    31 + 28 + 31 + 30 + 31 + 30 + 31 + 31 + 30 + 31 + 30,
    31 + 28 + 31 + 30 + 31 + 30 + 31 + 31 + 30 + 31 + 30 + 31,
];

/// Go's `Time.abs()` for a UTC time made by `time.Unix(sec, 0)`.
fn go_abs(sec: i64) -> u64 {
    sec.wrapping_add(UNIX_TO_ABSOLUTE) as u64
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

/// Go's `absDate`: (year, month 1-12, day 1-31, day of year 0-365).
fn go_date(abs: u64) -> (i64, u64, u64, u64) {
    let mut d = abs / SECONDS_PER_DAY;
    let mut n = d / DAYS_PER_400_YEARS;
    let mut y = 400 * n;
    d -= DAYS_PER_400_YEARS * n;
    n = d / DAYS_PER_100_YEARS;
    n -= n >> 2;
    y += 100 * n;
    d -= DAYS_PER_100_YEARS * n;
    n = d / DAYS_PER_4_YEARS;
    y += 4 * n;
    d -= DAYS_PER_4_YEARS * n;
    n = d / 365;
    n -= n >> 2;
    y += n;
    d -= 365 * n;
    let year = (y as i64).wrapping_add(ABSOLUTE_ZERO_YEAR);
    let yday = d;
    let mut day = yday;
    if is_leap(year) {
        if day > 31 + 29 - 1 {
            day -= 1;
        } else if day == 31 + 29 - 1 {
            return (year, 2, 29, yday);
        }
    }
    let mut month = (day / 31) as usize;
    let end = DAYS_BEFORE[month + 1];
    let begin = if day >= end {
        month += 1;
        end
    } else {
        DAYS_BEFORE[month]
    };
    (year, month as u64 + 1, day - begin + 1, yday)
}

fn days_in_month(y: i64, m: u64) -> u64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Date functions of Unix seconds, as Go's UTC calendar computes them.
pub(super) fn date_fn(name: &str) -> Option<fn(i64) -> f64> {
    Some(match name {
        "year" => |s| go_date(go_abs(s)).0 as f64,
        "month" => |s| go_date(go_abs(s)).1 as f64,
        "day_of_month" => |s| go_date(go_abs(s)).2 as f64,
        "day_of_year" => |s| (go_date(go_abs(s)).3 + 1) as f64,
        "days_in_month" => |s| {
            let (y, m, _, _) = go_date(go_abs(s));
            days_in_month(y, m) as f64
        },
        // Go: (abs + Monday*secondsPerDay) % secondsPerWeek / secondsPerDay.
        "day_of_week" => |s| {
            ((go_abs(s).wrapping_add(SECONDS_PER_DAY) % (7 * SECONDS_PER_DAY)) / SECONDS_PER_DAY)
                as f64
        },
        "hour" => |s| ((go_abs(s) % SECONDS_PER_DAY) / 3600) as f64,
        "minute" => |s| ((go_abs(s) % 3600) / 60) as f64,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_dates() {
        assert_eq!(go_date(go_abs(0)), (1970, 1, 1, 0));
        assert_eq!(go_date(go_abs(-1)), (1969, 12, 31, 364));
        assert_eq!(go_date(go_abs(11_016 * 86_400)), (2000, 2, 29, 59));
        assert_eq!(date_fn("day_of_year").unwrap()(86_400 * 365), 1.0);
        assert_eq!(date_fn("day_of_week").unwrap()(0), 4.0);
        assert_eq!(date_fn("days_in_month").unwrap()(11_016 * 86_400), 29.0);
        // Prometheus 2.42 on NaN (int64 -> math.MinInt64, wrapped by Go).
        assert_eq!(date_fn("minute").unwrap()(go_f64_to_i64(f64::NAN)), 30.0);
        assert_eq!(date_fn("hour").unwrap()(go_f64_to_i64(f64::INFINITY)), 15.0);
    }

    #[test]
    fn quantiles() {
        let mut v = vec![3.0, 1.0, 2.0, 4.0];
        assert_eq!(quantile(0.5, &mut v), 2.5);
        let mut b = vec![(f64::INFINITY, 10.0), (1.0, 5.0), (2.0, 10.0)];
        assert_eq!(bucket_quantile(0.5, &mut b), 1.0);
        assert!(bucket_quantile(0.5, &mut [(1.0, 1.0)]).is_nan());
    }

    #[test]
    fn pow_like_go() {
        assert_eq!(go_pow(2.0, 10.0), 1024.0);
        assert_eq!(go_pow(-2.0, 3.0), -8.0);
        assert_eq!(go_pow(4.0, 0.5), 2.0);
        assert_eq!(go_pow(2.0, -2.0), 0.25);
        assert!(go_pow(-8.0, 1.0 / 3.0).is_nan());
        assert_eq!(go_pow(0.0, -1.0), f64::INFINITY);
        assert_eq!(go_pow(-0.0, -1.0), f64::NEG_INFINITY);
        assert_eq!(go_pow(f64::NAN, 0.0), 1.0);
        assert_eq!(go_pow(10.0, 400.0), f64::INFINITY);
        assert_eq!(go_pow(10.0, -400.0), 0.0);
        assert!((go_pow(2.0, 0.3) - 2f64.powf(0.3)).abs() < 1e-15);
        assert_eq!(go_frexp(8.0), (0.5, 4));
        assert_eq!(go_ldexp(0.5, 4), 8.0);
        assert_eq!(go_ldexp(1.0, -1074), f64::from_bits(1));
    }

    #[test]
    fn go_min_max() {
        assert!(go_max(f64::NAN, 1.0).is_nan());
        assert_eq!(go_max(f64::NAN, f64::INFINITY), f64::INFINITY);
        assert_eq!(go_min(f64::NAN, f64::NEG_INFINITY), f64::NEG_INFINITY);
        assert_eq!(go_min(1.0, 2.0), 1.0);
    }

    #[test]
    fn rate_extrapolates_to_window() {
        // 0, 10, ..., 50 every 10s over a 50s window ending at the last sample.
        let w: Vec<(i64, f64)> = (0..6).map(|i| (i * 10_000, i as f64 * 10.0)).collect();
        let c = WinCtx {
            ts: 50_000,
            range_start: 0,
            range_end: 50_000,
            range_ms: 50_000,
            args: &[],
        };
        let r = range_fn("rate").unwrap()(&w, &c).unwrap();
        assert!((r - 1.0).abs() < 1e-12);
        let inc = range_fn("increase").unwrap()(&w, &c).unwrap();
        assert!((inc - 50.0).abs() < 1e-12);
    }
}
