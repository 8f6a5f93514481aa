//! Exposition parsing for scraped targets.
//!
//! This module owns one job: turning a complete scraped body in the Prometheus
//! text format 0.0.4 or the OpenMetrics 1.0 text format into a stream of
//! entries (samples and HELP/TYPE/UNIT metadata) that borrow from the body.
//! A sample costs no allocation: its series bytes, name and label section are
//! slices of the input, and labels are only decoded when the caller asks.
//!
//! It must not touch anything else: no I/O (the caller hands over the whole
//! body), no decompression, no relabelling or label rewriting, no staleness or
//! series bookkeeping, no storage. It is also included verbatim by the fuzz
//! crate through `#[path]`, so it depends on `std` and `memchr` only and never
//! names `crate::`.
//!
//! Prometheus 2.42 `textparse` is the reference. Where it is lax in ways no
//! real exporter relies on, this parser is stricter, because a malformed
//! scrape has to fail the target rather than ingest guesses:
//! - CR is never whitespace. A CRLF body fails (Prometheus fails it too, only
//!   with a less helpful "invalid value" message); free-form text comments are
//!   the one place a trailing CR is tolerated, since their content is ignored.
//! - Text format: label pairs must be separated by commas (Prometheus 2.42
//!   accepts `{a="1" b="2"}`), whitespace is required between the series and
//!   the value (Prometheus accepts `x{}1`), and a raw line feed inside a quoted
//!   label value is an error (Prometheus text accepts it; OpenMetrics forbids it).
//! - A metric name in `# HELP`/`# TYPE` must be followed by whitespace or the
//!   end of the line.
//! - Duplicate label names in one sample (or exemplar) are a parse error here,
//!   instead of an append error later.
//! - Values overflowing f64 (`1e400`) are errors, as Go's ParseFloat reports
//!   them; hex floats, `_` separators and signed NaN are rejected like Prometheus.
//! - NaN values are normalised to Prometheus' `value.NormalNaN` bit pattern so a
//!   scraped NaN can never be mistaken for the staleness marker.
//! - OpenMetrics timestamps are float seconds, converted to milliseconds by
//!   rounding to nearest (Prometheus truncates); out-of-range ones are errors.

use std::borrow::Cow;
use std::fmt;

use memchr::{memchr, memchr2};

/// Which grammar a body is parsed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Prometheus text format 0.0.4.
    Text,
    /// OpenMetrics 1.0 text format.
    OpenMetrics,
}

impl Format {
    /// Chooses the grammar from a response `Content-Type`.
    ///
    /// Like Prometheus, only the media type decides; the `version` parameter
    /// is ignored and anything unrecognised falls back to the text format.
    pub fn from_content_type(ct: &str) -> Format {
        let media = ct.split(';').next().unwrap_or("").trim();
        if media.eq_ignore_ascii_case("application/openmetrics-text") {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }
}

/// Metric family type from a `# TYPE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    StateSet,
    /// `untyped` in the text format, `unknown` in OpenMetrics.
    Unknown,
}

impl MetricType {
    /// The name Prometheus's metadata API uses (`unknown` for untyped).
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::GaugeHistogram => "gaugehistogram",
            MetricType::Summary => "summary",
            MetricType::Info => "info",
            MetricType::StateSet => "stateset",
            MetricType::Unknown => "unknown",
        }
    }

    fn from_text(s: &[u8]) -> Option<MetricType> {
        Some(match s {
            b"counter" => MetricType::Counter,
            b"gauge" => MetricType::Gauge,
            b"histogram" => MetricType::Histogram,
            b"summary" => MetricType::Summary,
            b"untyped" => MetricType::Unknown,
            _ => return None,
        })
    }

    fn from_openmetrics(s: &[u8]) -> Option<MetricType> {
        Some(match s {
            b"counter" => MetricType::Counter,
            b"gauge" => MetricType::Gauge,
            b"histogram" => MetricType::Histogram,
            b"gaugehistogram" => MetricType::GaugeHistogram,
            b"summary" => MetricType::Summary,
            b"info" => MetricType::Info,
            b"stateset" => MetricType::StateSet,
            b"unknown" => MetricType::Unknown,
            _ => return None,
        })
    }
}

/// One parsed line of interest.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry<'a> {
    Help {
        metric: &'a str,
        text: Cow<'a, str>,
    },
    Type {
        metric: &'a str,
        kind: MetricType,
    },
    Unit {
        metric: &'a str,
        unit: &'a str,
    },
    /// Any other `#` line (text format only; OpenMetrics has no free comments).
    Comment,
    Sample(Sample<'a>),
}

/// One sample line. Everything borrows from the scraped body.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample<'a> {
    /// Raw bytes of `name{labels}` exactly as written, without trailing
    /// whitespace; stable across scrapes, so usable as a cache key.
    pub series: &'a [u8],
    pub name: &'a str,
    pub value: f64,
    /// Milliseconds since the epoch, if the line carried a timestamp.
    pub timestamp_ms: Option<i64>,
    /// Bytes after `{` up to and including `}`; empty without a label set.
    label_src: &'a [u8],
    line: usize,
    format: Format,
}

impl<'a> Sample<'a> {
    /// Decodes the label pairs in written order.
    ///
    /// The set was already validated by the parser, so errors are not
    /// expected here; they are still reported rather than panicking.
    pub fn labels(&self) -> Labels<'a> {
        Labels {
            cursor: Cursor::new(self.label_src, self.format == Format::OpenMetrics),
            line: self.line,
            done: self.label_src.is_empty(),
        }
    }

    /// 1-based line number the sample came from.
    pub fn line(&self) -> usize {
        self.line
    }
}

/// Iterator over the labels of one [`Sample`].
#[derive(Debug, Clone)]
pub struct Labels<'a> {
    cursor: Cursor<'a>,
    line: usize,
    done: bool,
}

impl<'a> Iterator for Labels<'a> {
    type Item = Result<(&'a str, Cow<'a, str>), ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let src = self.cursor.buf;
        let result = match self.cursor.step() {
            Ok(Step::Close(_)) => {
                self.done = true;
                return None;
            }
            Ok(Step::Label {
                name,
                value,
                escaped,
            }) => decode_label(src, name, value, escaped),
            Err(kind) => Err(kind),
        };
        if result.is_err() {
            self.done = true;
        }
        Some(result.map_err(|kind| ParseError {
            line: self.line,
            kind,
        }))
    }
}

fn decode_label<'a>(
    src: &'a [u8],
    name: (usize, usize),
    value: (usize, usize),
    escaped: bool,
) -> Result<(&'a str, Cow<'a, str>), ParseErrorKind> {
    let name = std::str::from_utf8(&src[name.0..name.1])
        .map_err(|_| ParseErrorKind::InvalidUtf8("label name"))?;
    let value = std::str::from_utf8(&src[value.0..value.1])
        .map_err(|_| ParseErrorKind::InvalidUtf8("label value"))?;
    let value = if escaped {
        Cow::Owned(unescape(value, true))
    } else {
        Cow::Borrowed(value)
    };
    Ok((name, value))
}

/// A parse failure, located by 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub kind: ParseErrorKind,
}

/// What went wrong. Owned strings only appear on the error path.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseErrorKind {
    ExpectedMetricName,
    ExpectedMetricNameAfter(&'static str),
    ExpectedText(&'static str),
    InvalidMetricType(String),
    UnitNotSuffix { metric: String, unit: String },
    InvalidComment,
    BlankLine,
    CarriageReturn,
    InvalidUtf8(&'static str),
    ExpectedWhitespace { metric: String, found: u8 },
    ExpectedLabelName,
    ExpectedEquals { label: String },
    ExpectedLabelValue { label: String },
    UnterminatedLabelValue { label: String },
    ExpectedCommaOrBrace,
    UnterminatedLabelSet,
    DuplicateLabel(String),
    ExpectedValue { metric: String },
    InvalidValue(String),
    InvalidTimestamp(String),
    ExpectedTimestampOrExemplar,
    ExpectedExemplarValue,
    ExpectedEndOfLine(&'static str),
    MissingEof,
    DataAfterEof,
}

impl fmt::Display for ParseErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ParseErrorKind::*;
        match self {
            ExpectedMetricName => f.write_str("expected a metric name at the start of the line"),
            ExpectedMetricNameAfter(kw) => write!(f, "expected metric name after {kw}"),
            ExpectedText(kw) => {
                write!(f, "expected a space and text after the metric name in {kw}")
            }
            InvalidMetricType(t) => write!(f, "invalid metric type {t:?}"),
            UnitNotSuffix { metric, unit } => {
                write!(f, "unit {unit:?} is not a suffix of metric {metric:?}")
            }
            InvalidComment => f.write_str(
                "invalid comment: OpenMetrics allows only # HELP, # TYPE, # UNIT and # EOF",
            ),
            BlankLine => f.write_str("blank lines are not allowed in OpenMetrics"),
            CarriageReturn => {
                f.write_str("carriage return before line feed (CRLF line endings are not accepted)")
            }
            InvalidUtf8(what) => write!(f, "{what} is not valid UTF-8"),
            ExpectedWhitespace { metric, found } => write!(
                f,
                "unexpected '{}' after metric {metric:?} (expected whitespace)",
                std::ascii::escape_default(*found)
            ),
            ExpectedLabelName => f.write_str("expected label name"),
            ExpectedEquals { label } => write!(f, "expected \"=\" after label name {label:?}"),
            ExpectedLabelValue { label } => write!(f, "expected quoted value for label {label:?}"),
            UnterminatedLabelValue { label } => write!(f, "unterminated value for label {label:?}"),
            ExpectedCommaOrBrace => f.write_str("expected \",\" or \"}\" after label value"),
            UnterminatedLabelSet => f.write_str("label set is not closed with \"}\""),
            DuplicateLabel(l) => write!(f, "duplicate label name {l:?}"),
            ExpectedValue { metric } => write!(f, "expected value after metric name {metric:?}"),
            InvalidValue(v) => write!(f, "invalid value {v:?}"),
            InvalidTimestamp(t) => write!(f, "invalid timestamp {t:?}"),
            ExpectedTimestampOrExemplar => {
                f.write_str("expected timestamp or exemplar after value")
            }
            ExpectedExemplarValue => f.write_str("expected value after exemplar labels"),
            ExpectedEndOfLine(after) => write!(f, "unexpected data after {after}"),
            MissingEof => f.write_str("data does not end with # EOF"),
            DataAfterEof => f.write_str("unexpected data after # EOF"),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.kind)
    }
}

impl std::error::Error for ParseError {}

/// Streaming parser over one scraped body.
///
/// After the first error it yields nothing more: one bad line fails the
/// whole scrape, so there is no point resynchronising.
#[derive(Debug, Clone)]
pub struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
    line: usize,
    format: Format,
    done: bool,
}

impl<'a> Parser<'a> {
    pub fn new(input: &'a [u8], format: Format) -> Self {
        Parser {
            input,
            pos: 0,
            line: 1,
            format,
            done: false,
        }
    }

    pub fn next_entry(&mut self) -> Option<Result<Entry<'a>, ParseError>> {
        loop {
            if self.done {
                return None;
            }
            let input = self.input;
            if self.pos >= input.len() {
                self.done = true;
                return match self.format {
                    Format::Text => None,
                    Format::OpenMetrics => Some(Err(ParseError {
                        line: self.line,
                        kind: ParseErrorKind::MissingEof,
                    })),
                };
            }
            let rest = &input[self.pos..];
            let (line, next) = match memchr(b'\n', rest) {
                Some(i) => (&rest[..i], self.pos + i + 1),
                None => (rest, input.len()),
            };
            let line_no = self.line;
            self.line += 1;
            self.pos = next;
            let parsed = match self.format {
                Format::Text => text_line(line, line_no),
                Format::OpenMetrics => {
                    let r = om_line(line, line_no, next == input.len());
                    if let Ok(LineOutcome::Eof) = r {
                        self.done = true;
                    }
                    r
                }
            };
            match parsed {
                Ok(LineOutcome::Entry(e)) => return Some(Ok(e)),
                Ok(LineOutcome::Skip) | Ok(LineOutcome::Eof) => continue,
                Err(kind) => {
                    self.done = true;
                    return Some(Err(ParseError {
                        line: line_no,
                        kind,
                    }));
                }
            }
        }
    }
}

impl<'a> Iterator for Parser<'a> {
    type Item = Result<Entry<'a>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_entry()
    }
}

enum LineOutcome<'a> {
    Entry(Entry<'a>),
    Skip,
    Eof,
}

// Prometheus' value.NormalNaN: distinct from the staleness marker.
const NORMAL_NAN: u64 = 0x7ff8_0000_0000_0001;

const NAME_START: u8 = 1;
const NAME_CONT: u8 = 2;
const LABEL_START: u8 = 4;
const LABEL_CONT: u8 = 8;

// One table lookup per byte keeps identifier scanning branch-light.
static CLASS: [u8; 256] = build_class_table();

const fn build_class_table() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        let mut f = 0;
        if c.is_ascii_alphabetic() || c == b'_' {
            f |= NAME_START | NAME_CONT | LABEL_START | LABEL_CONT;
        }
        if c == b':' {
            f |= NAME_START | NAME_CONT;
        }
        if c.is_ascii_digit() {
            f |= NAME_CONT | LABEL_CONT;
        }
        t[i] = f;
        i += 1;
    }
    t
}

/// Returns the end of an identifier starting at `pos` (`pos` itself if none).
#[inline]
fn scan_ident(buf: &[u8], pos: usize, start: u8, cont: u8) -> usize {
    match buf.get(pos) {
        Some(&c) if CLASS[c as usize] & start != 0 => {}
        _ => return pos,
    }
    let mut i = pos + 1;
    while i < buf.len() && CLASS[buf[i] as usize] & cont != 0 {
        i += 1;
    }
    i
}

#[inline]
fn is_ws(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

#[inline]
fn skip_ws(buf: &[u8], mut i: usize) -> usize {
    while i < buf.len() && is_ws(buf[i]) {
        i += 1;
    }
    i
}

#[inline]
fn token_end_ws(buf: &[u8], mut i: usize) -> usize {
    while i < buf.len() && !is_ws(buf[i]) {
        i += 1;
    }
    i
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn name_str(b: &[u8]) -> Result<&str, ParseErrorKind> {
    // Names are ASCII by construction; the check only avoids unsafe.
    std::str::from_utf8(b).map_err(|_| ParseErrorKind::InvalidUtf8("metric name"))
}

// ---------------------------------------------------------------------------
// Text format 0.0.4

fn text_line<'a>(line: &'a [u8], line_no: usize) -> Result<LineOutcome<'a>, ParseErrorKind> {
    let start = skip_ws(line, 0);
    match line.get(start) {
        None => Ok(LineOutcome::Skip),
        Some(b'#') => text_comment(line, start),
        Some(_) => {
            if line.last() == Some(&b'\r') {
                return Err(ParseErrorKind::CarriageReturn);
            }
            text_sample(line, start, line_no).map(|s| LineOutcome::Entry(Entry::Sample(s)))
        }
    }
}

fn text_comment(line: &[u8], hash: usize) -> Result<LineOutcome<'_>, ParseErrorKind> {
    let comment = Ok(LineOutcome::Entry(Entry::Comment));
    let kw_start = skip_ws(line, hash + 1);
    if kw_start == hash + 1 {
        return comment;
    }
    let rest = &line[kw_start..];
    let is_help = if rest.starts_with(b"HELP") {
        true
    } else if rest.starts_with(b"TYPE") {
        false
    } else {
        return comment;
    };
    let kw = if is_help { "HELP" } else { "TYPE" };
    let name_start = skip_ws(line, kw_start + 4);
    if name_start == kw_start + 4 {
        // `# HELPFUL` or a bare `# HELP` is just a comment to Prometheus too.
        return comment;
    }
    if line.last() == Some(&b'\r') {
        return Err(ParseErrorKind::CarriageReturn);
    }
    let name_end = scan_ident(line, name_start, NAME_START, NAME_CONT);
    if name_end == name_start {
        return Err(ParseErrorKind::ExpectedMetricNameAfter(kw));
    }
    let metric = name_str(&line[name_start..name_end])?;
    // Prometheus takes the text as everything after exactly one separator.
    let text: &[u8] = match line.get(name_end) {
        None => b"",
        Some(&c) if is_ws(c) => &line[name_end + 1..],
        Some(_) => return Err(ParseErrorKind::ExpectedText(kw)),
    };
    if is_help {
        let text =
            std::str::from_utf8(text).map_err(|_| ParseErrorKind::InvalidUtf8("help text"))?;
        let text = if text.contains('\\') {
            Cow::Owned(unescape(text, false))
        } else {
            Cow::Borrowed(text)
        };
        Ok(LineOutcome::Entry(Entry::Help { metric, text }))
    } else {
        let kind = MetricType::from_text(text)
            .ok_or_else(|| ParseErrorKind::InvalidMetricType(lossy(text)))?;
        Ok(LineOutcome::Entry(Entry::Type { metric, kind }))
    }
}

fn text_sample(line: &[u8], start: usize, line_no: usize) -> Result<Sample<'_>, ParseErrorKind> {
    let name_end = scan_ident(line, start, NAME_START, NAME_CONT);
    if name_end == start {
        return Err(ParseErrorKind::ExpectedMetricName);
    }
    let after_name = skip_ws(line, name_end);
    let (series_end, label_src) = if line.get(after_name) == Some(&b'{') {
        let close = validate_labels(line, after_name + 1, false)?;
        (close + 1, &line[after_name + 1..close + 1])
    } else {
        (name_end, &line[0..0])
    };
    let series = &line[start..series_end];
    // One check over the whole series covers every label value at once.
    let series_str =
        std::str::from_utf8(series).map_err(|_| ParseErrorKind::InvalidUtf8("label value"))?;
    let name = series_str
        .get(..name_end - start)
        .ok_or(ParseErrorKind::InvalidUtf8("metric name"))?;

    let value_start = skip_ws(line, series_end);
    if value_start == line.len() {
        return Err(ParseErrorKind::ExpectedValue {
            metric: name.to_owned(),
        });
    }
    if value_start == series_end {
        return Err(ParseErrorKind::ExpectedWhitespace {
            metric: name.to_owned(),
            found: line[series_end],
        });
    }
    let value_end = token_end_ws(line, value_start);
    let value = parse_value(&line[value_start..value_end])?;

    let ts_start = skip_ws(line, value_end);
    let timestamp_ms = if ts_start == line.len() {
        None
    } else {
        let ts_end = token_end_ws(line, ts_start);
        let tok = &line[ts_start..ts_end];
        let ts = parse_int_ts(tok).ok_or_else(|| ParseErrorKind::InvalidTimestamp(lossy(tok)))?;
        if skip_ws(line, ts_end) != line.len() {
            return Err(ParseErrorKind::ExpectedEndOfLine("timestamp"));
        }
        Some(ts)
    };
    Ok(Sample {
        series,
        name,
        value,
        timestamp_ms,
        label_src,
        line: line_no,
        format: Format::Text,
    })
}

fn parse_int_ts(tok: &[u8]) -> Option<i64> {
    // Prometheus lexes text timestamps as `[0-9]+`: no sign, no fraction.
    if tok.is_empty() {
        return None;
    }
    let mut v: i64 = 0;
    for &c in tok {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(i64::from(c - b'0'))?;
    }
    Some(v)
}

// ---------------------------------------------------------------------------
// OpenMetrics 1.0

fn om_line<'a>(
    line: &'a [u8],
    line_no: usize,
    at_end: bool,
) -> Result<LineOutcome<'a>, ParseErrorKind> {
    match line.first() {
        None => Err(ParseErrorKind::BlankLine),
        Some(b'#') => om_comment(line, at_end),
        Some(_) => {
            if line.last() == Some(&b'\r') {
                return Err(ParseErrorKind::CarriageReturn);
            }
            om_sample(line, line_no).map(|s| LineOutcome::Entry(Entry::Sample(s)))
        }
    }
}

fn om_comment(line: &[u8], at_end: bool) -> Result<LineOutcome<'_>, ParseErrorKind> {
    let Some(rest) = line.strip_prefix(b"# ") else {
        return Err(ParseErrorKind::InvalidComment);
    };
    if rest.starts_with(b"EOF") {
        // Only an optional final newline may follow the terminator.
        return if rest.len() == 3 && at_end {
            Ok(LineOutcome::Eof)
        } else {
            Err(ParseErrorKind::DataAfterEof)
        };
    }
    let (kw, which) = if rest.starts_with(b"HELP ") {
        ("HELP", 0)
    } else if rest.starts_with(b"TYPE ") {
        ("TYPE", 1)
    } else if rest.starts_with(b"UNIT ") {
        ("UNIT", 2)
    } else {
        return Err(ParseErrorKind::InvalidComment);
    };
    if line.last() == Some(&b'\r') {
        return Err(ParseErrorKind::CarriageReturn);
    }
    let name_start = 7;
    let name_end = scan_ident(line, name_start, NAME_START, NAME_CONT);
    if name_end == name_start {
        return Err(ParseErrorKind::ExpectedMetricNameAfter(kw));
    }
    if line.get(name_end) != Some(&b' ') {
        return Err(ParseErrorKind::ExpectedText(kw));
    }
    let metric = name_str(&line[name_start..name_end])?;
    let text = &line[name_end + 1..];
    let entry = match which {
        0 => {
            let text =
                std::str::from_utf8(text).map_err(|_| ParseErrorKind::InvalidUtf8("help text"))?;
            // OpenMetrics escapes HELP like label values, `\"` included.
            let text = if text.contains('\\') {
                Cow::Owned(unescape(text, true))
            } else {
                Cow::Borrowed(text)
            };
            Entry::Help { metric, text }
        }
        1 => {
            let kind = MetricType::from_openmetrics(text)
                .ok_or_else(|| ParseErrorKind::InvalidMetricType(lossy(text)))?;
            Entry::Type { metric, kind }
        }
        _ => {
            let unit =
                std::str::from_utf8(text).map_err(|_| ParseErrorKind::InvalidUtf8("unit"))?;
            let ok = unit.is_empty()
                || (metric.len() > unit.len()
                    && metric.ends_with(unit)
                    && metric.as_bytes()[metric.len() - unit.len() - 1] == b'_');
            if !ok {
                return Err(ParseErrorKind::UnitNotSuffix {
                    metric: metric.to_owned(),
                    unit: unit.to_owned(),
                });
            }
            Entry::Unit { metric, unit }
        }
    };
    Ok(LineOutcome::Entry(entry))
}

fn om_sample(line: &[u8], line_no: usize) -> Result<Sample<'_>, ParseErrorKind> {
    // `_created`, `_total`, `_bucket`, `_gcount` ... lines are ordinary samples:
    // Prometheus 2.42 ingests `_created` as its own series, and so do we.
    let name_end = scan_ident(line, 0, NAME_START, NAME_CONT);
    if name_end == 0 {
        return Err(ParseErrorKind::ExpectedMetricName);
    }
    let (series_end, label_src) = if line.get(name_end) == Some(&b'{') {
        let close = validate_labels(line, name_end + 1, true)?;
        (close + 1, &line[name_end + 1..close + 1])
    } else {
        (name_end, &line[0..0])
    };
    let series = &line[..series_end];
    let series_str =
        std::str::from_utf8(series).map_err(|_| ParseErrorKind::InvalidUtf8("label value"))?;
    let name = series_str
        .get(..name_end)
        .ok_or(ParseErrorKind::InvalidUtf8("metric name"))?;

    // Exactly one space separates tokens in OpenMetrics.
    if line.get(series_end) != Some(&b' ') {
        return Err(ParseErrorKind::ExpectedValue {
            metric: name.to_owned(),
        });
    }
    let value_start = series_end + 1;
    let value_end = space_or_end(line, value_start);
    if value_end == value_start {
        return Err(ParseErrorKind::ExpectedValue {
            metric: name.to_owned(),
        });
    }
    let value = parse_value(&line[value_start..value_end])?;

    let mut timestamp_ms = None;
    if value_end < line.len() {
        if line[value_end..].starts_with(b" # {") {
            skip_exemplar(line, value_end + 3)?;
        } else {
            let ts_start = value_end + 1;
            let ts_end = space_or_end(line, ts_start);
            if ts_end == ts_start {
                return Err(ParseErrorKind::ExpectedTimestampOrExemplar);
            }
            timestamp_ms = Some(parse_om_ts(&line[ts_start..ts_end])?);
            if ts_end < line.len() {
                if line[ts_end..].starts_with(b" # {") {
                    skip_exemplar(line, ts_end + 3)?;
                } else {
                    return Err(ParseErrorKind::ExpectedEndOfLine("timestamp"));
                }
            }
        }
    }
    Ok(Sample {
        series,
        name,
        value,
        timestamp_ms,
        label_src,
        line: line_no,
        format: Format::OpenMetrics,
    })
}

#[inline]
fn space_or_end(line: &[u8], from: usize) -> usize {
    match line.get(from..) {
        Some(rest) => memchr(b' ', rest).map_or(line.len(), |i| from + i),
        None => line.len(),
    }
}

/// Validates an exemplar (`{labels} value [timestamp]`) whose `{` is at
/// `brace`. Exemplars are checked so a malformed one fails the scrape like
/// in Prometheus, but they never surface as samples.
fn skip_exemplar(line: &[u8], brace: usize) -> Result<(), ParseErrorKind> {
    let close = validate_labels(line, brace + 1, true)?;
    let after = close + 1;
    if line.get(after) != Some(&b' ') {
        return Err(ParseErrorKind::ExpectedExemplarValue);
    }
    let v_start = after + 1;
    let v_end = space_or_end(line, v_start);
    if v_end == v_start {
        return Err(ParseErrorKind::ExpectedExemplarValue);
    }
    parse_value(&line[v_start..v_end])?;
    if v_end == line.len() {
        return Ok(());
    }
    let t_start = v_end + 1;
    let t_end = space_or_end(line, t_start);
    if t_end == t_start {
        return Err(ParseErrorKind::InvalidTimestamp(String::new()));
    }
    parse_om_ts(&line[t_start..t_end])?;
    if t_end != line.len() {
        return Err(ParseErrorKind::ExpectedEndOfLine("exemplar timestamp"));
    }
    Ok(())
}

fn parse_om_ts(tok: &[u8]) -> Result<i64, ParseErrorKind> {
    let bad = || ParseErrorKind::InvalidTimestamp(lossy(tok));
    let secs = parse_go_float(tok).ok_or_else(bad)?;
    if !secs.is_finite() {
        return Err(bad());
    }
    let ms = (secs * 1000.0).round();
    // i64::MIN is exactly representable; i64::MAX rounds up to 2^63.
    if !(ms >= i64::MIN as f64 && ms < 9_223_372_036_854_775_808.0) {
        return Err(bad());
    }
    Ok(ms as i64)
}

// ---------------------------------------------------------------------------
// Shared pieces

fn parse_value(tok: &[u8]) -> Result<f64, ParseErrorKind> {
    let v = parse_go_float(tok).ok_or_else(|| ParseErrorKind::InvalidValue(lossy(tok)))?;
    Ok(if v.is_nan() {
        f64::from_bits(NORMAL_NAN)
    } else {
        v
    })
}

/// Accepts what Prometheus' `parseFloat` (Go ParseFloat minus hex floats
/// and `_`) accepts.
fn parse_go_float(tok: &[u8]) -> Option<f64> {
    let first = *tok.first()?;
    // Rust's parser rejects hex and `_` already; it only needs tightening for
    // signed NaN and for overflow, which Go reports as ErrRange.
    let s = std::str::from_utf8(tok).ok()?;
    let v: f64 = s.parse().ok()?;
    if v.is_nan() && (first == b'+' || first == b'-') {
        return None;
    }
    if v.is_infinite() {
        let body = s.strip_prefix(['+', '-']).unwrap_or(s);
        if !(body.eq_ignore_ascii_case("inf") || body.eq_ignore_ascii_case("infinity")) {
            return None;
        }
    }
    Some(v)
}

/// Undoes `\\`, `\n` and (when `quote`) `\"`. Other backslashes stay literal,
/// matching Go's strings.Replacer as used by Prometheus.
fn unescape(s: &str, quote: bool) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        match after.as_bytes().first() {
            Some(b'\\') => {
                out.push('\\');
                rest = &after[1..];
            }
            Some(b'n') => {
                out.push('\n');
                rest = &after[1..];
            }
            Some(b'"') if quote => {
                out.push('"');
                rest = &after[1..];
            }
            _ => {
                out.push('\\');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Checks a label set whose `{` is just before `start`; returns the index of
/// the closing `}`. Allocation-free unless a sample has more than
/// `INLINE_NAMES` labels, where duplicate detection falls back to sorting.
fn validate_labels(line: &[u8], start: usize, om: bool) -> Result<usize, ParseErrorKind> {
    const INLINE_NAMES: usize = 16;
    let buf = line.get(start..).unwrap_or(&[]);
    let mut cursor = Cursor::new(buf, om);
    let mut seen = [(0usize, 0usize); INLINE_NAMES];
    let mut n = 0;
    let mut overflow = false;
    loop {
        match cursor.step()? {
            Step::Close(idx) => {
                if overflow {
                    check_dups_sorted(buf, om)?;
                }
                return Ok(start + idx);
            }
            Step::Label { name, .. } => {
                let nm = &buf[name.0..name.1];
                if n < INLINE_NAMES {
                    if seen[..n].iter().any(|&(s, e)| &buf[s..e] == nm) {
                        return Err(ParseErrorKind::DuplicateLabel(lossy(nm)));
                    }
                    seen[n] = name;
                    n += 1;
                } else {
                    overflow = true;
                }
            }
        }
    }
}

fn check_dups_sorted(buf: &[u8], om: bool) -> Result<(), ParseErrorKind> {
    let mut cursor = Cursor::new(buf, om);
    let mut names: Vec<&[u8]> = Vec::new();
    while let Step::Label { name, .. } = cursor.step()? {
        names.push(&buf[name.0..name.1]);
    }
    names.sort_unstable();
    match names.windows(2).find(|w| w[0] == w[1]) {
        Some(w) => Err(ParseErrorKind::DuplicateLabel(lossy(w[0]))),
        None => Ok(()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CursorState {
    Start,
    AfterComma,
    AfterLabel,
    Closed(usize),
}

/// Walks a label set from just after `{`. Shared by validation in
/// `next_entry` and by lazy decoding in `labels()`, so both accept exactly
/// the same grammar.
#[derive(Debug, Clone)]
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    om: bool,
    state: CursorState,
}

enum Step {
    Label {
        name: (usize, usize),
        value: (usize, usize),
        escaped: bool,
    },
    /// Index of the closing `}` in the cursor's buffer.
    Close(usize),
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a [u8], om: bool) -> Self {
        Cursor {
            buf,
            pos: 0,
            om,
            state: CursorState::Start,
        }
    }

    #[inline]
    fn skip_ws(&mut self) {
        // OpenMetrics allows no whitespace inside a label set.
        if !self.om {
            self.pos = skip_ws(self.buf, self.pos);
        }
    }

    fn step(&mut self) -> Result<Step, ParseErrorKind> {
        loop {
            self.skip_ws();
            let c = self.buf.get(self.pos).copied();
            match self.state {
                CursorState::Closed(idx) => return Ok(Step::Close(idx)),
                CursorState::Start | CursorState::AfterComma => {
                    if c == Some(b'}') {
                        // Text allows `{}` and a trailing comma; OpenMetrics only `{}`.
                        if self.om && self.state == CursorState::AfterComma {
                            return Err(ParseErrorKind::ExpectedLabelName);
                        }
                        return Ok(self.close());
                    }
                    if c.is_none() {
                        return Err(ParseErrorKind::UnterminatedLabelSet);
                    }
                    return self.label();
                }
                CursorState::AfterLabel => match c {
                    Some(b',') => {
                        self.pos += 1;
                        self.state = CursorState::AfterComma;
                    }
                    Some(b'}') => return Ok(self.close()),
                    None => return Err(ParseErrorKind::UnterminatedLabelSet),
                    Some(_) => return Err(ParseErrorKind::ExpectedCommaOrBrace),
                },
            }
        }
    }

    fn close(&mut self) -> Step {
        let idx = self.pos;
        self.pos += 1;
        self.state = CursorState::Closed(idx);
        Step::Close(idx)
    }

    fn label(&mut self) -> Result<Step, ParseErrorKind> {
        let buf = self.buf;
        let name_start = self.pos;
        let name_end = scan_ident(buf, name_start, LABEL_START, LABEL_CONT);
        if name_end == name_start {
            return Err(ParseErrorKind::ExpectedLabelName);
        }
        let label = || lossy(&buf[name_start..name_end]);
        self.pos = name_end;
        self.skip_ws();
        if buf.get(self.pos) != Some(&b'=') {
            return Err(ParseErrorKind::ExpectedEquals { label: label() });
        }
        self.pos += 1;
        self.skip_ws();
        if buf.get(self.pos) != Some(&b'"') {
            return Err(ParseErrorKind::ExpectedLabelValue { label: label() });
        }
        let value_start = self.pos + 1;
        let mut i = value_start;
        let mut escaped = false;
        let value_end = loop {
            let rest = buf.get(i..).unwrap_or(&[]);
            match memchr2(b'"', b'\\', rest) {
                Some(k) if rest[k] == b'"' => break i + k,
                Some(k) => {
                    // The escaped byte is skipped whatever it is, as the
                    // Prometheus lexer's `\\.` does; unescape() decides meaning.
                    escaped = true;
                    i += k + 2;
                    if i > buf.len() {
                        return Err(ParseErrorKind::UnterminatedLabelValue { label: label() });
                    }
                }
                None => return Err(ParseErrorKind::UnterminatedLabelValue { label: label() }),
            }
        };
        self.pos = value_end + 1;
        self.state = CursorState::AfterLabel;
        Ok(Step::Label {
            name: (name_start, name_end),
            value: (value_start, value_end),
            escaped,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &str, format: Format) -> Result<Vec<Entry<'_>>, ParseError> {
        Parser::new(input.as_bytes(), format).collect()
    }

    fn samples(input: &str, format: Format) -> Vec<Sample<'_>> {
        all(input, format)
            .unwrap()
            .into_iter()
            .filter_map(|e| match e {
                Entry::Sample(s) => Some(s),
                _ => None,
            })
            .collect()
    }

    fn err(input: &str, format: Format) -> ParseError {
        match all(input, format) {
            Ok(v) => panic!("expected error, got {v:?}"),
            Err(e) => e,
        }
    }

    fn labels<'a>(s: &Sample<'a>) -> Vec<(&'a str, String)> {
        s.labels()
            .map(|r| r.map(|(n, v)| (n, v.into_owned())))
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn content_type_selects_format() {
        assert_eq!(
            Format::from_content_type("application/openmetrics-text; version=1.0.0; charset=utf-8"),
            Format::OpenMetrics
        );
        assert_eq!(
            Format::from_content_type("Application/OpenMetrics-Text"),
            Format::OpenMetrics
        );
        assert_eq!(
            Format::from_content_type("text/plain; version=0.0.4"),
            Format::Text
        );
        assert_eq!(Format::from_content_type(""), Format::Text);
    }

    #[test]
    fn text_basic_sample() {
        let s = samples("foo_total{a=\"1\",b=\"x\"} 42\n", Format::Text);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].series, b"foo_total{a=\"1\",b=\"x\"}");
        assert_eq!(s[0].name, "foo_total");
        assert_eq!(s[0].value, 42.0);
        assert_eq!(s[0].timestamp_ms, None);
        assert_eq!(labels(&s[0]), vec![("a", "1".into()), ("b", "x".into())]);
    }

    #[test]
    fn text_no_labels_and_empty_set() {
        let s = samples("up 1\nfoo{} 2\n", Format::Text);
        assert_eq!(s[0].series, b"up");
        assert!(labels(&s[0]).is_empty());
        assert_eq!(s[1].series, b"foo{}");
        assert!(labels(&s[1]).is_empty());
    }

    #[test]
    fn text_help_type_comment_blank() {
        let e = all(
            "# HELP foo Some help.\n# TYPE foo counter\n# just a comment\n\n  \nfoo 1\n",
            Format::Text,
        )
        .unwrap();
        assert_eq!(
            e[0],
            Entry::Help {
                metric: "foo",
                text: Cow::Borrowed("Some help.")
            }
        );
        assert_eq!(
            e[1],
            Entry::Type {
                metric: "foo",
                kind: MetricType::Counter
            }
        );
        assert_eq!(e[2], Entry::Comment);
        assert!(matches!(e[3], Entry::Sample(_)));
        assert_eq!(e.len(), 4);
    }

    #[test]
    fn text_help_escapes() {
        let e = all("# HELP foo a\\\\b\\nc \\\"q\\\" \\t\n", Format::Text).unwrap();
        // Text HELP only knows `\\` and `\n`; `\"` and `\t` stay literal.
        assert_eq!(
            e[0],
            Entry::Help {
                metric: "foo",
                text: Cow::Owned("a\\b\nc \\\"q\\\" \\t".into())
            }
        );
        let e = all("# HELP foo\n", Format::Text).unwrap();
        assert_eq!(
            e[0],
            Entry::Help {
                metric: "foo",
                text: Cow::Borrowed("")
            }
        );
    }

    #[test]
    fn text_types() {
        let e = all(
            "# TYPE a gauge\n# TYPE b histogram\n# TYPE c summary\n# TYPE d untyped\n",
            Format::Text,
        )
        .unwrap();
        let kinds: Vec<_> = e
            .iter()
            .map(|e| match e {
                Entry::Type { kind, .. } => *kind,
                _ => panic!(),
            })
            .collect();
        assert_eq!(
            kinds,
            vec![
                MetricType::Gauge,
                MetricType::Histogram,
                MetricType::Summary,
                MetricType::Unknown
            ]
        );
        let e = err("# TYPE a info\n", Format::Text);
        assert_eq!(e.kind, ParseErrorKind::InvalidMetricType("info".into()));
        let e = err("# TYPE a\n", Format::Text);
        assert_eq!(e.kind, ParseErrorKind::InvalidMetricType("".into()));
    }

    #[test]
    fn text_label_escapes_and_specials() {
        let s = samples(r#"m{path="a}b,c\"d\\e\nf",x="\q"} 1"#, Format::Text);
        assert_eq!(s[0].series, br#"m{path="a}b,c\"d\\e\nf",x="\q"}"#);
        let l = labels(&s[0]);
        assert_eq!(l[0], ("path", "a}b,c\"d\\e\nf".to_string()));
        // Unknown escapes are kept verbatim, as Prometheus does.
        assert_eq!(l[1], ("x", "\\q".to_string()));
    }

    #[test]
    fn unescaped_values_are_borrowed() {
        let s = samples("m{a=\"plain\",b=\"x\\\\y\"} 1\n", Format::Text);
        let l: Vec<_> = s[0].labels().collect::<Result<_, _>>().unwrap();
        assert!(matches!(l[0].1, Cow::Borrowed("plain")));
        assert!(matches!(&l[1].1, Cow::Owned(v) if v == "x\\y"));
    }

    #[test]
    fn text_trailing_comma_and_whitespace() {
        let s = samples("m{ a = \"1\" , b=\"2\", }\t3\t 17\t\n", Format::Text);
        assert_eq!(labels(&s[0]), vec![("a", "1".into()), ("b", "2".into())]);
        assert_eq!(s[0].value, 3.0);
        assert_eq!(s[0].timestamp_ms, Some(17));
        assert_eq!(s[0].series, b"m{ a = \"1\" , b=\"2\", }");
    }

    #[test]
    fn text_leading_comma_or_double_comma_rejected() {
        assert_eq!(
            err("m{,} 1\n", Format::Text).kind,
            ParseErrorKind::ExpectedLabelName
        );
        assert_eq!(
            err("m{a=\"1\",,} 1\n", Format::Text).kind,
            ParseErrorKind::ExpectedLabelName
        );
        assert_eq!(
            err("m{a=\"1\" b=\"2\"} 1\n", Format::Text).kind,
            ParseErrorKind::ExpectedCommaOrBrace
        );
    }

    #[test]
    fn special_values() {
        let s = samples(
            "a NaN\nb +Inf\nc -Inf\nd Inf\ne -inf\nf nan\ng 1.5e3\nh -0.25\ni .5\nj 1E-2\n",
            Format::Text,
        );
        assert!(s[0].value.is_nan());
        assert_eq!(s[0].value.to_bits(), NORMAL_NAN);
        assert_eq!(s[1].value, f64::INFINITY);
        assert_eq!(s[2].value, f64::NEG_INFINITY);
        assert_eq!(s[3].value, f64::INFINITY);
        assert_eq!(s[4].value, f64::NEG_INFINITY);
        assert!(s[5].value.is_nan());
        assert_eq!(s[6].value, 1500.0);
        assert_eq!(s[7].value, -0.25);
        assert_eq!(s[8].value, 0.5);
        assert_eq!(s[9].value, 0.01);
    }

    #[test]
    fn invalid_values() {
        for v in [
            "abc", "0x1p3", "1_000", "+NaN", "1e400", "1e", "--1", "1.2.3",
        ] {
            let e = err(&format!("m {v}\n"), Format::Text);
            assert_eq!(e.kind, ParseErrorKind::InvalidValue(v.into()), "{v}");
        }
    }

    #[test]
    fn text_timestamps() {
        let s = samples("m 1 1700000000123\n", Format::Text);
        assert_eq!(s[0].timestamp_ms, Some(1_700_000_000_123));
        for ts in ["-5", "1.5", "99999999999999999999", "1e3"] {
            let e = err(&format!("m 1 {ts}\n"), Format::Text);
            assert_eq!(e.kind, ParseErrorKind::InvalidTimestamp(ts.into()), "{ts}");
        }
        assert_eq!(
            err("m 1 2 3\n", Format::Text).kind,
            ParseErrorKind::ExpectedEndOfLine("timestamp")
        );
    }

    #[test]
    fn error_line_numbers_and_message() {
        let e = err("# HELP foo x\nfoo 1\n\nfoo\n", Format::Text);
        assert_eq!(e.line, 4);
        assert_eq!(
            e.to_string(),
            "line 4: expected value after metric name \"foo\""
        );
        let e = err("a 1\nb{x=\"1\"}\n", Format::Text);
        assert_eq!(e.line, 2);
        assert_eq!(
            e.to_string(),
            "line 2: expected value after metric name \"b\""
        );
    }

    #[test]
    fn parser_stops_after_error() {
        let mut p = Parser::new(b"a 1\nb x\nc 3\n", Format::Text);
        assert!(p.next_entry().unwrap().is_ok());
        assert!(p.next_entry().unwrap().is_err());
        assert!(p.next_entry().is_none());
        assert!(p.next_entry().is_none());
    }

    #[test]
    fn duplicate_labels_rejected() {
        let e = err("m{a=\"1\",b=\"2\",a=\"3\"} 1\n", Format::Text);
        assert_eq!(e.kind, ParseErrorKind::DuplicateLabel("a".into()));
        // Beyond the inline budget the sorted fallback must still catch it.
        let mut line = String::from("m{");
        for i in 0..40 {
            line.push_str(&format!("l{i}=\"v\","));
        }
        line.push_str("l3=\"again\"} 1\n");
        assert_eq!(
            err(&line, Format::Text).kind,
            ParseErrorKind::DuplicateLabel("l3".into())
        );
        line = line.replace("l3=\"again\"", "z=\"ok\"");
        assert_eq!(labels(&samples(&line, Format::Text)[0]).len(), 41);
    }

    #[test]
    fn invalid_names() {
        assert_eq!(
            err("1abc 1\n", Format::Text).kind,
            ParseErrorKind::ExpectedMetricName
        );
        assert_eq!(
            err("{a=\"b\"} 1\n", Format::Text).kind,
            ParseErrorKind::ExpectedMetricName
        );
        assert_eq!(
            err("m{1a=\"b\"} 1\n", Format::Text).kind,
            ParseErrorKind::ExpectedLabelName
        );
        assert_eq!(
            err("m{a:b=\"b\"} 1\n", Format::Text).kind,
            ParseErrorKind::ExpectedEquals { label: "a".into() }
        );
        assert!(matches!(
            err("foo-bar 1\n", Format::Text).kind,
            ParseErrorKind::ExpectedWhitespace { found: b'-', .. }
        ));
        let s = samples("ns:sub_metric:rate5m 1\n", Format::Text);
        assert_eq!(s[0].name, "ns:sub_metric:rate5m");
    }

    #[test]
    fn unterminated_label_value_and_set() {
        assert_eq!(
            err("m{a=\"1} 1\n", Format::Text).kind,
            ParseErrorKind::UnterminatedLabelValue { label: "a".into() }
        );
        assert_eq!(
            err("m{a=\"1\\\"} 1\n", Format::Text).kind,
            ParseErrorKind::UnterminatedLabelValue { label: "a".into() }
        );
        assert_eq!(
            err("m{a=\"1\"\n", Format::Text).kind,
            ParseErrorKind::UnterminatedLabelSet
        );
        assert_eq!(
            err("m{a=1} 1\n", Format::Text).kind,
            ParseErrorKind::ExpectedLabelValue { label: "a".into() }
        );
        // A raw newline inside quotes ends the line first.
        assert_eq!(err("m{a=\"x\ny\"} 1\n", Format::Text).line, 1);
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let e = Parser::new(b"m{a=\"\xff\"} 1\n", Format::Text)
            .next()
            .unwrap()
            .unwrap_err();
        assert_eq!(e.kind, ParseErrorKind::InvalidUtf8("label value"));
        let e = Parser::new(b"# HELP m \xc3\x28\n", Format::Text)
            .next()
            .unwrap()
            .unwrap_err();
        assert_eq!(e.kind, ParseErrorKind::InvalidUtf8("help text"));
        // Free comments are never interpreted, so their bytes do not matter.
        assert_eq!(
            Parser::new(b"# \xff\xfe\n", Format::Text)
                .next()
                .unwrap()
                .unwrap(),
            Entry::Comment
        );
        let s = samples("m{a=\"h\u{e9}llo \u{1f600}\"} 1\n", Format::Text);
        assert_eq!(labels(&s[0])[0].1, "h\u{e9}llo \u{1f600}");
    }

    #[test]
    fn crlf_rejected() {
        let e = err("a 1\r\nb 2\r\n", Format::Text);
        assert_eq!((e.line, e.kind), (1, ParseErrorKind::CarriageReturn));
        assert_eq!(
            err("# TYPE a counter\r\n", Format::Text).kind,
            ParseErrorKind::CarriageReturn
        );
        assert_eq!(
            err("a 1\r\n# EOF\n", Format::OpenMetrics).kind,
            ParseErrorKind::CarriageReturn
        );
    }

    #[test]
    fn empty_and_garbage_input() {
        assert!(all("", Format::Text).unwrap().is_empty());
        assert!(all("\n\n\n", Format::Text).unwrap().is_empty());
        assert_eq!(
            err("", Format::OpenMetrics).kind,
            ParseErrorKind::MissingEof
        );
        for g in [
            "\u{0}\u{1}\u{2}",
            "}{",
            "=\"",
            "\"m\" 1",
            "m{",
            "m{a",
            "m{a=",
            "m{a=\"",
            "# TYPE",
            "#",
        ] {
            let _ = all(g, Format::Text);
            let _ = all(g, Format::OpenMetrics);
        }
        assert!(all("\u{0}", Format::Text).is_err());
        let bytes: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
        for f in [Format::Text, Format::OpenMetrics] {
            for e in Parser::new(&bytes, f) {
                if let Ok(Entry::Sample(s)) = e {
                    s.labels().for_each(drop);
                }
            }
        }
    }

    #[test]
    fn last_line_without_newline() {
        let s = samples("a 1\nb 2", Format::Text);
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].value, 2.0);
    }

    #[test]
    fn series_bytes_are_stable_cache_keys() {
        let body = "m{a=\"1\"} 1 100\nm{a=\"1\"} 2 200\nm{a=\"2\"} 3\n";
        let s = samples(body, Format::Text);
        assert_eq!(s[0].series, s[1].series);
        assert_ne!(s[0].series, s[2].series);
    }

    const OM: &str = "# TYPE foo counter\n# HELP foo A \\\"counter\\\".\n# UNIT foo_seconds seconds\nfoo_total{a=\"b\"} 1 1700000000.5\nfoo_created{a=\"b\"} 1699999999\n# EOF\n";

    #[test]
    fn om_basic() {
        let e = all(OM, Format::OpenMetrics).unwrap();
        assert_eq!(
            e[0],
            Entry::Type {
                metric: "foo",
                kind: MetricType::Counter
            }
        );
        // OpenMetrics HELP also unescapes `\"`.
        assert_eq!(
            e[1],
            Entry::Help {
                metric: "foo",
                text: Cow::Owned("A \"counter\".".into())
            }
        );
        assert_eq!(
            e[2],
            Entry::Unit {
                metric: "foo_seconds",
                unit: "seconds"
            }
        );
        let Entry::Sample(s) = &e[3] else { panic!() };
        assert_eq!(
            (s.name, s.value, s.timestamp_ms),
            ("foo_total", 1.0, Some(1_700_000_000_500))
        );
        // `_created` is an ordinary series, as in Prometheus 2.42.
        let Entry::Sample(s) = &e[4] else { panic!() };
        assert_eq!(s.name, "foo_created");
        assert_eq!(s.value, 1_699_999_999.0);
        assert_eq!(e.len(), 5);
    }

    #[test]
    fn om_types() {
        let body = "# TYPE a gaugehistogram\n# TYPE b info\n# TYPE c stateset\n# TYPE d unknown\n# TYPE e summary\n# EOF";
        let kinds: Vec<_> = all(body, Format::OpenMetrics)
            .unwrap()
            .into_iter()
            .map(|e| match e {
                Entry::Type { kind, .. } => kind,
                _ => panic!(),
            })
            .collect();
        assert_eq!(
            kinds,
            vec![
                MetricType::GaugeHistogram,
                MetricType::Info,
                MetricType::StateSet,
                MetricType::Unknown,
                MetricType::Summary
            ]
        );
        assert_eq!(
            err("# TYPE a untyped\n# EOF\n", Format::OpenMetrics).kind,
            ParseErrorKind::InvalidMetricType("untyped".into())
        );
    }

    #[test]
    fn om_missing_or_trailing_eof() {
        let e = err("foo 1\n", Format::OpenMetrics);
        assert_eq!(
            (e.line, e.to_string()),
            (2, "line 2: data does not end with # EOF".to_string())
        );
        assert_eq!(
            err("foo 1\n# EOF\nbar 2\n", Format::OpenMetrics).kind,
            ParseErrorKind::DataAfterEof
        );
        assert_eq!(
            err("# EOF\n\n", Format::OpenMetrics).kind,
            ParseErrorKind::DataAfterEof
        );
        assert_eq!(
            err("# EOF \n", Format::OpenMetrics).kind,
            ParseErrorKind::DataAfterEof
        );
        assert!(all("# EOF", Format::OpenMetrics).unwrap().is_empty());
        // In the text format `# EOF` is just a comment.
        assert_eq!(all("# EOF\nfoo 1\n", Format::Text).unwrap().len(), 2);
    }

    #[test]
    fn om_timestamps_are_seconds() {
        let s = samples(
            "a 1 1.0005\nb 1 -2\nc 1 1700000000\nd 1 0.0004\n# EOF\n",
            Format::OpenMetrics,
        );
        assert_eq!(s[0].timestamp_ms, Some(1001)); // rounded, not truncated
        assert_eq!(s[1].timestamp_ms, Some(-2000));
        assert_eq!(s[2].timestamp_ms, Some(1_700_000_000_000));
        assert_eq!(s[3].timestamp_ms, Some(0));
        for ts in ["NaN", "+Inf", "1e300", "x"] {
            let e = err(&format!("a 1 {ts}\n# EOF\n"), Format::OpenMetrics);
            assert_eq!(e.kind, ParseErrorKind::InvalidTimestamp(ts.into()), "{ts}");
        }
    }

    #[test]
    fn om_exemplars_are_skipped() {
        let body = "# TYPE foo histogram\n\
foo_bucket{le=\"0.1\"} 8 # {trace_id=\"abc\"} 0.05 1700000000.1\n\
foo_bucket{le=\"+Inf\"} 10 1700000000 # {} 2\n\
foo_count 10 # {trace_id=\"a\\\"b\",span=\"x\"} 1.0\n# EOF\n";
        let s = samples(body, Format::OpenMetrics);
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].series, b"foo_bucket{le=\"0.1\"}");
        assert_eq!((s[0].value, s[0].timestamp_ms), (8.0, None));
        assert_eq!(
            (s[1].value, s[1].timestamp_ms),
            (10.0, Some(1_700_000_000_000))
        );
        assert_eq!(labels(&s[1]), vec![("le", "+Inf".into())]);
        assert_eq!(s[2].name, "foo_count");
    }

    #[test]
    fn om_bad_exemplars_fail() {
        for line in [
            "a 1 # {x=\"1\"}",
            "a 1 # {x=\"1\"} ",
            "a 1 # {x=\"1\"} v",
            "a 1 # {x=\"1\"} 1 2 3",
            "a 1 # {x=1} 1",
            "a 1 # {x=\"1\",x=\"2\"} 1",
            "a 1 # x",
            "a 1 2 # {x=\"1\"} 1 NaN",
        ] {
            assert!(
                all(&format!("{line}\n# EOF\n"), Format::OpenMetrics).is_err(),
                "{line}"
            );
        }
    }

    #[test]
    fn om_strict_spacing_and_commas() {
        for line in [
            "a  1",
            "a 1 ",
            "a\t1",
            "a {b=\"1\"} 1",
            "a{b=\"1\",} 1",
            "a{ b=\"1\"} 1",
            "a{b = \"1\"} 1",
            "a 1  2",
        ] {
            assert!(
                all(&format!("{line}\n# EOF\n"), Format::OpenMetrics).is_err(),
                "{line:?}"
            );
        }
        // Trailing comma and inner spaces are fine in the text format.
        assert!(all("a{b=\"1\",} 1\n", Format::Text).is_ok());
    }

    #[test]
    fn om_rejects_blank_lines_and_free_comments() {
        assert_eq!(
            err("a 1\n\n# EOF\n", Format::OpenMetrics).kind,
            ParseErrorKind::BlankLine
        );
        let e = err("a 1\n# hello\n# EOF\n", Format::OpenMetrics);
        assert_eq!((e.line, e.kind), (2, ParseErrorKind::InvalidComment));
        assert_eq!(
            err("#TYPE a gauge\n# EOF\n", Format::OpenMetrics).kind,
            ParseErrorKind::InvalidComment
        );
        assert_eq!(
            err("# HELP a\n# EOF\n", Format::OpenMetrics).kind,
            ParseErrorKind::ExpectedText("HELP")
        );
    }

    #[test]
    fn om_unit_must_be_suffix() {
        assert_eq!(
            err("# UNIT foo_bytes seconds\n# EOF\n", Format::OpenMetrics).kind,
            ParseErrorKind::UnitNotSuffix {
                metric: "foo_bytes".into(),
                unit: "seconds".into()
            }
        );
        assert!(err("# UNIT seconds seconds\n# EOF\n", Format::OpenMetrics).line == 1);
        assert!(all("# UNIT foo \n# EOF\n", Format::OpenMetrics).is_ok());
        // The text format has no UNIT; it is an ordinary comment there.
        assert_eq!(
            all("# UNIT foo_bytes seconds\n", Format::Text).unwrap(),
            vec![Entry::Comment]
        );
    }

    #[test]
    fn om_label_values_with_escapes() {
        let s = samples("m{a=\"x}y,z\\\"\\\\\\n\"} 1\n# EOF\n", Format::OpenMetrics);
        assert_eq!(labels(&s[0]), vec![("a", "x}y,z\"\\\n".into())]);
    }

    #[test]
    fn labels_iterator_reports_errors_instead_of_panicking() {
        // Hand-built samples can carry label bytes the parser never produced.
        let s = Sample {
            series: b"m",
            name: "m",
            value: 0.0,
            timestamp_ms: None,
            label_src: b"a=\"\xff\"}",
            line: 7,
            format: Format::Text,
        };
        let e = s.labels().next().unwrap().unwrap_err();
        assert_eq!(e.line, 7);
        assert_eq!(e.kind, ParseErrorKind::InvalidUtf8("label value"));
        let s = Sample {
            label_src: b"a=",
            ..s
        };
        assert!(s.labels().next().unwrap().is_err());
    }

    #[test]
    fn help_with_leading_whitespace_and_tabs() {
        let e = all("  #\tHELP\tfoo\t two  \n", Format::Text).unwrap();
        assert_eq!(
            e[0],
            Entry::Help {
                metric: "foo",
                text: Cow::Borrowed(" two  ")
            }
        );
        assert_eq!(
            err("# HELP 1foo x\n", Format::Text).kind,
            ParseErrorKind::ExpectedMetricNameAfter("HELP")
        );
        assert_eq!(
            all("#HELP foo x\n# HELPFUL\n", Format::Text).unwrap(),
            vec![Entry::Comment, Entry::Comment]
        );
    }
}
