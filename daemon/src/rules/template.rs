//! Alert templates: parsing and rendering the text of alerting-rule
//! annotations and labels.
//!
//! This module owns parsing and rendering of alert templates and nothing else:
//! it does no I/O, and the `query` template function goes through a
//! caller-supplied [`TemplateQuery`]. The language is the subset of Go's
//! `text/template` that alerting rules use, with Go's semantics (pipelines,
//! variables and their scoping, truthiness, `fmt` printing of values), plus
//! the template functions of Prometheus 2.42. As in Prometheus, `$labels`,
//! `$externalLabels`, `$externalURL` and `$value` are predefined, and the dot
//! is a struct with `.Labels`, `.ExternalLabels`, `.ExternalURL` and `.Value`.
//! Prometheus executes with `missingkey=zero`, so a missing label renders as
//! the empty string.

use std::collections::{BTreeMap, HashMap};
use std::fmt::{self, Write as _};
use std::net::IpAddr;
use std::rc::Rc;

use regex::Regex;

/// Deepest nesting of control structures and parenthesized pipelines.
const MAX_DEPTH: usize = 100;

/// Variables every alert template starts with, as Prometheus prepends them.
const PREDEFINED: [&str; 5] = ["$", "$labels", "$externalLabels", "$externalURL", "$value"];

/// A parse or execution error, worded like Go's `text/template`.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum TemplateError {
    #[error("template: {name}:{line}: {msg}")]
    Parse {
        name: String,
        line: usize,
        msg: String,
    },
    #[error("template: {name}:{line}: executing \"{name}\": {msg}")]
    Exec {
        name: String,
        line: usize,
        msg: String,
    },
}

/// One element of an instant vector returned by [`TemplateQuery::query`].
#[derive(Debug, Clone, PartialEq)]
pub struct QuerySample {
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// Runs a PromQL query for the `query` template function.
pub trait TemplateQuery {
    fn query(&self, q: &str) -> Result<Vec<QuerySample>, String>;
}

/// A [`TemplateQuery`] for places where queries cannot run.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoQuery;

impl TemplateQuery for NoQuery {
    fn query(&self, _q: &str) -> Result<Vec<QuerySample>, String> {
        Err("query is not available here".to_string())
    }
}

/// A [`TemplateQuery`] whose every query fails.
pub fn no_query() -> NoQuery {
    NoQuery
}

/// The data an alert template is rendered with.
#[derive(Debug, Clone, Copy)]
pub struct TemplateData<'a> {
    /// The alert's labels, sorted by name.
    pub labels: &'a [(String, String)],
    pub external_labels: &'a [(String, String)],
    pub external_url: &'a str,
    pub value: f64,
}

/// A parsed alert template.
#[derive(Debug, Clone)]
pub struct Template {
    name: String,
    root: Vec<Node>,
}

impl Template {
    /// `name` is used in error messages, Go-style: "template: NAME:LINE: msg".
    pub fn parse(name: &str, text: &str) -> Result<Template, TemplateError> {
        Self::parse_with_vars(name, text, &[])
    }

    /// Like [`Template::parse`], with more predefined string variables
    /// (e.g. `$target` in playbooks), given at render time by
    /// [`Template::render_with_vars`].
    pub fn parse_with_vars(
        name: &str,
        text: &str,
        extra: &[&str],
    ) -> Result<Template, TemplateError> {
        let mut parser = Parser {
            name,
            toks: Lexer::lex(text),
            pos: 0,
            line: 1,
            vars: PREDEFINED
                .iter()
                .chain(extra)
                .map(|v| v.to_string())
                .collect(),
            range_depth: 0,
            depth: 0,
            action_line: 0,
        };
        let root = parser.parse()?;
        Ok(Template {
            name: name.to_string(),
            root,
        })
    }

    /// The name given to [`Template::parse`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Executes the template against `data`; `query` serves the `query` function.
    pub fn render(
        &self,
        data: &TemplateData<'_>,
        query: &dyn TemplateQuery,
    ) -> Result<String, TemplateError> {
        self.render_with_vars(data, query, &[])
    }

    /// Renders with the extra variables declared at parse time.
    pub fn render_with_vars(
        &self,
        data: &TemplateData<'_>,
        query: &dyn TemplateQuery,
        extra: &[(&str, &str)],
    ) -> Result<String, TemplateError> {
        let labels: Rc<BTreeMap<String, String>> = Rc::new(data.labels.iter().cloned().collect());
        let external: Rc<BTreeMap<String, String>> =
            Rc::new(data.external_labels.iter().cloned().collect());
        let root = Value::Root(Rc::new(RootData {
            labels: labels.clone(),
            external_labels: external.clone(),
            external_url: data.external_url.to_string(),
            value: data.value,
        }));
        let mut vars = vec![
            ("$".to_string(), root.clone()),
            ("$labels".to_string(), Value::StrMap(labels)),
            ("$externalLabels".to_string(), Value::StrMap(external)),
            (
                "$externalURL".to_string(),
                Value::Str(data.external_url.to_string()),
            ),
            ("$value".to_string(), Value::Float(data.value)),
        ];
        vars.extend(
            extra
                .iter()
                .map(|(k, v)| (k.to_string(), Value::Str(v.to_string()))),
        );
        let mut ex = Exec {
            query,
            external_url: data.external_url,
            vars,
            line: 1,
            out: String::new(),
            regexes: HashMap::new(),
        };
        match ex.walk(&root, &self.root) {
            Ok(_) => Ok(ex.out),
            Err(e) => Err(TemplateError::Exec {
                name: self.name.clone(),
                line: e.line,
                msg: e.msg,
            }),
        }
    }
}

// ---------------------------------------------------------------------------
// Lexer
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum T {
    Text,
    LeftDelim,
    RightDelim,
    Space,
    Ident,
    Field,
    Variable,
    Dot,
    Str,
    RawStr,
    Number,
    CharConst,
    Bool,
    Nil,
    Pipe,
    LParen,
    RParen,
    Declare,
    Assign,
    Char,
    Eof,
    Error,
    If,
    Else,
    End,
    Range,
    With,
    Break,
    Continue,
    Define,
    Template,
    Block,
}

impl T {
    fn is_keyword(self) -> bool {
        matches!(
            self,
            T::Dot
                | T::Nil
                | T::If
                | T::Else
                | T::End
                | T::Range
                | T::With
                | T::Break
                | T::Continue
                | T::Define
                | T::Template
                | T::Block
        )
    }
}

#[derive(Debug, Clone)]
struct Token {
    kind: T,
    val: String,
    line: usize,
}

impl Token {
    /// Go's `item.String()`, used in "unexpected ..." messages.
    fn describe(&self) -> String {
        match self.kind {
            T::Eof => "EOF".to_string(),
            T::Error => self.val.clone(),
            k if k.is_keyword() => format!("<{}>", self.val),
            _ if self.val.chars().count() > 10 => {
                let head: String = self.val.chars().take(10).collect();
                format!("{}...", go_quote(&head))
            }
            _ => go_quote(&self.val),
        }
    }
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_alnum(c: char) -> bool {
    c == '_' || c.is_alphabetic() || c.is_numeric()
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    line: usize,
    toks: Vec<Token>,
    paren_depth: i32,
}

impl<'a> Lexer<'a> {
    /// Tokenizes `src`; the result always ends with an `Eof` or `Error` token.
    fn lex(src: &'a str) -> Vec<Token> {
        let mut lx = Lexer {
            src,
            pos: 0,
            line: 1,
            toks: Vec::new(),
            paren_depth: 0,
        };
        lx.run();
        lx.toks
    }

    fn advance_to(&mut self, to: usize) {
        self.line += self.src[self.pos..to].matches('\n').count();
        self.pos = to;
    }

    fn peek_char(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn push(&mut self, kind: T, val: &str, line: usize) {
        self.toks.push(Token {
            kind,
            val: val.to_string(),
            line,
        });
    }

    fn emit(&mut self, kind: T, start: usize, line: usize) -> bool {
        let val = self.src[start..self.pos].to_string();
        self.toks.push(Token { kind, val, line });
        true
    }

    fn fail(&mut self, msg: String) -> bool {
        let line = self.line;
        self.toks.push(Token {
            kind: T::Error,
            val: msg,
            line,
        });
        false
    }

    fn skip_leading_space(&mut self) {
        let rest = &self.src[self.pos..];
        let n = rest.len() - rest.trim_start_matches(is_space).len();
        self.advance_to(self.pos + n);
    }

    /// Whether the input is at `}}` or ` -}}`; the second value is the trim marker.
    fn at_right_delim(&self) -> (bool, bool) {
        let rest = &self.src.as_bytes()[self.pos..];
        if rest.len() >= 4 && is_space(rest[0] as char) && rest[1] == b'-' && &rest[2..4] == b"}}" {
            return (true, true);
        }
        (rest.starts_with(b"}}"), false)
    }

    fn at_terminator(&self) -> bool {
        match self.peek_char() {
            None => true,
            Some(c) if is_space(c) => true,
            Some('.' | ',' | '|' | ':' | ')' | '(') => true,
            Some(_) => self.src[self.pos..].starts_with("}}"),
        }
    }

    fn run(&mut self) {
        loop {
            let rest = &self.src[self.pos..];
            let Some(x) = rest.find("{{") else {
                if !rest.is_empty() {
                    let line = self.line;
                    self.push(T::Text, rest, line);
                    self.advance_to(self.src.len());
                }
                let line = self.line;
                self.push(T::Eof, "", line);
                return;
            };
            let delim = self.pos + x;
            let after_delim = &self.src.as_bytes()[delim + 2..];
            let trim = after_delim.len() >= 2
                && after_delim[0] == b'-'
                && is_space(after_delim[1] as char);
            let full = &self.src[self.pos..delim];
            let text = if trim {
                full.trim_end_matches(is_space)
            } else {
                full
            };
            if !text.is_empty() {
                let line = self.line;
                self.push(T::Text, text, line);
            }
            self.advance_to(delim);
            let line = self.line;
            self.pos = delim + 2;
            let marker = if trim { 2 } else { 0 };
            if self.src[self.pos + marker..].starts_with("/*") {
                self.advance_to(self.pos + marker);
                if !self.lex_comment() {
                    return;
                }
                continue;
            }
            self.push(T::LeftDelim, "{{", line);
            self.advance_to(self.pos + marker);
            self.paren_depth = 0;
            if !self.lex_inside_action() {
                return;
            }
        }
    }

    fn lex_comment(&mut self) -> bool {
        self.pos += 2;
        let Some(x) = self.src[self.pos..].find("*/") else {
            return self.fail("unclosed comment".to_string());
        };
        self.advance_to(self.pos + x + 2);
        let (delim, trim) = self.at_right_delim();
        if !delim {
            return self.fail("comment ends before closing delimiter".to_string());
        }
        if trim {
            self.advance_to(self.pos + 2);
        }
        self.pos += 2;
        if trim {
            self.skip_leading_space();
        }
        true
    }

    fn lex_inside_action(&mut self) -> bool {
        loop {
            let (delim, trim) = self.at_right_delim();
            if delim {
                if self.paren_depth != 0 {
                    return self.fail("unclosed left paren".to_string());
                }
                if trim {
                    self.advance_to(self.pos + 2);
                }
                let line = self.line;
                self.pos += 2;
                self.push(T::RightDelim, "}}", line);
                if trim {
                    self.skip_leading_space();
                }
                return true;
            }
            let Some(c) = self.peek_char() else {
                return self.fail("unclosed action".to_string());
            };
            let start = self.pos;
            let line = self.line;
            if is_space(c) {
                let rest = &self.src[start..];
                let run_end = start + rest.len() - rest.trim_start_matches(is_space).len();
                // The last space before "-}}" belongs to the trim marker.
                let end = if self.src[run_end..].starts_with("-}}") {
                    run_end - 1
                } else {
                    run_end
                };
                if end > start {
                    self.advance_to(end);
                    self.emit(T::Space, start, line);
                }
                continue;
            }
            self.pos += c.len_utf8();
            let ok = match c {
                '=' => self.emit(T::Assign, start, line),
                ':' => {
                    if self.peek_char() == Some('=') {
                        self.pos += 1;
                        self.emit(T::Declare, start, line)
                    } else {
                        self.fail("expected :=".to_string())
                    }
                }
                '|' => self.emit(T::Pipe, start, line),
                '(' => {
                    self.paren_depth += 1;
                    self.emit(T::LParen, start, line)
                }
                ')' => {
                    self.paren_depth -= 1;
                    if self.paren_depth < 0 {
                        self.fail("unexpected right paren".to_string())
                    } else {
                        self.emit(T::RParen, start, line)
                    }
                }
                '"' => self.lex_quote(start, line, '"', T::Str, "unterminated quoted string"),
                '\'' => self.lex_quote(
                    start,
                    line,
                    '\'',
                    T::CharConst,
                    "unterminated character constant",
                ),
                '`' => self.lex_raw_quote(start, line),
                '$' => self.lex_field_or_variable(T::Variable, start, line),
                '.' if self.peek_char().is_some_and(|d| !d.is_ascii_digit()) => {
                    self.lex_field_or_variable(T::Field, start, line)
                }
                '.' | '+' | '-' | '0'..='9' => {
                    self.pos = start;
                    self.lex_number(start, line)
                }
                c if is_alnum(c) => {
                    self.pos = start;
                    self.lex_identifier(start, line)
                }
                c if c.is_ascii() && !c.is_ascii_control() => self.emit(T::Char, start, line),
                c => self.fail(format!(
                    "unrecognized character in action: {}",
                    go_sharp_u(c)
                )),
            };
            if !ok {
                return false;
            }
        }
    }

    fn lex_quote(&mut self, start: usize, line: usize, quote: char, kind: T, err: &str) -> bool {
        loop {
            match self.peek_char() {
                Some('\\') => {
                    self.pos += 1;
                    match self.peek_char() {
                        Some(c) if c != '\n' => self.pos += c.len_utf8(),
                        _ => return self.fail(err.to_string()),
                    }
                }
                None | Some('\n') => return self.fail(err.to_string()),
                Some(c) => {
                    self.pos += c.len_utf8();
                    if c == quote {
                        return self.emit(kind, start, line);
                    }
                }
            }
        }
    }

    fn lex_raw_quote(&mut self, start: usize, line: usize) -> bool {
        match self.src[self.pos..].find('`') {
            Some(x) => {
                self.advance_to(self.pos + x + 1);
                self.emit(T::RawStr, start, line)
            }
            None => self.fail("unterminated raw quoted string".to_string()),
        }
    }

    fn lex_field_or_variable(&mut self, kind: T, start: usize, line: usize) -> bool {
        if self.at_terminator() {
            let k = if kind == T::Variable {
                T::Variable
            } else {
                T::Dot
            };
            return self.emit(k, start, line);
        }
        while let Some(c) = self.peek_char() {
            if !is_alnum(c) {
                break;
            }
            self.pos += c.len_utf8();
        }
        if !self.at_terminator() {
            let c = self.peek_char().unwrap_or('\u{FFFD}');
            return self.fail(format!("bad character {}", go_sharp_u(c)));
        }
        self.emit(kind, start, line)
    }

    fn lex_identifier(&mut self, start: usize, line: usize) -> bool {
        while let Some(c) = self.peek_char() {
            if !is_alnum(c) {
                break;
            }
            self.pos += c.len_utf8();
        }
        if !self.at_terminator() {
            let c = self.peek_char().unwrap_or('\u{FFFD}');
            return self.fail(format!("bad character {}", go_sharp_u(c)));
        }
        let kind = match &self.src[start..self.pos] {
            "if" => T::If,
            "else" => T::Else,
            "end" => T::End,
            "range" => T::Range,
            "with" => T::With,
            "break" => T::Break,
            "continue" => T::Continue,
            "define" => T::Define,
            "template" => T::Template,
            "block" => T::Block,
            "nil" => T::Nil,
            "true" | "false" => T::Bool,
            _ => T::Ident,
        };
        self.emit(kind, start, line)
    }

    fn accept(&mut self, valid: &str) -> bool {
        match self.peek_char() {
            Some(c) if valid.contains(c) => {
                self.pos += c.len_utf8();
                true
            }
            _ => false,
        }
    }

    fn accept_run(&mut self, valid: &str) {
        while self.accept(valid) {}
    }

    /// Go's `lexer.scanNumber`.
    fn scan_number(&mut self) -> bool {
        self.accept("+-");
        let mut digits = "0123456789_";
        if self.accept("0") {
            if self.accept("xX") {
                digits = "0123456789abcdefABCDEF_";
            } else if self.accept("oO") {
                digits = "01234567_";
            } else if self.accept("bB") {
                digits = "01_";
            }
        }
        self.accept_run(digits);
        if self.accept(".") {
            self.accept_run(digits);
        }
        if digits.len() == 11 && self.accept("eE") {
            self.accept("+-");
            self.accept_run("0123456789_");
        }
        if digits.len() == 23 && self.accept("pP") {
            self.accept("+-");
            self.accept_run("0123456789_");
        }
        self.accept("i");
        match self.peek_char() {
            Some(c) if is_alnum(c) => {
                self.pos += c.len_utf8();
                false
            }
            _ => true,
        }
    }

    fn lex_number(&mut self, start: usize, line: usize) -> bool {
        if !self.scan_number() {
            let text = go_quote(&self.src[start..self.pos]);
            return self.fail(format!("bad number syntax: {text}"));
        }
        if matches!(self.peek_char(), Some('+' | '-')) {
            if !self.scan_number() || !self.src[..self.pos].ends_with('i') {
                let text = go_quote(&self.src[start..self.pos]);
                return self.fail(format!("bad number syntax: {text}"));
            }
            return self.fail("complex numbers are not supported".to_string());
        }
        self.emit(T::Number, start, line)
    }
}

// ---------------------------------------------------------------------------
// Parse tree
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Action(Pipe),
    If(Box<Control>),
    Range(Box<Control>),
    With(Box<Control>),
    Break,
    Continue,
}

#[derive(Debug, Clone)]
struct Control {
    pipe: Pipe,
    list: Vec<Node>,
    else_list: Option<Vec<Node>>,
}

#[derive(Debug, Clone)]
struct Pipe {
    line: usize,
    decl: Vec<String>,
    is_assign: bool,
    cmds: Vec<Command>,
}

#[derive(Debug, Clone)]
struct Command {
    line: usize,
    args: Vec<Arg>,
}

#[derive(Debug, Clone)]
struct NumLit {
    text: String,
    int: Option<i64>,
    float: Option<f64>,
    is_char: bool,
}

#[derive(Debug, Clone)]
enum Arg {
    Ident(String),
    Dot,
    Nil,
    Bool(bool),
    Number(NumLit),
    Str {
        quoted: String,
        text: String,
    },
    /// `.A.B`, evaluated on dot.
    Field(Vec<String>),
    /// `$x.A.B`: the variable name first.
    Variable(Vec<String>),
    Pipe(Box<Pipe>),
    /// `(pipeline).A.B`
    Chain(Box<Arg>, Vec<String>),
}

impl fmt::Display for Arg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arg::Ident(n) => f.write_str(n),
            Arg::Dot => f.write_str("."),
            Arg::Nil => f.write_str("nil"),
            Arg::Bool(b) => write!(f, "{b}"),
            Arg::Number(n) => f.write_str(&n.text),
            Arg::Str { quoted, .. } => f.write_str(quoted),
            Arg::Field(ids) => ids.iter().try_for_each(|id| write!(f, ".{id}")),
            Arg::Variable(parts) => f.write_str(&parts.join(".")),
            Arg::Pipe(p) => write!(f, "({p})"),
            Arg::Chain(node, ids) => {
                write!(f, "{node}")?;
                ids.iter().try_for_each(|id| write!(f, ".{id}"))
            }
        }
    }
}

impl fmt::Display for Pipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.decl.is_empty() {
            let op = if self.is_assign { "=" } else { ":=" };
            write!(f, "{} {op} ", self.decl.join(", "))?;
        }
        for (i, c) in self.cmds.iter().enumerate() {
            if i > 0 {
                f.write_str(" | ")?;
            }
            for (j, a) in c.args.iter().enumerate() {
                if j > 0 {
                    f.write_str(" ")?;
                }
                write!(f, "{a}")?;
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------

enum Item {
    Node(Node),
    End,
    Else,
}

type PResult<X> = Result<X, TemplateError>;

struct Parser<'a> {
    name: &'a str,
    toks: Vec<Token>,
    pos: usize,
    line: usize,
    vars: Vec<String>,
    range_depth: usize,
    depth: usize,
    action_line: usize,
}

impl Parser<'_> {
    fn next(&mut self) -> Token {
        let tok = match self.toks.get(self.pos).or_else(|| self.toks.last()) {
            Some(t) => t.clone(),
            None => Token {
                kind: T::Eof,
                val: String::new(),
                line: self.line,
            },
        };
        self.pos += 1;
        self.line = tok.line;
        tok
    }

    fn backup(&mut self) {
        self.pos = self.pos.saturating_sub(1);
    }

    fn peek(&mut self) -> Token {
        let t = self.next();
        self.backup();
        t
    }

    fn next_non_space(&mut self) -> Token {
        loop {
            let t = self.next();
            if t.kind != T::Space {
                return t;
            }
        }
    }

    fn peek_non_space(&mut self) -> Token {
        let t = self.next_non_space();
        self.backup();
        t
    }

    fn error<X>(&self, msg: impl Into<String>) -> PResult<X> {
        Err(TemplateError::Parse {
            name: self.name.to_string(),
            line: self.line,
            msg: msg.into(),
        })
    }

    fn unexpected<X>(&self, tok: &Token, context: &str) -> PResult<X> {
        if tok.kind == T::Error {
            let mut extra = String::new();
            if self.action_line != 0 && self.action_line != tok.line {
                extra = format!(" in action started at {}:{}", self.name, self.action_line);
                if tok.val.ends_with(" action") {
                    extra = extra[" in action".len()..].to_string();
                }
            }
            return self.error(format!("{}{extra}", tok.val));
        }
        self.error(format!("unexpected {} in {context}", tok.describe()))
    }

    fn expect(&mut self, kind: T, context: &str) -> PResult<Token> {
        let t = self.next_non_space();
        if t.kind != kind {
            return self.unexpected(&t, context);
        }
        Ok(t)
    }

    fn enter(&mut self) -> PResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.error("max expression depth exceeded");
        }
        Ok(())
    }

    fn parse(&mut self) -> PResult<Vec<Node>> {
        let mut root = Vec::new();
        while self.peek().kind != T::Eof {
            match self.text_or_action()? {
                Item::Node(n) => root.push(n),
                Item::End => return self.error("unexpected {{end}}"),
                Item::Else => return self.error("unexpected {{else}}"),
            }
        }
        Ok(root)
    }

    fn text_or_action(&mut self) -> PResult<Item> {
        let tok = self.next_non_space();
        match tok.kind {
            T::Text => Ok(Item::Node(Node::Text(tok.val))),
            T::LeftDelim => {
                self.action_line = tok.line;
                let r = self.action();
                self.action_line = 0;
                r
            }
            _ => self.unexpected(&tok, "input"),
        }
    }

    fn action(&mut self) -> PResult<Item> {
        let tok = self.next_non_space();
        match tok.kind {
            T::Block | T::Define | T::Template => self.error(format!(
                "{{{{{}}}}} is not supported in alert templates",
                tok.val
            )),
            T::Break | T::Continue => {
                let ctx = format!("{{{{{}}}}}", tok.val);
                let t = self.next_non_space();
                if t.kind != T::RightDelim {
                    return self.unexpected(&t, &ctx);
                }
                if self.range_depth == 0 {
                    return self.error(format!("{ctx} outside {{{{range}}}}"));
                }
                Ok(Item::Node(if tok.kind == T::Break {
                    Node::Break
                } else {
                    Node::Continue
                }))
            }
            T::Else => {
                // "{{else if": leave the "if" for the enclosing control.
                if self.peek_non_space().kind != T::If {
                    self.expect(T::RightDelim, "else")?;
                }
                Ok(Item::Else)
            }
            T::End => {
                self.expect(T::RightDelim, "end")?;
                Ok(Item::End)
            }
            T::If => Ok(Item::Node(Node::If(Box::new(self.control("if")?)))),
            T::Range => Ok(Item::Node(Node::Range(Box::new(self.control("range")?)))),
            T::With => Ok(Item::Node(Node::With(Box::new(self.control("with")?)))),
            _ => {
                self.backup();
                Ok(Item::Node(Node::Action(
                    self.pipeline("command", T::RightDelim)?,
                )))
            }
        }
    }

    fn control(&mut self, context: &str) -> PResult<Control> {
        let mark = self.vars.len();
        self.enter()?;
        let pipe = self.pipeline(context, T::RightDelim)?;
        if context == "range" {
            self.range_depth += 1;
        }
        let (list, saw_else) = self.item_list()?;
        if context == "range" {
            self.range_depth -= 1;
        }
        let else_list = if !saw_else {
            None
        } else if context == "if" && self.peek().kind == T::If {
            self.next();
            Some(vec![Node::If(Box::new(self.control("if")?))])
        } else {
            let (l, again) = self.item_list()?;
            if again {
                return self.error("expected end; found {{else}}");
            }
            Some(l)
        };
        self.vars.truncate(mark);
        self.depth -= 1;
        Ok(Control {
            pipe,
            list,
            else_list,
        })
    }

    /// Nodes up to `{{end}}` (false) or `{{else}}` (true).
    fn item_list(&mut self) -> PResult<(Vec<Node>, bool)> {
        let mut list = Vec::new();
        while self.peek_non_space().kind != T::Eof {
            match self.text_or_action()? {
                Item::Node(n) => list.push(n),
                Item::End => return Ok((list, false)),
                Item::Else => return Ok((list, true)),
            }
        }
        self.error("unexpected EOF")
    }

    fn pipeline(&mut self, context: &str, end: T) -> PResult<Pipe> {
        let line = self.peek_non_space().line;
        let mut pipe = Pipe {
            line,
            decl: Vec::new(),
            is_assign: false,
            cmds: Vec::new(),
        };
        loop {
            let v = self.peek_non_space();
            if v.kind != T::Variable {
                break;
            }
            let vpos = self.pos;
            self.next();
            let next = self.peek_non_space();
            match next.kind {
                T::Assign | T::Declare => {
                    self.next_non_space();
                    pipe.is_assign = next.kind == T::Assign;
                    pipe.decl.push(v.val.clone());
                    self.vars.push(v.val);
                    break;
                }
                T::Char if next.val == "," => {
                    self.next_non_space();
                    pipe.decl.push(v.val.clone());
                    self.vars.push(v.val);
                    if context == "range" && pipe.decl.len() < 2 {
                        match self.peek_non_space().kind {
                            T::Variable | T::RightDelim | T::RParen => continue,
                            _ => return self.error("range can only initialize variables"),
                        }
                    }
                    return self.error(format!("too many declarations in {context}"));
                }
                _ => {
                    self.pos = vpos;
                    break;
                }
            }
        }
        loop {
            let tok = self.next_non_space();
            if tok.kind == end {
                self.check_pipeline(&pipe, context)?;
                return Ok(pipe);
            }
            match tok.kind {
                T::Bool
                | T::CharConst
                | T::Dot
                | T::Field
                | T::Ident
                | T::Number
                | T::Nil
                | T::RawStr
                | T::Str
                | T::Variable
                | T::LParen => {
                    self.backup();
                    let cmd = self.command()?;
                    pipe.cmds.push(cmd);
                }
                _ => return self.unexpected(&tok, context),
            }
        }
    }

    fn check_pipeline(&self, pipe: &Pipe, context: &str) -> PResult<()> {
        if pipe.cmds.is_empty() {
            return self.error(format!("missing value for {context}"));
        }
        for (i, c) in pipe.cmds.iter().enumerate().skip(1) {
            if matches!(
                c.args.first(),
                Some(Arg::Bool(_) | Arg::Dot | Arg::Nil | Arg::Number(_) | Arg::Str { .. })
            ) {
                return self.error(format!(
                    "non executable command in pipeline stage {}",
                    i + 1
                ));
            }
        }
        Ok(())
    }

    fn command(&mut self) -> PResult<Command> {
        let line = self.peek_non_space().line;
        let mut args = Vec::new();
        loop {
            self.peek_non_space();
            if let Some(op) = self.operand()? {
                args.push(op);
            }
            let tok = self.next();
            match tok.kind {
                T::Space => continue,
                T::RightDelim | T::RParen => {
                    self.backup();
                    break;
                }
                T::Pipe => break,
                _ => return self.unexpected(&tok, "operand"),
            }
        }
        if args.is_empty() {
            return self.error("empty command");
        }
        Ok(Command { line, args })
    }

    fn operand(&mut self) -> PResult<Option<Arg>> {
        let Some(node) = self.term()? else {
            return Ok(None);
        };
        if self.peek().kind != T::Field {
            return Ok(Some(node));
        }
        let mut fields = Vec::new();
        while self.peek().kind == T::Field {
            let t = self.next();
            fields.push(t.val.strip_prefix('.').unwrap_or(&t.val).to_string());
        }
        Ok(Some(match node {
            Arg::Field(mut ids) => {
                ids.extend(fields);
                Arg::Field(ids)
            }
            Arg::Variable(mut parts) => {
                parts.extend(fields);
                Arg::Variable(parts)
            }
            Arg::Bool(_) | Arg::Str { .. } | Arg::Number(_) | Arg::Nil | Arg::Dot => {
                return self.error(format!(
                    "unexpected . after term {}",
                    go_quote(&node.to_string())
                ));
            }
            other => Arg::Chain(Box::new(other), fields),
        }))
    }

    fn term(&mut self) -> PResult<Option<Arg>> {
        let tok = self.next_non_space();
        let arg = match tok.kind {
            T::Ident => {
                if signature(&tok.val).is_none() {
                    return self.error(format!("function {} not defined", go_quote(&tok.val)));
                }
                Arg::Ident(tok.val)
            }
            T::Dot => Arg::Dot,
            T::Nil => Arg::Nil,
            T::Variable => {
                if !self.vars.contains(&tok.val) {
                    return self.error(format!("undefined variable {}", go_quote(&tok.val)));
                }
                Arg::Variable(vec![tok.val])
            }
            T::Field => Arg::Field(vec![tok
                .val
                .strip_prefix('.')
                .unwrap_or(&tok.val)
                .to_string()]),
            T::Bool => Arg::Bool(tok.val == "true"),
            T::Number | T::CharConst => match new_number(&tok.val, tok.kind == T::CharConst) {
                Ok(n) => Arg::Number(n),
                Err(e) => return self.error(e),
            },
            T::LParen => {
                self.enter()?;
                let p = self.pipeline("parenthesized pipeline", T::RParen)?;
                self.depth -= 1;
                Arg::Pipe(Box::new(p))
            }
            T::Str | T::RawStr => match go_unquote(&tok.val) {
                Ok(text) => Arg::Str {
                    quoted: tok.val,
                    text,
                },
                Err(e) => return self.error(e),
            },
            _ => {
                self.backup();
                return Ok(None);
            }
        };
        Ok(Some(arg))
    }
}

// ---------------------------------------------------------------------------
// Literals
// ---------------------------------------------------------------------------

fn new_number(text: &str, is_char: bool) -> Result<NumLit, String> {
    if is_char {
        let r = unquote_char_literal(text)?;
        return Ok(NumLit {
            text: text.to_string(),
            int: Some(r),
            float: Some(r as f64),
            is_char: true,
        });
    }
    if text.ends_with('i') {
        return Err("complex numbers are not supported".to_string());
    }
    let (int, uint_only) = parse_go_int(text);
    if let Some(i) = int {
        return Ok(NumLit {
            text: text.to_string(),
            int: Some(i),
            float: Some(i as f64),
            is_char: false,
        });
    }
    if uint_only {
        return Ok(NumLit {
            text: text.to_string(),
            int: None,
            float: None,
            is_char: false,
        });
    }
    match parse_go_float(text) {
        Ok(f) => {
            if !text.contains(&['.', 'e', 'E', 'p', 'P'][..]) {
                return Err(format!("integer overflow: {}", go_quote(text)));
            }
            Ok(NumLit {
                text: text.to_string(),
                int: None,
                float: Some(f),
                is_char: false,
            })
        }
        Err(_) => Err(format!("illegal number syntax: {}", go_quote(text))),
    }
}

fn is_hex_int(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() > 2 && b[0] == b'0' && (b[1] == b'x' || b[1] == b'X') && !s.contains(['p', 'P'])
}

/// Go's `idealConstant`: how a number literal becomes a value.
fn ideal(n: &NumLit) -> Result<Value, String> {
    if n.is_char {
        return Ok(Value::Int(n.int.unwrap_or(0)));
    }
    if let Some(f) = n.float {
        if !is_hex_int(&n.text) && n.text.contains(&['.', 'e', 'E', 'p', 'P'][..]) {
            return Ok(Value::Float(f));
        }
    }
    match n.int {
        Some(i) => Ok(Value::Int(i)),
        None => Err(format!("{} overflows int", n.text)),
    }
}

/// Go's `underscoreOK`: underscores only between digits (or after a base prefix).
fn underscore_ok(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let mut saw = b'^';
    let mut hex = false;
    if b.len() >= i + 2 && b[i] == b'0' && matches!(b[i + 1] | 0x20, b'b' | b'o' | b'x') {
        hex = b[i + 1] | 0x20 == b'x';
        i += 2;
        saw = b'0';
    }
    while i < b.len() {
        let c = b[i];
        i += 1;
        if c.is_ascii_digit() || (hex && (b'a'..=b'f').contains(&(c | 0x20))) {
            saw = b'0';
        } else if c == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
        } else {
            if saw == b'_' {
                return false;
            }
            saw = b'!';
        }
    }
    saw != b'_'
}

/// Go's `strconv.ParseInt(s, 0, 64)`; the flag says "valid, but only as uint64".
fn parse_go_int(text: &str) -> (Option<i64>, bool) {
    let (neg, body) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, digits) = if lower.starts_with("0x") {
        (16, &body[2..])
    } else if lower.starts_with("0o") {
        (8, &body[2..])
    } else if lower.starts_with("0b") {
        (2, &body[2..])
    } else if body.len() > 1 && body.starts_with('0') {
        (8, &body[1..])
    } else {
        (10, body)
    };
    if digits.contains('_') && !underscore_ok(text) {
        return (None, false);
    }
    let cleaned: String = digits.chars().filter(|&c| c != '_').collect();
    if cleaned.is_empty() || !cleaned.chars().all(|c| c.is_digit(radix)) {
        return (None, false);
    }
    let Ok(u) = u64::from_str_radix(&cleaned, radix) else {
        return (None, false);
    };
    if neg {
        if u <= 1u64 << 63 {
            (Some((-(i128::from(u))) as i64), false)
        } else {
            (None, false)
        }
    } else if let Ok(i) = i64::try_from(u) {
        (Some(i), false)
    } else {
        (None, true)
    }
}

fn is_decimal_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    let mut nd = 0;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
        nd += 1;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
            nd += 1;
        }
    }
    if nd == 0 {
        return false;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    i == b.len()
}

/// Go's `strconv.ParseFloat(s, 64)` for decimal input; the error is Go's reason.
fn parse_go_float(s: &str) -> Result<f64, &'static str> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    if lower == "inf" || lower == "infinity" {
        return Ok(if neg {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        });
    }
    if lower == "nan" && body.len() == s.len() {
        return Ok(f64::NAN);
    }
    if s.contains('_') && !underscore_ok(s) {
        return Err("invalid syntax");
    }
    let cleaned: String = body.chars().filter(|&c| c != '_').collect();
    if !is_decimal_float(&cleaned) {
        return Err("invalid syntax");
    }
    let v: f64 = cleaned.parse().map_err(|_| "invalid syntax")?;
    if v.is_infinite() {
        return Err("value out of range");
    }
    Ok(if neg { -v } else { v })
}

enum Unquoted {
    Rune(u32),
    Byte(u8),
}

/// Go's `strconv.UnquoteChar`: one character or escape from the front of `s`.
fn unquote_one(s: &str, quote: char) -> Result<(Unquoted, &str), ()> {
    let mut chars = s.chars();
    let c = chars.next().ok_or(())?;
    if c == quote && (quote == '\'' || quote == '"') {
        return Err(());
    }
    if c != '\\' {
        return Ok((Unquoted::Rune(c as u32), chars.as_str()));
    }
    let e = chars.next().ok_or(())?;
    let rest = chars.as_str();
    let simple = |v: u8| Ok((Unquoted::Rune(u32::from(v)), rest));
    match e {
        'a' => simple(7),
        'b' => simple(8),
        'f' => simple(12),
        'n' => simple(b'\n'),
        'r' => simple(b'\r'),
        't' => simple(b'\t'),
        'v' => simple(11),
        '\\' => simple(b'\\'),
        '\'' | '"' => {
            if e != quote {
                return Err(());
            }
            simple(e as u8)
        }
        'x' | 'u' | 'U' => {
            let n = match e {
                'x' => 2,
                'u' => 4,
                _ => 8,
            };
            let hex = rest.get(..n).ok_or(())?;
            let v = u32::from_str_radix(hex, 16).map_err(|_| ())?;
            if !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(());
            }
            let tail = &rest[n..];
            if e == 'x' {
                return Ok((Unquoted::Byte(v as u8), tail));
            }
            char::from_u32(v).ok_or(())?;
            Ok((Unquoted::Rune(v), tail))
        }
        '0'..='7' => {
            let oct = s.get(1..4).ok_or(())?;
            if !oct.chars().all(|c| ('0'..='7').contains(&c)) {
                return Err(());
            }
            let v = u32::from_str_radix(oct, 8).map_err(|_| ())?;
            let b = u8::try_from(v).map_err(|_| ())?;
            Ok((Unquoted::Byte(b), &s[4..]))
        }
        _ => Err(()),
    }
}

/// Go's `strconv.Unquote` for "..." and `...` literals.
fn go_unquote(raw: &str) -> Result<String, String> {
    let bad = || "invalid syntax".to_string();
    if let Some(inner) = raw.strip_prefix('`').and_then(|r| r.strip_suffix('`')) {
        if inner.contains('`') {
            return Err(bad());
        }
        return Ok(inner.replace('\r', ""));
    }
    let mut inner = raw
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .ok_or_else(bad)?;
    let mut out: Vec<u8> = Vec::with_capacity(inner.len());
    while !inner.is_empty() {
        let (u, rest) = unquote_one(inner, '"').map_err(|_| bad())?;
        match u {
            Unquoted::Byte(b) => out.push(b),
            Unquoted::Rune(r) => {
                let c = char::from_u32(r).ok_or_else(bad)?;
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
        inner = rest;
    }
    Ok(String::from_utf8(out)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
}

fn unquote_char_literal(text: &str) -> Result<i64, String> {
    let inner = text.strip_prefix('\'').ok_or("invalid syntax")?;
    let (u, tail) = unquote_one(inner, '\'').map_err(|_| "invalid syntax".to_string())?;
    if tail != "'" {
        return Err(format!("malformed character constant: {text}"));
    }
    Ok(match u {
        Unquoted::Rune(r) => i64::from(r),
        Unquoted::Byte(b) => i64::from(b),
    })
}

// ---------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------

#[derive(Debug)]
struct Sample {
    labels: Rc<BTreeMap<String, String>>,
    value: f64,
}

#[derive(Debug)]
struct RootData {
    labels: Rc<BTreeMap<String, String>>,
    external_labels: Rc<BTreeMap<String, String>>,
    external_url: String,
    value: f64,
}

/// A UTC instant, printed like Go's `time.Time.String()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct GoTime {
    secs: i64,
    nanos: u32,
}

impl fmt::Display for GoTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.secs.div_euclid(86_400);
        let sod = self.secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
            sod / 3600,
            sod % 3600 / 60,
            sod % 60
        )?;
        if self.nanos > 0 {
            let frac = format!("{:09}", self.nanos);
            write!(f, ".{}", frac.trim_end_matches('0'))?;
        }
        f.write_str(" +0000 UTC")
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m as u32, d as u32)
}

#[derive(Debug, Clone)]
enum Value {
    /// Go's invalid value / nil interface.
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// `map[string]string`
    StrMap(Rc<BTreeMap<String, String>>),
    /// `map[string]interface{}`, as `args` returns.
    AnyMap(Rc<BTreeMap<String, Value>>),
    /// Prometheus's `queryResult`.
    Vector(Rc<Vec<Rc<Sample>>>),
    Sample(Rc<Sample>),
    Root(Rc<RootData>),
    Time(GoTime),
}

const ROOT_TYPE: &str = "struct { Labels map[string]string; ExternalLabels map[string]string; ExternalURL string; Value float64 }";

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Nil => "<nil>",
        Value::Bool(_) => "bool",
        Value::Int(_) => "int",
        Value::Float(_) => "float64",
        Value::Str(_) => "string",
        Value::StrMap(_) => "map[string]string",
        Value::AnyMap(_) => "map[string]interface {}",
        Value::Vector(_) => "template.queryResult",
        Value::Sample(_) => "*template.sample",
        Value::Root(_) => ROOT_TYPE,
        Value::Time(_) => "*time.Time",
    }
}

/// Go's `isTrue`.
fn truth(v: &Value) -> bool {
    match v {
        Value::Nil => false,
        Value::Bool(b) => *b,
        Value::Int(i) => *i != 0,
        Value::Float(f) => *f != 0.0,
        Value::Str(s) => !s.is_empty(),
        Value::StrMap(m) => !m.is_empty(),
        Value::AnyMap(m) => !m.is_empty(),
        Value::Vector(v) => !v.is_empty(),
        Value::Sample(_) | Value::Root(_) | Value::Time(_) => true,
    }
}

/// `fmt.Sprint(v)` of one value.
fn value_string(v: &Value) -> String {
    let mut s = String::new();
    fmt_arg(&mut s, v, 'v', &Flags::default());
    s
}

fn str_map_string(m: &BTreeMap<String, String>) -> String {
    let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k}:{v}")).collect();
    format!("map[{}]", parts.join(" "))
}

fn sample_string(s: &Sample) -> String {
    format!(
        "{{{} {}}}",
        str_map_string(&s.labels),
        value_string(&Value::Float(s.value))
    )
}

fn composite_string(v: &Value) -> String {
    match v {
        Value::StrMap(m) => str_map_string(m),
        Value::AnyMap(m) => {
            let parts: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{k}:{}", value_string(v)))
                .collect();
            format!("map[{}]", parts.join(" "))
        }
        Value::Vector(v) => {
            let parts: Vec<String> = v.iter().map(|s| sample_string(s)).collect();
            format!("[{}]", parts.join(" "))
        }
        Value::Sample(s) => sample_string(s),
        Value::Root(r) => format!(
            "{{{} {} {} {}}}",
            str_map_string(&r.labels),
            str_map_string(&r.external_labels),
            r.external_url,
            value_string(&Value::Float(r.value))
        ),
        other => value_string(other),
    }
}

// ---------------------------------------------------------------------------
// Go fmt
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, Default)]
struct Flags {
    minus: bool,
    plus: bool,
    space: bool,
    zero: bool,
    sharp: bool,
    wid: Option<usize>,
    prec: Option<usize>,
}

fn pad(out: &mut String, s: &str, f: &Flags) {
    let n = s.chars().count();
    let w = f.wid.unwrap_or(0);
    if w <= n {
        out.push_str(s);
        return;
    }
    let fill = w - n;
    if f.minus {
        out.push_str(s);
        out.extend(std::iter::repeat_n(' ', fill));
    } else {
        let c = if f.zero { '0' } else { ' ' };
        out.extend(std::iter::repeat_n(c, fill));
        out.push_str(s);
    }
}

fn bad_verb(out: &mut String, verb: char, v: &Value, f: &Flags) {
    out.push_str("%!");
    out.push(verb);
    out.push('(');
    if let Value::Nil = v {
        out.push_str("<nil>");
    } else {
        out.push_str(type_name(v));
        out.push('=');
        fmt_arg(out, v, 'v', f);
    }
    out.push(')');
}

/// Go's `pp.printArg`.
fn fmt_arg(out: &mut String, v: &Value, verb: char, f: &Flags) {
    if verb == 'T' {
        pad(out, type_name(v), f);
        return;
    }
    match v {
        Value::Nil if verb == 'v' => pad(out, "<nil>", f),
        Value::Bool(b) if matches!(verb, 't' | 'v') => {
            pad(out, if *b { "true" } else { "false" }, f)
        }
        Value::Int(i) => fmt_int(out, *i, verb, f, v),
        Value::Float(x) => match verb {
            'v' => fmt_float(out, *x, 'g', f.prec, f),
            'g' | 'G' => fmt_float(out, *x, verb, f.prec, f),
            'e' | 'E' | 'f' | 'F' => fmt_float(out, *x, verb, Some(f.prec.unwrap_or(6)), f),
            _ => bad_verb(out, verb, v, f),
        },
        Value::Str(s) => fmt_str(out, s, verb, f, v),
        Value::Time(t) if matches!(verb, 'v' | 's' | 'q' | 'x' | 'X') => {
            fmt_str(out, &t.to_string(), verb, f, v)
        }
        Value::StrMap(_)
        | Value::AnyMap(_)
        | Value::Vector(_)
        | Value::Sample(_)
        | Value::Root(_)
            if matches!(verb, 'v' | 's') =>
        {
            pad(out, &composite_string(v), f)
        }
        _ => bad_verb(out, verb, v, f),
    }
}

fn fmt_int(out: &mut String, i: i64, verb: char, f: &Flags, v: &Value) {
    match verb {
        'v' | 'd' => fmt_integer(out, i, 10, false, f),
        'b' => fmt_integer(out, i, 2, false, f),
        'o' => fmt_integer(out, i, 8, false, f),
        'x' => fmt_integer(out, i, 16, false, f),
        'X' => fmt_integer(out, i, 16, true, f),
        'c' => {
            let c = u32::try_from(i)
                .ok()
                .and_then(char::from_u32)
                .unwrap_or('\u{FFFD}');
            pad(out, &c.to_string(), f);
        }
        'q' => {
            let c = u32::try_from(i)
                .ok()
                .and_then(char::from_u32)
                .unwrap_or('\u{FFFD}');
            pad(out, &go_quote_with(&c.to_string(), '\''), f);
        }
        'U' => pad(out, &format!("U+{i:04X}"), f),
        _ => bad_verb(out, verb, v, f),
    }
}

/// Go's `fmt.fmtInteger`.
fn fmt_integer(out: &mut String, i: i64, base: u32, upper: bool, f: &Flags) {
    let no_zero = Flags { zero: false, ..*f };
    let neg = i < 0;
    let u = i.unsigned_abs();
    let mut prec = 0usize;
    if let Some(p) = f.prec {
        if p == 0 && u == 0 {
            pad(out, "", &no_zero);
            return;
        }
        prec = p;
    } else if f.zero && !f.minus {
        if let Some(w) = f.wid {
            prec = w;
            if neg || f.plus || f.space {
                prec = prec.saturating_sub(1);
            }
        }
    }
    let digits = match (base, upper) {
        (2, _) => format!("{u:b}"),
        (8, _) => format!("{u:o}"),
        (16, false) => format!("{u:x}"),
        (16, true) => format!("{u:X}"),
        _ => u.to_string(),
    };
    let mut s = String::new();
    if neg {
        s.push('-');
    } else if f.plus {
        s.push('+');
    } else if f.space {
        s.push(' ');
    }
    if f.sharp {
        match base {
            2 => s.push_str("0b"),
            8 if !digits.starts_with('0') && prec <= digits.len() => s.push('0'),
            16 => s.push_str(if upper { "0X" } else { "0x" }),
            _ => {}
        }
    }
    s.extend(std::iter::repeat_n('0', prec.saturating_sub(digits.len())));
    s.push_str(&digits);
    pad(out, &s, &no_zero);
}

fn fmt_str(out: &mut String, s: &str, verb: char, f: &Flags, v: &Value) {
    let t: String = match f.prec {
        Some(p) => s.chars().take(p).collect(),
        None => s.to_string(),
    };
    match verb {
        'v' | 's' => pad(out, &t, f),
        'q' => {
            if f.sharp && !t.contains('`') && t.chars().all(|c| c == '\t' || !c.is_control()) {
                pad(out, &format!("`{t}`"), f);
            } else {
                pad(out, &go_quote(&t), f);
            }
        }
        'x' | 'X' => {
            let mut h = String::new();
            for b in t.bytes() {
                if verb == 'x' {
                    let _ = write!(h, "{b:02x}");
                } else {
                    let _ = write!(h, "{b:02X}");
                }
            }
            pad(out, &h, f);
        }
        _ => bad_verb(out, verb, v, f),
    }
}

/// Go's `fmt.fmtFloat`: sign, infinities and padding around `strconv_float`.
fn fmt_float(out: &mut String, x: f64, verb: char, prec: Option<usize>, f: &Flags) {
    let s = strconv_float(x, verb, prec);
    let mut num = if s.starts_with('-') || s.starts_with('+') {
        s
    } else {
        format!("+{s}")
    };
    if f.space && num.starts_with('+') && !f.plus {
        num.replace_range(0..1, " ");
    }
    let second = num.as_bytes().get(1).copied();
    if second == Some(b'I') || second == Some(b'N') {
        if second == Some(b'N') && !f.space && !f.plus {
            num.remove(0);
        }
        pad(out, &num, &Flags { zero: false, ..*f });
        return;
    }
    if f.plus || !num.starts_with('+') {
        if let Some(w) = f.wid {
            if f.zero && w > num.len() {
                out.push_str(&num[..1]);
                out.extend(std::iter::repeat_n('0', w - num.len()));
                out.push_str(&num[1..]);
                return;
            }
        }
        pad(out, &num, f);
        return;
    }
    pad(out, &num[1..], f);
}

/// Decimal digits and decimal-point position of `a` (>= 0) from Rust's `{:e}`.
fn decimal_digits(sci: &str) -> (Vec<u8>, i64) {
    let (mant, exp) = sci.split_once('e').unwrap_or((sci, "0"));
    let exp: i64 = exp.parse().unwrap_or(0);
    let mut digits: Vec<u8> = mant.bytes().filter(u8::is_ascii_digit).collect();
    while digits.last() == Some(&b'0') {
        digits.pop();
    }
    if digits.is_empty() {
        return (digits, 0);
    }
    (digits, exp + 1)
}

/// Go's `strconv.FormatFloat(x, verb, prec, 64)`; `None` is precision -1.
fn strconv_float(x: f64, verb: char, prec: Option<usize>) -> String {
    if x.is_nan() {
        return "NaN".to_string();
    }
    if x.is_infinite() {
        return if x > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    let neg = x.is_sign_negative();
    let a = x.abs();
    let lower = verb.to_ascii_lowercase();
    if lower == 'f' {
        if let Some(p) = prec {
            let body = format!("{a:.p$}");
            return if neg { format!("-{body}") } else { body };
        }
    }
    let (digits, dp) = match prec {
        None => decimal_digits(&format!("{a:e}")),
        Some(p) => {
            let n = if lower == 'e' { p + 1 } else { p.max(1) };
            decimal_digits(&format!("{:.*e}", n - 1, a))
        }
    };
    let nd = digits.len() as i64;
    let echar = if verb.is_ascii_uppercase() { 'E' } else { 'e' };
    match lower {
        'e' => {
            let p = prec.map_or((nd - 1).max(0), |p| p as i64);
            fmt_e(neg, &digits, dp, p, echar)
        }
        'f' => fmt_f(neg, &digits, dp, (nd - dp).max(0)),
        _ => {
            let shortest = prec.is_none();
            let mut p = prec.map_or(nd, |p| p.max(1) as i64);
            let mut eprec = p;
            if eprec > nd && nd >= dp {
                eprec = nd;
            }
            if shortest {
                eprec = 6;
            }
            let exp = dp - 1;
            if exp < -4 || exp >= eprec {
                if p > nd {
                    p = nd;
                }
                return fmt_e(neg, &digits, dp, (p - 1).max(0), echar);
            }
            if p > dp {
                p = nd;
            }
            fmt_f(neg, &digits, dp, (p - dp).max(0))
        }
    }
}

fn fmt_e(neg: bool, d: &[u8], dp: i64, prec: i64, ch: char) -> String {
    let mut s = String::new();
    if neg {
        s.push('-');
    }
    s.push(d.first().map_or('0', |&c| c as char));
    if prec > 0 {
        s.push('.');
        for i in 1..=prec {
            s.push(d.get(i as usize).map_or('0', |&c| c as char));
        }
    }
    s.push(ch);
    let mut exp = if d.is_empty() { 0 } else { dp - 1 };
    if exp < 0 {
        s.push('-');
        exp = -exp;
    } else {
        s.push('+');
    }
    if exp < 10 {
        s.push('0');
    }
    let _ = write!(s, "{exp}");
    s
}

fn fmt_f(neg: bool, d: &[u8], dp: i64, prec: i64) -> String {
    let mut s = String::new();
    if neg {
        s.push('-');
    }
    if dp > 0 {
        for i in 0..dp {
            s.push(d.get(i as usize).map_or('0', |&c| c as char));
        }
    } else {
        s.push('0');
    }
    if prec > 0 {
        s.push('.');
        for i in 1..=prec {
            let j = dp + i - 1;
            let c = if j >= 0 {
                d.get(j as usize).copied()
            } else {
                None
            };
            s.push(c.map_or('0', char::from));
        }
    }
    s
}

/// Parses a width or precision; `None` for none or one Go finds too large.
fn parse_num(chars: &[char], mut i: usize) -> (Option<usize>, usize) {
    let start = i;
    let mut n: usize = 0;
    while i < chars.len() && chars[i].is_ascii_digit() {
        n = n * 10 + (chars[i] as usize - '0' as usize);
        if n > 1_000_000 {
            return (None, chars.len());
        }
        i += 1;
    }
    if i == start {
        (None, i)
    } else {
        (Some(n), i)
    }
}

/// Width or precision from a `*` argument.
fn star_arg(args: &[Value], argn: &mut usize) -> Option<i64> {
    let v = args.get(*argn)?;
    *argn += 1;
    match v {
        Value::Int(i) if i.unsigned_abs() <= 1_000_000 => Some(*i),
        _ => None,
    }
}

/// Go's `fmt.Sprintf`.
fn go_sprintf(format: &str, args: &[Value]) -> String {
    let chars: Vec<char> = format.chars().collect();
    let end = chars.len();
    let mut out = String::new();
    let mut argn = 0;
    let mut i = 0;
    while i < end {
        if chars[i] != '%' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        i += 1;
        let mut f = Flags::default();
        while i < end {
            match chars[i] {
                '#' => f.sharp = true,
                '0' => f.zero = !f.minus,
                '+' => f.plus = true,
                '-' => {
                    f.minus = true;
                    f.zero = false;
                }
                ' ' => f.space = true,
                _ => break,
            }
            i += 1;
        }
        if i < end && chars[i] == '*' {
            i += 1;
            match star_arg(args, &mut argn) {
                Some(w) => {
                    if w < 0 {
                        f.minus = true;
                        f.zero = false;
                    }
                    f.wid = Some(w.unsigned_abs() as usize);
                }
                None => out.push_str("%!(BADWIDTH)"),
            }
        } else {
            let (w, ni) = parse_num(&chars, i);
            f.wid = w;
            i = ni;
        }
        if i + 1 < end && chars[i] == '.' {
            i += 1;
            if chars[i] == '*' {
                i += 1;
                match star_arg(args, &mut argn) {
                    Some(p) if p >= 0 => f.prec = Some(p as usize),
                    Some(_) => f.prec = None,
                    None => out.push_str("%!(BADPREC)"),
                }
            } else {
                let (p, ni) = parse_num(&chars, i);
                f.prec = Some(p.unwrap_or(0));
                i = ni;
            }
        }
        if i >= end {
            out.push_str("%!(NOVERB)");
            break;
        }
        let verb = chars[i];
        i += 1;
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(argn) else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        argn += 1;
        if verb == 'v' {
            f.plus = false;
            f.sharp = false;
        }
        fmt_arg(&mut out, arg, verb, &f);
    }
    if argn < args.len() {
        out.push_str("%!(EXTRA ");
        for (k, a) in args[argn..].iter().enumerate() {
            if k > 0 {
                out.push_str(", ");
            }
            if let Value::Nil = a {
                out.push_str("<nil>");
            } else {
                out.push_str(type_name(a));
                out.push('=');
                fmt_arg(&mut out, a, 'v', &Flags::default());
            }
        }
        out.push(')');
    }
    out
}

/// Go's `fmt.Sprint`: spaces between operands when neither is a string.
fn go_sprint(args: &[Value]) -> String {
    let mut out = String::new();
    let mut prev_string = false;
    for (i, a) in args.iter().enumerate() {
        let is_string = matches!(a, Value::Str(_));
        if i > 0 && !is_string && !prev_string {
            out.push(' ');
        }
        fmt_arg(&mut out, a, 'v', &Flags::default());
        prev_string = is_string;
    }
    out
}

fn go_sprintln(args: &[Value]) -> String {
    let parts: Vec<String> = args.iter().map(value_string).collect();
    format!("{}\n", parts.join(" "))
}

/// Go's `unicode.IsPrint`, approximately for non-ASCII.
fn is_go_print(c: char) -> bool {
    if c.is_ascii() {
        return (' '..='~').contains(&c);
    }
    !c.is_control() && !c.is_whitespace() && c != '\u{FEFF}' && c != '\u{FFFD}'
}

fn go_quote_with(s: &str, quote: char) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            c if c == quote || c == '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if is_go_print(c) => out.push(c),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (c as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push(quote);
    out
}

/// Go's `strconv.Quote` (`%q`).
fn go_quote(s: &str) -> String {
    go_quote_with(s, '"')
}

/// Go's `%#U`.
fn go_sharp_u(c: char) -> String {
    if is_go_print(c) {
        format!("U+{:04X} '{c}'", c as u32)
    } else {
        format!("U+{:04X}", c as u32)
    }
}

// ---------------------------------------------------------------------------
// Functions
// ---------------------------------------------------------------------------

/// Parameter types, as Go's `validateType` checks them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum P {
    /// `string`
    Str,
    /// `*template.sample`
    Sample,
    /// `template.queryResult`
    Vector,
    /// `interface{}` or `reflect.Value`
    Any,
}

impl P {
    fn type_name(self) -> &'static str {
        match self {
            P::Str => "string",
            P::Sample => "*template.sample",
            P::Vector => "template.queryResult",
            P::Any => "interface {}",
        }
    }
}

struct Sig {
    fixed: &'static [P],
    variadic: Option<P>,
}

/// The signature of every function a template may call; `None` if undefined.
fn signature(name: &str) -> Option<Sig> {
    use P::{Any, Sample, Str, Vector};
    let (fixed, variadic): (&'static [P], Option<P>) = match name {
        "and" | "or" | "eq" | "index" | "slice" | "call" => (&[Any], Some(Any)),
        "not" | "len" => (&[Any], None),
        "ne" | "lt" | "le" | "gt" | "ge" => (&[Any, Any], None),
        "html" | "js" | "urlquery" | "print" | "println" | "args" => (&[], Some(Any)),
        "printf" => (&[Str], Some(Any)),
        "query" | "safeHtml" | "title" | "toUpper" | "toLower" | "graphLink" | "tableLink"
        | "stripPort" | "stripDomain" | "parseDuration" => (&[Str], None),
        "first" => (&[Vector], None),
        "label" => (&[Str, Sample], None),
        "value" | "strvalue" => (&[Sample], None),
        "reReplaceAll" => (&[Str, Str, Str], None),
        "match" => (&[Str, Str], None),
        "sortByLabel" => (&[Str, Vector], None),
        "humanize" | "humanize1024" | "humanizeDuration" | "humanizePercentage"
        | "humanizeTimestamp" | "toTime" => (&[Any], None),
        "pathPrefix" | "externalURL" => (&[], None),
        _ => return None,
    };
    Some(Sig { fixed, variadic })
}

/// Go's `validateType` for a computed value.
fn coerce(v: Value, p: P) -> Result<Value, String> {
    let ok = match (&v, p) {
        (_, P::Any) => true,
        (Value::Str(_), P::Str) => true,
        (Value::Nil, P::Str) => return Err("invalid value; expected string".to_string()),
        (Value::Sample(_) | Value::Nil, P::Sample) => true,
        (Value::Vector(_) | Value::Nil, P::Vector) => true,
        _ => false,
    };
    if ok {
        Ok(v)
    } else {
        Err(format!(
            "wrong type for value; expected {}; got {}",
            p.type_name(),
            type_name(&v)
        ))
    }
}

fn as_str(v: &Value) -> &str {
    match v {
        Value::Str(s) => s,
        _ => "",
    }
}

fn take(vals: &[Value], i: usize) -> Value {
    vals.get(i).cloned().unwrap_or(Value::Nil)
}

const BAD_CMP: &str = "incompatible types for comparison";
const BAD_CMP_TYPE: &str = "invalid type for comparison";

fn is_basic(v: &Value) -> bool {
    matches!(
        v,
        Value::Bool(_) | Value::Int(_) | Value::Float(_) | Value::Str(_)
    )
}

fn num(v: &Value) -> Option<f64> {
    match v {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        _ => None,
    }
}

/// Go's `eq`, lenient about comparing ints with floats.
fn go_eq(a: &Value, rest: &[Value]) -> Result<bool, String> {
    if rest.is_empty() {
        return Err("missing argument for comparison".to_string());
    }
    for b in rest {
        let t = match (a, b) {
            (Value::Nil, Value::Nil) => true,
            (Value::Nil, _) | (_, Value::Nil) => false,
            (Value::Bool(x), Value::Bool(y)) => x == y,
            (Value::Str(x), Value::Str(y)) => x == y,
            (Value::Int(x), Value::Int(y)) => x == y,
            (Value::Sample(x), Value::Sample(y)) => Rc::ptr_eq(x, y),
            (Value::Time(x), Value::Time(y)) => x == y,
            _ => match (num(a), num(b)) {
                (Some(x), Some(y)) => x == y,
                _ if is_basic(a) || is_basic(b) => return Err(BAD_CMP.to_string()),
                _ => {
                    return Err(format!(
                        "non-comparable types {}: {}, {}: {}",
                        value_string(a),
                        type_name(a),
                        type_name(b),
                        value_string(b)
                    ))
                }
            },
        };
        if t {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Go's `lt`, lenient about comparing ints with floats.
fn go_lt(a: &Value, b: &Value) -> Result<bool, String> {
    if !is_basic(a) || !is_basic(b) {
        return Err(BAD_CMP_TYPE.to_string());
    }
    match (a, b) {
        (Value::Str(x), Value::Str(y)) => Ok(x < y),
        (Value::Int(x), Value::Int(y)) => Ok(x < y),
        (Value::Bool(_), Value::Bool(_)) => Err(BAD_CMP_TYPE.to_string()),
        _ => match (num(a), num(b)) {
            (Some(x), Some(y)) => Ok(x < y),
            _ => Err(BAD_CMP.to_string()),
        },
    }
}

fn go_le(a: &Value, b: &Value) -> Result<bool, String> {
    if go_lt(a, b)? {
        return Ok(true);
    }
    go_eq(a, std::slice::from_ref(b))
}

fn index_arg(idx: &Value, len: usize, inclusive: bool) -> Result<usize, String> {
    let x = match idx {
        Value::Int(x) => *x,
        Value::Nil => return Err("cannot index slice/array with nil".to_string()),
        other => {
            return Err(format!(
                "cannot index slice/array with type {}",
                type_name(other)
            ))
        }
    };
    let limit = if inclusive {
        len
    } else {
        len.saturating_sub(1)
    };
    match usize::try_from(x) {
        Ok(u) if u <= limit && (inclusive || len > 0) => Ok(u),
        _ => Err(format!("index out of range: {x}")),
    }
}

fn builtin_index(vals: &[Value]) -> Result<Value, String> {
    let mut item = take(vals, 0);
    if let Value::Nil = item {
        return Err("index of untyped nil".to_string());
    }
    for idx in vals.iter().skip(1) {
        item = match &item {
            Value::Str(s) => Value::Int(i64::from(s.as_bytes()[index_arg(idx, s.len(), false)?])),
            Value::Vector(v) => Value::Sample(v[index_arg(idx, v.len(), false)?].clone()),
            Value::StrMap(m) => match idx {
                Value::Str(k) => Value::Str(m.get(k).cloned().unwrap_or_default()),
                Value::Nil => return Err("value is nil; should be of type string".to_string()),
                other => {
                    return Err(format!(
                        "value has type {}; should be string",
                        type_name(other)
                    ))
                }
            },
            Value::AnyMap(m) => match idx {
                Value::Str(k) => m.get(k).cloned().unwrap_or(Value::Nil),
                Value::Nil => return Err("value is nil; should be of type string".to_string()),
                other => {
                    return Err(format!(
                        "value has type {}; should be string",
                        type_name(other)
                    ))
                }
            },
            Value::Nil => return Err("index of nil pointer".to_string()),
            other => return Err(format!("can't index item of type {}", type_name(other))),
        };
    }
    Ok(item)
}

fn builtin_slice(vals: &[Value]) -> Result<Value, String> {
    let item = take(vals, 0);
    let idxs = vals.get(1..).unwrap_or(&[]);
    if idxs.len() > 3 {
        return Err(format!("too many slice indexes: {}", idxs.len()));
    }
    let len = match &item {
        Value::Nil => return Err("slice of untyped nil".to_string()),
        Value::Str(s) => {
            if idxs.len() == 3 {
                return Err("cannot 3-index slice a string".to_string());
            }
            s.len()
        }
        Value::Vector(v) => v.len(),
        other => return Err(format!("can't slice item of type {}", type_name(other))),
    };
    let mut bounds = [0, len, len];
    for (i, idx) in idxs.iter().enumerate() {
        bounds[i] = index_arg(idx, len, true)?;
    }
    if bounds[0] > bounds[1] {
        return Err(format!(
            "invalid slice index: {} > {}",
            bounds[0], bounds[1]
        ));
    }
    if idxs.len() == 3 && bounds[1] > bounds[2] {
        return Err(format!(
            "invalid slice index: {} > {}",
            bounds[1], bounds[2]
        ));
    }
    Ok(match item {
        Value::Str(s) => {
            Value::Str(String::from_utf8_lossy(&s.as_bytes()[bounds[0]..bounds[1]]).into_owned())
        }
        Value::Vector(v) => Value::Vector(Rc::new(v[bounds[0]..bounds[1]].to_vec())),
        other => other,
    })
}

fn builtin_len(v: &Value) -> Result<Value, String> {
    let n = match v {
        Value::Str(s) => s.len(),
        Value::StrMap(m) => m.len(),
        Value::AnyMap(m) => m.len(),
        Value::Vector(v) => v.len(),
        Value::Nil => return Err("len of nil pointer".to_string()),
        Value::Sample(_) => return Err("len of type template.sample".to_string()),
        other => return Err(format!("len of type {}", type_name(other))),
    };
    Ok(Value::Int(n as i64))
}

/// Go's `evalArgs` for html, js and urlquery.
fn eval_args_string(vals: &[Value]) -> String {
    match vals {
        [Value::Str(s)] => s.clone(),
        _ => go_sprint(vals),
    }
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\0' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

fn js_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' => out.push_str("\\u003C"),
            '>' => out.push_str("\\u003E"),
            '&' => out.push_str("\\u0026"),
            '=' => out.push_str("\\u003D"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c if c.is_ascii() || is_go_print(c) => out.push(c),
            c => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
        }
    }
    out
}

/// Go's `url.QueryEscape`.
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            b => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// The path of a URL, percent-decoded, like Go's `url.URL.Path`.
fn url_path(u: &str) -> String {
    let rest = match u.find("://") {
        Some(i) => {
            let after = &u[i + 3..];
            match after.find('/') {
                Some(j) => &after[j..],
                None => "",
            }
        }
        None => u,
    };
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    let raw = &rest.as_bytes()[..end];
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            if let Some(b) = raw
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(raw[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Go's `strings.Title`.
fn go_title(s: &str) -> String {
    fn is_separator(c: char) -> bool {
        if c.is_ascii() {
            return !(c.is_ascii_alphanumeric() || c == '_');
        }
        if c.is_alphabetic() || c.is_numeric() {
            return false;
        }
        c.is_whitespace()
    }
    let mut out = String::with_capacity(s.len());
    let mut prev = ' ';
    for c in s.chars() {
        if is_separator(prev) {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev = c;
    }
    out
}

/// Go's `net.SplitHostPort`; `None` where Go returns an error.
fn split_host_port(hp: &str) -> Option<(&str, &str)> {
    let i = hp.rfind(':')?;
    let (host, j, k) = if hp.starts_with('[') {
        let end = hp.find(']')?;
        if end + 1 != i {
            return None;
        }
        (&hp[1..end], 1, end + 1)
    } else {
        let host = &hp[..i];
        if host.contains(':') {
            return None;
        }
        (host, 0, 0)
    };
    if hp[j..].contains('[') || hp[k..].contains(']') {
        return None;
    }
    Some((host, &hp[i + 1..]))
}

fn strip_domain(hp: &str) -> String {
    let (host, port) = split_host_port(hp).unwrap_or((hp, ""));
    if host.parse::<IpAddr>().is_ok() {
        return hp.to_string();
    }
    let host = host.split('.').next().unwrap_or("");
    if port.is_empty() {
        host.to_string()
    } else if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Prometheus's `convertToFloat`.
fn convert_to_float(v: &Value) -> Result<f64, String> {
    match v {
        Value::Float(f) => Ok(*f),
        Value::Int(i) => Ok(*i as f64),
        Value::Str(s) => parse_go_float(s)
            .map_err(|e| format!("strconv.ParseFloat: parsing {}: {e}", go_quote(s))),
        other => Err(format!("can't convert {} to float", type_name(other))),
    }
}

/// `fmt.Sprintf("%.4g", v)`
fn g4(v: f64) -> String {
    let mut s = String::new();
    fmt_float(&mut s, v, 'g', Some(4), &Flags::default());
    s
}

const SMALL_PREFIXES: [&str; 8] = ["m", "u", "n", "p", "f", "a", "z", "y"];

fn humanize(mut v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return g4(v);
    }
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
    } else {
        for p in SMALL_PREFIXES {
            if v.abs() >= 1.0 {
                break;
            }
            prefix = p;
            v *= 1000.0;
        }
    }
    format!("{}{prefix}", g4(v))
}

fn humanize1024(mut v: f64) -> String {
    if v.abs() <= 1.0 || !v.is_finite() {
        return g4(v);
    }
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format!("{}{prefix}", g4(v))
}

fn humanize_duration(mut v: f64) -> String {
    if !v.is_finite() {
        return g4(v);
    }
    if v == 0.0 {
        return format!("{}s", g4(v));
    }
    if v.abs() >= 1.0 {
        let mut sign = "";
        if v < 0.0 {
            sign = "-";
            v = -v;
        }
        let duration = v as i64;
        let seconds = duration % 60;
        let minutes = (duration / 60) % 60;
        let hours = (duration / 60 / 60) % 24;
        let days = duration / 60 / 60 / 24;
        if days != 0 {
            return format!("{sign}{days}d {hours}h {minutes}m {seconds}s");
        }
        if hours != 0 {
            return format!("{sign}{hours}h {minutes}m {seconds}s");
        }
        if minutes != 0 {
            return format!("{sign}{minutes}m {seconds}s");
        }
        return format!("{sign}{}s", g4(v));
    }
    let mut prefix = "";
    for p in SMALL_PREFIXES {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", g4(v))
}

/// Prometheus's `floatToTime`: seconds to a UTC instant, millisecond precision.
fn float_to_time(v: f64) -> Result<GoTime, String> {
    if !v.is_finite() {
        return Err("value is NaN or Inf".to_string());
    }
    let ts = v * 1e9;
    if ts > i64::MAX as f64 || ts < i64::MIN as f64 {
        return Err(format!(
            "{} cannot be represented as a nanoseconds timestamp since it overflows int64",
            value_string(&Value::Float(v))
        ));
    }
    let ms = (ts as i64) / 1_000_000;
    let mut secs = ms / 1000;
    let mut nanos = (ms % 1000) * 1_000_000;
    if nanos < 0 {
        secs -= 1;
        nanos += 1_000_000_000;
    }
    Ok(GoTime {
        secs,
        nanos: nanos as u32,
    })
}

/// Prometheus's `model.ParseDuration`, in seconds.
fn parse_duration(s: &str) -> Result<f64, String> {
    match s {
        "0" => return Ok(0.0),
        "" => return Err("empty duration string".to_string()),
        _ => {}
    }
    const UNITS: [(&str, i128); 7] = [
        ("y", 365 * 24 * 3_600_000),
        ("w", 7 * 24 * 3_600_000),
        ("d", 24 * 3_600_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ];
    let invalid = || format!("not a valid duration string: {}", go_quote(s));
    let mut rest = s;
    let mut next_unit = 0;
    let mut total_ms: i128 = 0;
    while !rest.is_empty() {
        let nd = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if nd == 0 {
            return Err(invalid());
        }
        let n: i128 = rest[..nd]
            .parse()
            .map_err(|_| "duration out of range".to_string())?;
        rest = &rest[nd..];
        let unit = if rest.starts_with("ms") {
            "ms"
        } else {
            rest.get(..1).unwrap_or("")
        };
        let pos = UNITS[next_unit..]
            .iter()
            .position(|(u, _)| *u == unit)
            .ok_or_else(invalid)?;
        let mult = UNITS[next_unit + pos].1;
        next_unit += pos + 1;
        rest = &rest[unit.len()..];
        total_ms = total_ms.saturating_add(n.saturating_mul(mult));
        if total_ms > i128::from(i64::MAX) / 1_000_000 {
            return Err("duration out of range".to_string());
        }
    }
    Ok(total_ms as f64 / 1000.0)
}

// ---------------------------------------------------------------------------
// Execution
// ---------------------------------------------------------------------------

enum Flow {
    Normal,
    Break,
    Continue,
}

struct ExecErr {
    line: usize,
    msg: String,
}

type EResult<X> = Result<X, ExecErr>;

struct Exec<'a> {
    query: &'a dyn TemplateQuery,
    external_url: &'a str,
    vars: Vec<(String, Value)>,
    line: usize,
    out: String,
    regexes: HashMap<String, Regex>,
}

impl Exec<'_> {
    fn fail(&self, msg: impl Into<String>) -> ExecErr {
        ExecErr {
            line: self.line,
            msg: msg.into(),
        }
    }

    fn walk(&mut self, dot: &Value, list: &[Node]) -> EResult<Flow> {
        for node in list {
            match self.walk_node(dot, node)? {
                Flow::Normal => {}
                other => return Ok(other),
            }
        }
        Ok(Flow::Normal)
    }

    fn walk_node(&mut self, dot: &Value, node: &Node) -> EResult<Flow> {
        match node {
            Node::Text(s) => self.out.push_str(s),
            Node::Action(pipe) => {
                self.line = pipe.line;
                let v = self.eval_pipeline(dot, pipe)?;
                if pipe.decl.is_empty() {
                    match v {
                        Value::Nil => self.out.push_str("<no value>"),
                        v => fmt_arg(&mut self.out, &v, 'v', &Flags::default()),
                    }
                }
            }
            Node::If(c) => return self.walk_if_with(dot, c, false),
            Node::With(c) => return self.walk_if_with(dot, c, true),
            Node::Range(c) => return self.walk_range(dot, c),
            Node::Break => return Ok(Flow::Break),
            Node::Continue => return Ok(Flow::Continue),
        }
        Ok(Flow::Normal)
    }

    fn walk_if_with(&mut self, dot: &Value, c: &Control, with: bool) -> EResult<Flow> {
        let mark = self.vars.len();
        self.line = c.pipe.line;
        let val = self.eval_pipeline(dot, &c.pipe)?;
        let flow = if truth(&val) {
            let d = if with { &val } else { dot };
            self.walk(d, &c.list)?
        } else if let Some(e) = &c.else_list {
            self.walk(dot, e)?
        } else {
            Flow::Normal
        };
        self.vars.truncate(mark);
        Ok(flow)
    }

    fn walk_range(&mut self, dot: &Value, c: &Control) -> EResult<Flow> {
        let mark = self.vars.len();
        self.line = c.pipe.line;
        let val = self.eval_pipeline(dot, &c.pipe)?;
        let items: Vec<(Value, Value)> = match &val {
            Value::Vector(v) => v
                .iter()
                .enumerate()
                .map(|(i, s)| (Value::Int(i as i64), Value::Sample(s.clone())))
                .collect(),
            Value::StrMap(m) => m
                .iter()
                .map(|(k, v)| (Value::Str(k.clone()), Value::Str(v.clone())))
                .collect(),
            Value::AnyMap(m) => m
                .iter()
                .map(|(k, v)| (Value::Str(k.clone()), v.clone()))
                .collect(),
            Value::Nil => Vec::new(),
            other => {
                return Err(self.fail(format!("range can't iterate over {}", value_string(other))))
            }
        };
        if items.is_empty() {
            let flow = match &c.else_list {
                Some(e) => self.walk(dot, e)?,
                None => Flow::Normal,
            };
            self.vars.truncate(mark);
            return Ok(flow);
        }
        let decl = &c.pipe.decl;
        for (index, elem) in items {
            if c.pipe.is_assign {
                match decl.as_slice() {
                    [k, e] => {
                        self.set_var(k, index)?;
                        self.set_var(e, elem.clone())?;
                    }
                    [e] => self.set_var(e, elem.clone())?,
                    _ => {}
                }
            } else {
                let n = self.vars.len();
                if !decl.is_empty() && n >= 1 {
                    self.vars[n - 1].1 = elem.clone();
                }
                if decl.len() > 1 && n >= 2 {
                    self.vars[n - 2].1 = index;
                }
            }
            let inner = self.vars.len();
            let flow = self.walk(&elem, &c.list)?;
            self.vars.truncate(inner);
            if let Flow::Break = flow {
                break;
            }
        }
        self.vars.truncate(mark);
        Ok(Flow::Normal)
    }

    fn var_value(&self, name: &str) -> EResult<Value> {
        match self.vars.iter().rev().find(|(n, _)| n == name) {
            Some((_, v)) => Ok(v.clone()),
            None => Err(self.fail(format!("undefined variable: {name}"))),
        }
    }

    fn set_var(&mut self, name: &str, v: Value) -> EResult<()> {
        match self.vars.iter_mut().rev().find(|(n, _)| n == name) {
            Some(slot) => {
                slot.1 = v;
                Ok(())
            }
            None => Err(self.fail(format!("undefined variable: {name}"))),
        }
    }

    fn eval_pipeline(&mut self, dot: &Value, pipe: &Pipe) -> EResult<Value> {
        let mut value: Option<Value> = None;
        for cmd in &pipe.cmds {
            value = Some(self.eval_command(dot, cmd, value)?);
        }
        let v = value.unwrap_or(Value::Nil);
        for name in &pipe.decl {
            if pipe.is_assign {
                self.set_var(name, v.clone())?;
            } else {
                self.vars.push((name.clone(), v.clone()));
            }
        }
        Ok(v)
    }

    fn not_a_function(&self, args: &[Arg], fin: &Option<Value>) -> EResult<()> {
        if args.len() > 1 || fin.is_some() {
            let first = args.first().map(ToString::to_string).unwrap_or_default();
            return Err(self.fail(format!("can't give argument to non-function {first}")));
        }
        Ok(())
    }

    fn eval_command(&mut self, dot: &Value, cmd: &Command, fin: Option<Value>) -> EResult<Value> {
        self.line = cmd.line;
        let has_args = cmd.args.len() > 1 || fin.is_some();
        let Some(first) = cmd.args.first() else {
            return Err(self.fail("empty command"));
        };
        match first {
            Arg::Field(ids) => self.eval_field_chain(dot.clone(), ids, has_args),
            Arg::Chain(node, ids) => self.eval_chain(dot, node, ids, has_args, first),
            Arg::Ident(name) => {
                let rest = cmd.args.get(1..).unwrap_or(&[]);
                self.eval_function(dot, name, rest, fin, cmd.line)
            }
            Arg::Pipe(p) => {
                self.not_a_function(&cmd.args, &fin)?;
                self.eval_pipeline(dot, p)
            }
            Arg::Variable(parts) => {
                if parts.len() == 1 {
                    self.not_a_function(&cmd.args, &fin)?;
                }
                self.eval_variable(parts, has_args)
            }
            Arg::Nil => Err(self.fail("nil is not a command")),
            lit => {
                self.not_a_function(&cmd.args, &fin)?;
                match lit {
                    Arg::Dot => Ok(dot.clone()),
                    other => self.literal(other),
                }
            }
        }
    }

    fn literal(&self, arg: &Arg) -> EResult<Value> {
        match arg {
            Arg::Bool(b) => Ok(Value::Bool(*b)),
            Arg::Str { text, .. } => Ok(Value::Str(text.clone())),
            Arg::Number(n) => ideal(n).map_err(|m| self.fail(m)),
            other => Err(self.fail(format!(
                "can't evaluate command {}",
                go_quote(&other.to_string())
            ))),
        }
    }

    fn eval_variable(&mut self, parts: &[String], has_args: bool) -> EResult<Value> {
        let Some((name, fields)) = parts.split_first() else {
            return Err(self.fail("empty variable"));
        };
        let v = self.var_value(name)?;
        if fields.is_empty() {
            return Ok(v);
        }
        self.eval_field_chain(v, fields, has_args)
    }

    fn eval_chain(
        &mut self,
        dot: &Value,
        node: &Arg,
        ids: &[String],
        has_args: bool,
        whole: &Arg,
    ) -> EResult<Value> {
        if let Arg::Nil = node {
            return Err(self.fail(format!("indirection through explicit nil in {whole}")));
        }
        let recv = self.eval_arg(dot, node, P::Any)?;
        self.eval_field_chain(recv, ids, has_args)
    }

    fn eval_field_chain(&mut self, recv: Value, ids: &[String], has_args: bool) -> EResult<Value> {
        let mut r = recv;
        for (i, id) in ids.iter().enumerate() {
            r = self.eval_field(id, r, has_args && i + 1 == ids.len())?;
        }
        Ok(r)
    }

    fn eval_field(&self, name: &str, recv: Value, has_args: bool) -> EResult<Value> {
        let map_args = || self.fail(format!("{name} is not a method but has arguments"));
        let field = |v: Value| {
            if has_args {
                Err(self.fail(format!(
                    "{name} has arguments but cannot be invoked as function"
                )))
            } else {
                Ok(v)
            }
        };
        match &recv {
            Value::Nil => Ok(Value::Nil),
            Value::StrMap(m) => {
                if has_args {
                    return Err(map_args());
                }
                Ok(Value::Str(m.get(name).cloned().unwrap_or_default()))
            }
            Value::AnyMap(m) => {
                if has_args {
                    return Err(map_args());
                }
                Ok(m.get(name).cloned().unwrap_or(Value::Nil))
            }
            Value::Root(r) => match name {
                "Labels" => field(Value::StrMap(r.labels.clone())),
                "ExternalLabels" => field(Value::StrMap(r.external_labels.clone())),
                "ExternalURL" => field(Value::Str(r.external_url.clone())),
                "Value" => field(Value::Float(r.value)),
                _ => Err(self.fail(format!("can't evaluate field {name} in type {ROOT_TYPE}"))),
            },
            Value::Sample(s) => match name {
                "Labels" => field(Value::StrMap(s.labels.clone())),
                "Value" => field(Value::Float(s.value)),
                _ => Err(self.fail(format!(
                    "can't evaluate field {name} in type *template.sample"
                ))),
            },
            other => Err(self.fail(format!(
                "can't evaluate field {name} in type {}",
                type_name(other)
            ))),
        }
    }

    /// Go's `evalArg`: an argument evaluated for a parameter of type `p`.
    fn eval_arg(&mut self, dot: &Value, arg: &Arg, p: P) -> EResult<Value> {
        let v = match arg {
            Arg::Dot => dot.clone(),
            Arg::Nil => {
                return match p {
                    P::Str => Err(self.fail("cannot assign nil to string")),
                    _ => Ok(Value::Nil),
                }
            }
            Arg::Field(ids) => self.eval_field_chain(dot.clone(), ids, false)?,
            Arg::Variable(parts) => self.eval_variable(parts, false)?,
            Arg::Pipe(pipe) => self.eval_pipeline(dot, pipe)?,
            Arg::Ident(name) => {
                let line = self.line;
                self.eval_function(dot, name, &[], None, line)?
            }
            Arg::Chain(node, ids) => self.eval_chain(dot, node, ids, false, arg)?,
            Arg::Bool(_) | Arg::Number(_) | Arg::Str { .. } => {
                return match (p, arg) {
                    (P::Str, Arg::Str { text, .. }) => Ok(Value::Str(text.clone())),
                    (P::Str, _) => Err(self.fail(format!("expected string; found {arg}"))),
                    (P::Any, _) => self.literal(arg),
                    _ => Err(self.fail(format!(
                        "can't handle {arg} for arg of type {}",
                        p.type_name()
                    ))),
                };
            }
        };
        coerce(v, p).map_err(|m| self.fail(m))
    }

    fn eval_function(
        &mut self,
        dot: &Value,
        name: &str,
        args: &[Arg],
        fin: Option<Value>,
        line: usize,
    ) -> EResult<Value> {
        let at = |msg: String| ExecErr { line, msg };
        let Some(sig) = signature(name) else {
            return Err(at(format!("{} is not a defined function", go_quote(name))));
        };
        let num_in = args.len() + usize::from(fin.is_some());
        let nfixed = sig.fixed.len();
        if sig.variadic.is_some() {
            if num_in < nfixed {
                return Err(at(format!(
                    "wrong number of args for {name}: want at least {nfixed} got {}",
                    args.len()
                )));
            }
        } else if num_in != nfixed {
            return Err(at(format!(
                "wrong number of args for {name}: want {nfixed} got {num_in}"
            )));
        }
        let param = |i: usize| sig.fixed.get(i).copied().or(sig.variadic).unwrap_or(P::Any);
        if name == "and" || name == "or" {
            let want = name == "or";
            let mut v = Value::Nil;
            for a in args {
                v = self.eval_arg(dot, a, P::Any)?;
                if truth(&v) == want {
                    return Ok(v);
                }
            }
            return Ok(fin.unwrap_or(v));
        }
        let mut vals = Vec::with_capacity(num_in);
        for (i, a) in args.iter().enumerate() {
            vals.push(self.eval_arg(dot, a, param(i))?);
        }
        if let Some(f) = fin {
            self.line = line;
            vals.push(coerce(f, param(args.len())).map_err(at)?);
        }
        self.call_builtin(name, &vals)
            .map_err(|m| at(format!("error calling {name}: {m}")))
    }

    fn regex(&mut self, pattern: &str) -> Result<Regex, regex::Error> {
        if let Some(re) = self.regexes.get(pattern) {
            return Ok(re.clone());
        }
        let re = Regex::new(pattern)?;
        self.regexes.insert(pattern.to_string(), re.clone());
        Ok(re)
    }

    fn call_builtin(&mut self, name: &str, vals: &[Value]) -> Result<Value, String> {
        let a0 = take(vals, 0);
        let a1 = take(vals, 1);
        let s0 = as_str(&a0);
        let s1 = as_str(&a1);
        let nil_sample = "runtime error: invalid memory address or nil pointer dereference";
        Ok(match name {
            "not" => Value::Bool(!truth(&a0)),
            "len" => builtin_len(&a0)?,
            "index" => builtin_index(vals)?,
            "slice" => builtin_slice(vals)?,
            "call" => {
                return Err(match a0 {
                    Value::Nil => "call of nil".to_string(),
                    other => format!("non-function of type {}", type_name(&other)),
                })
            }
            "eq" => Value::Bool(go_eq(&a0, vals.get(1..).unwrap_or(&[]))?),
            "ne" => Value::Bool(!go_eq(&a0, std::slice::from_ref(&a1))?),
            "lt" => Value::Bool(go_lt(&a0, &a1)?),
            "le" => Value::Bool(go_le(&a0, &a1)?),
            "gt" => Value::Bool(!go_le(&a0, &a1)?),
            "ge" => Value::Bool(!go_lt(&a0, &a1)?),
            "print" => Value::Str(go_sprint(vals)),
            "println" => Value::Str(go_sprintln(vals)),
            "printf" => Value::Str(go_sprintf(s0, vals.get(1..).unwrap_or(&[]))),
            "html" => Value::Str(html_escape(&eval_args_string(vals))),
            "js" => Value::Str(js_escape(&eval_args_string(vals))),
            "urlquery" => Value::Str(query_escape(&eval_args_string(vals))),
            "query" => {
                let res = self.query.query(s0)?;
                Value::Vector(Rc::new(
                    res.into_iter()
                        .map(|s| {
                            Rc::new(Sample {
                                labels: Rc::new(s.labels.into_iter().collect()),
                                value: s.value,
                            })
                        })
                        .collect(),
                ))
            }
            "first" => match &a0 {
                Value::Vector(v) if !v.is_empty() => Value::Sample(v[0].clone()),
                _ => return Err("first() called on vector with no elements".to_string()),
            },
            "label" => match &a1 {
                Value::Sample(s) => Value::Str(s.labels.get(s0).cloned().unwrap_or_default()),
                _ => return Err(nil_sample.to_string()),
            },
            "value" => match &a0 {
                Value::Sample(s) => Value::Float(s.value),
                _ => return Err(nil_sample.to_string()),
            },
            "strvalue" => match &a0 {
                Value::Sample(s) => {
                    Value::Str(s.labels.get("__value__").cloned().unwrap_or_default())
                }
                _ => return Err(nil_sample.to_string()),
            },
            "args" => Value::AnyMap(Rc::new(
                vals.iter()
                    .enumerate()
                    .map(|(i, v)| (format!("arg{i}"), v.clone()))
                    .collect(),
            )),
            "reReplaceAll" => {
                let re = self
                    .regex(s0)
                    .map_err(|e| format!("regexp: Compile(`{s0}`): {e}"))?;
                Value::Str(re.replace_all(as_str(&take(vals, 2)), s1).into_owned())
            }
            "match" => {
                let re = self
                    .regex(s0)
                    .map_err(|e| format!("error parsing regexp: {e}"))?;
                Value::Bool(re.is_match(s1))
            }
            "title" => Value::Str(go_title(s0)),
            "toUpper" => Value::Str(s0.to_uppercase()),
            "toLower" => Value::Str(s0.to_lowercase()),
            "safeHtml" => Value::Str(s0.to_string()),
            "graphLink" => Value::Str(format!("/graph?g0.expr={}&g0.tab=0", query_escape(s0))),
            "tableLink" => Value::Str(format!("/graph?g0.expr={}&g0.tab=1", query_escape(s0))),
            "sortByLabel" => {
                let mut v: Vec<Rc<Sample>> = match &a1 {
                    Value::Vector(v) => v.as_ref().clone(),
                    _ => Vec::new(),
                };
                v.sort_by(|x, y| {
                    let kx = x.labels.get(s0).map_or("", String::as_str);
                    let ky = y.labels.get(s0).map_or("", String::as_str);
                    kx.cmp(ky)
                });
                Value::Vector(Rc::new(v))
            }
            "stripPort" => Value::Str(split_host_port(s0).map_or(s0, |(h, _)| h).to_string()),
            "stripDomain" => Value::Str(strip_domain(s0)),
            "humanize" => Value::Str(humanize(convert_to_float(&a0)?)),
            "humanize1024" => Value::Str(humanize1024(convert_to_float(&a0)?)),
            "humanizeDuration" => Value::Str(humanize_duration(convert_to_float(&a0)?)),
            "humanizePercentage" => Value::Str(format!("{}%", g4(convert_to_float(&a0)? * 100.0))),
            "humanizeTimestamp" => {
                let v = convert_to_float(&a0)?;
                if !v.is_finite() {
                    Value::Str(g4(v))
                } else {
                    Value::Str(float_to_time(v)?.to_string())
                }
            }
            "toTime" => Value::Time(float_to_time(convert_to_float(&a0)?)?),
            "pathPrefix" => Value::Str(url_path(self.external_url)),
            "externalURL" => Value::Str(self.external_url.to_string()),
            "parseDuration" => Value::Float(parse_duration(s0)?),
            other => return Err(format!("{} is not a defined function", go_quote(other))),
        })
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake;

    fn sample(labels: &[(&str, &str)], value: f64) -> QuerySample {
        QuerySample {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value,
        }
    }

    impl TemplateQuery for Fake {
        fn query(&self, q: &str) -> Result<Vec<QuerySample>, String> {
            match q {
                "up" => Ok(vec![
                    sample(&[("__name__", "up"), ("instance", "b:9100")], 1.0),
                    sample(&[("__name__", "up"), ("instance", "a:9100")], 0.0),
                ]),
                "x" => Ok(vec![
                    sample(&[("instance", "i1")], 1.5),
                    sample(&[("instance", "i2")], 2.0),
                ]),
                "big" => Ok(vec![sample(&[], 1234567.0)]),
                "str" => Ok(vec![sample(&[("__value__", "hello")], 0.0)]),
                "empty" => Ok(vec![]),
                _ => Err(format!("bad query {q:?}")),
            }
        }
    }

    fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn try_render(
        text: &str,
        labels: &[(&str, &str)],
        value: f64,
    ) -> Result<String, TemplateError> {
        let labels = owned(labels);
        let ext = owned(&[("cluster", "prod"), ("region", "eu")]);
        let data = TemplateData {
            labels: &labels,
            external_labels: &ext,
            external_url: "http://prom.example.com:9090/prom",
            value,
        };
        Template::parse("t", text)?.render(&data, &Fake)
    }

    fn rv(text: &str, value: f64) -> String {
        match try_render(text, &[("instance", "a:9100"), ("job", "node")], value) {
            Ok(s) => s,
            Err(e) => panic!("{text:?}: {e}"),
        }
    }

    fn r(text: &str) -> String {
        rv(text, 0.5)
    }

    fn err(text: &str) -> TemplateError {
        match try_render(text, &[("instance", "a:9100")], 0.5) {
            Ok(s) => panic!("{text:?} rendered {s:?}, expected an error"),
            Err(e) => e,
        }
    }

    fn err_msg(text: &str) -> String {
        err(text).to_string()
    }

    #[test]
    fn labels_and_missing_label() {
        assert_eq!(r("{{ $labels.instance }} is down"), "a:9100 is down");
        assert_eq!(r("[{{ $labels.missing }}]"), "[]");
        assert_eq!(r("{{ .Labels.job }}"), "node");
        assert_eq!(r("{{ $labels.missing | toUpper }}"), "");
        assert_eq!(r("{{ index $labels \"job\" }}"), "node");
        assert_eq!(r("{{ $labels }}"), "map[instance:a:9100 job:node]");
    }

    #[test]
    fn value_printing() {
        assert_eq!(rv("{{ $value }}", 0.5), "0.5");
        assert_eq!(rv("{{ $value }}", 1e21), "1e+21");
        assert_eq!(rv("{{ $value }}", 42.0), "42");
        assert_eq!(rv("{{ $value }}", 1.5), "1.5");
        assert_eq!(rv("{{ $value }}", 100000.0), "100000");
        assert_eq!(rv("{{ $value }}", 1234567.0), "1.234567e+06");
        assert_eq!(rv("{{ $value }}", 0.0001), "0.0001");
        assert_eq!(rv("{{ $value }}", 0.00001), "1e-05");
        assert_eq!(rv("{{ $value }}", -2.5), "-2.5");
        assert_eq!(rv("{{ $value }}", f64::NAN), "NaN");
        assert_eq!(rv("{{ $value }}", f64::INFINITY), "+Inf");
        assert_eq!(rv("{{ .Value }}", 0.0), "0");
        assert_eq!(
            r("{{ 1e3 }} {{ 0x1F }} {{ -7 }} {{ 1.50 }} {{ 'a' }} {{ 017 }}"),
            "1000 31 -7 1.5 97 15"
        );
        assert_eq!(
            r("{{ true }} {{ false }} {{ \"s\" }} {{ `raw` }}"),
            "true false s raw"
        );
    }

    #[test]
    fn humanize_family() {
        let h = |v: f64| rv("{{ $value | humanize }}", v);
        assert_eq!(h(1234567.0), "1.235M");
        assert_eq!(h(12345.0), "12.35k");
        assert_eq!(h(0.001), "1m");
        assert_eq!(h(0.00012), "120u");
        assert_eq!(h(0.0), "0");
        assert_eq!(h(f64::NAN), "NaN");
        assert_eq!(h(f64::INFINITY), "+Inf");
        assert_eq!(h(f64::NEG_INFINITY), "-Inf");
        assert_eq!(h(1000.0), "1k");
        assert_eq!(h(999.0), "999");
        assert_eq!(h(-1234.0), "-1.234k");
        assert_eq!(h(1.0), "1");
        assert_eq!(r("{{ humanize 1234567 }}"), "1.235M");
        assert_eq!(r("{{ humanize \"2048\" }}"), "2.048k");
        assert_eq!(r("{{ humanize1024 1048576 }}"), "1Mi");
        assert_eq!(r("{{ humanize1024 1024 }}"), "1ki");
        assert_eq!(r("{{ humanize1024 0.5 }}"), "0.5");
        assert_eq!(r("{{ humanize1024 1536 }}"), "1.5ki");
        assert_eq!(rv("{{ humanizePercentage $value }}", 0.1234567), "12.35%");
        assert_eq!(r("{{ humanizePercentage 0.5 }}"), "50%");
    }

    #[test]
    fn humanize_duration() {
        let d = |v: f64| rv("{{ humanizeDuration $value }}", v);
        assert_eq!(d(0.0), "0s");
        assert_eq!(d(0.1), "100ms");
        assert_eq!(d(0.0001234), "123.4us");
        assert_eq!(d(1.0), "1s");
        assert_eq!(d(1.5), "1.5s");
        assert_eq!(d(-1.0), "-1s");
        assert_eq!(d(60.0), "1m 0s");
        assert_eq!(d(3600.0), "1h 0m 0s");
        assert_eq!(d(86400.0), "1d 0h 0m 0s");
        assert_eq!(d(90061.0), "1d 1h 1m 1s");
        assert_eq!(d(-90061.0), "-1d 1h 1m 1s");
        assert_eq!(d(f64::NAN), "NaN");
        assert_eq!(r("{{ humanizeDuration \"65\" }}"), "1m 5s");
    }

    #[test]
    fn timestamps() {
        assert_eq!(
            rv("{{ humanizeTimestamp $value }}", 1435065584.128),
            "2015-06-23 13:19:44.128 +0000 UTC"
        );
        assert_eq!(
            r("{{ humanizeTimestamp 0 }}"),
            "1970-01-01 00:00:00 +0000 UTC"
        );
        assert_eq!(
            r("{{ humanizeTimestamp 951782400 }}"),
            "2000-02-29 00:00:00 +0000 UTC"
        );
        assert_eq!(
            r("{{ humanizeTimestamp -1.5 }}"),
            "1969-12-31 23:59:58.5 +0000 UTC"
        );
        assert_eq!(rv("{{ humanizeTimestamp $value }}", f64::NAN), "NaN");
        assert_eq!(
            r("{{ toTime 1435065584 }}"),
            "2015-06-23 13:19:44 +0000 UTC"
        );
        assert!(err_msg("{{ humanizeTimestamp 1e300 }}").contains("overflows int64"));
    }

    #[test]
    fn humanize_rejects_non_numbers() {
        let e = err("{{ humanize \"abc\" }}");
        assert_eq!(
            e,
            TemplateError::Exec {
                name: "t".into(),
                line: 1,
                msg: "error calling humanize: strconv.ParseFloat: parsing \"abc\": invalid syntax"
                    .into()
            }
        );
        assert_eq!(
            e.to_string(),
            "template: t:1: executing \"t\": error calling humanize: strconv.ParseFloat: parsing \"abc\": invalid syntax"
        );
        assert!(err_msg("{{ humanize true }}").contains("can't convert bool to float"));
        assert_eq!(
            r("{{ humanize \"NaN\" }} {{ humanize \"+Inf\" }} {{ humanize \"1e3\" }}"),
            "NaN +Inf 1k"
        );
    }

    #[test]
    fn printf_verbs() {
        assert_eq!(rv("{{ printf \"%.2f\" $value }}", 2.345678), "2.35");
        assert_eq!(rv("{{ $value | printf \"%.1f%%\" }}", 99.25), "99.2%");
        assert_eq!(r("{{ printf \"%5.1f|\" 2.25 }}"), "  2.2|");
        assert_eq!(r("{{ printf \"%-4s|\" \"ab\" }}"), "ab  |");
        assert_eq!(r("{{ printf \"%03d\" 7 }}"), "007");
        assert_eq!(r("{{ printf \"%03d\" -7 }}"), "-07");
        assert_eq!(
            r("{{ printf \"%+d %x %X %o %b\" 5 255 255 8 5 }}"),
            "+5 ff FF 10 101"
        );
        assert_eq!(r("{{ printf \"%d\" 1.5 }}"), "%!d(float64=1.5)");
        assert_eq!(r("{{ printf \"%s\" 3 }}"), "%!s(int=3)");
        assert_eq!(r("{{ printf \"%d\" }}"), "%!d(MISSING)");
        assert_eq!(r("{{ printf \"x\" 1.0 }}"), "x%!(EXTRA float64=1)");
        assert_eq!(r("{{ printf \"%q\" \"a\\\"b\" }}"), "\"a\\\"b\"");
        assert_eq!(r("{{ printf \"%%\" }}"), "%");
        assert_eq!(r("{{ printf \"%v %v %v\" 1.5 true \"s\" }}"), "1.5 true s");
        assert_eq!(r("{{ printf \"%e\" 1234.5678 }}"), "1.234568e+03");
        assert_eq!(r("{{ printf \"%g\" 0.000012 }}"), "1.2e-05");
        assert_eq!(r("{{ printf \"%.3g\" 1234.0 }}"), "1.23e+03");
        assert_eq!(r("{{ printf \"%08.3f\" -3.5 }}"), "-003.500");
        assert_eq!(r("{{ printf \"%+.1f\" 2.0 }}"), "+2.0");
        assert_eq!(
            r("{{ printf \"%6.2f|%-6.1f|\" 1.0 2.0 }}"),
            "  1.00|2.0   |"
        );
        assert_eq!(r("{{ printf \"%5s|%.2s\" \"ab\" \"xyz\" }}"), "   ab|xy");
        assert_eq!(r("{{ printf \"%t %v\" true nil }}"), "true <nil>");
        assert_eq!(r("{{ printf \"%s\" $labels.job }}"), "node");
        assert_eq!(r("{{ printf \"%x\" \"hi\" }}"), "6869");
        assert_eq!(r("{{ printf \"%c%c\" 72 105 }}"), "Hi");
        assert_eq!(
            r("{{ printf \"%s=%v\" \"k\" $labels }}"),
            "k=map[instance:a:9100 job:node]"
        );
        assert_eq!(
            r("{{ printf \"%f\" 1e21 }}"),
            "1000000000000000000000.000000"
        );
        assert_eq!(r("{{ printf \"%\" }}"), "%!(NOVERB)");
        assert_eq!(r("{{ printf \"%*d|\" 4 7 }}"), "   7|");
        assert_eq!(r("{{ printf \"%.0f %.0f\" 0.5 1.5 }}"), "0 2");
    }

    #[test]
    fn print_and_escapers() {
        assert_eq!(r("{{ print 1 2 \"a\" \"b\" 3 }}"), "1 2ab3");
        assert_eq!(r("{{ println \"a\" 1 }}"), "a 1\n");
        assert_eq!(
            r("{{ html \"<a href='x'>&\\\"\" }}"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&#34;"
        );
        assert_eq!(r("{{ js \"it's <b>\" }}"), "it\\'s \\u003Cb\\u003E");
        assert_eq!(r("{{ urlquery \"a b&c=d/é\" }}"), "a+b%26c%3Dd%2F%C3%A9");
        assert_eq!(r("{{ \"x\" | html }}"), "x");
    }

    #[test]
    fn queries() {
        assert_eq!(
            r("{{ with query \"up\" }}{{ . | first | value | humanize }}{{ end }}"),
            "1"
        );
        assert_eq!(
            r("{{ range query \"x\" }}{{ .Labels.instance }}={{ .Value }} {{ end }}"),
            "i1=1.5 i2=2 "
        );
        assert_eq!(r("{{ (query \"x\" | first).Value }}"), "1.5");
        assert_eq!(
            r("{{ (query \"big\" | first).Value | humanize }}"),
            "1.235M"
        );
        assert_eq!(r("{{ query \"x\" | first | label \"instance\" }}"), "i1");
        assert_eq!(
            r("{{ with query \"empty\" }}some{{ else }}none{{ end }}"),
            "none"
        );
        assert_eq!(r("{{ query \"str\" | first | strvalue }}"), "hello");
        assert_eq!(r("{{ len (query \"x\") }}"), "2");
        assert_eq!(
            r("{{ range sortByLabel \"instance\" (query \"up\") }}{{ label \"instance\" . }} {{ end }}"),
            "a:9100 b:9100 "
        );
        assert_eq!(r("{{ index (query \"x\") 1 | value }}"), "2");
        assert_eq!(r("{{ query \"x\" | first }}"), "{map[instance:i1] 1.5}");
    }

    #[test]
    fn query_errors() {
        let e = err("line one\n{{ query \"empty\" | first }}");
        match &e {
            TemplateError::Exec { line, msg, .. } => {
                assert_eq!(*line, 2);
                assert_eq!(
                    msg,
                    "error calling first: first() called on vector with no elements"
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(err_msg("{{ query \"nope\" }}").contains("error calling query: bad query"));
        let data = TemplateData {
            labels: &[],
            external_labels: &[],
            external_url: "",
            value: 0.0,
        };
        let t = Template::parse("n", "{{ query \"up\" }}").expect("parses");
        let e = t.render(&data, &no_query()).expect_err("no queries");
        assert!(e.to_string().contains("query is not available here"));
    }

    #[test]
    fn conditionals() {
        let t = "{{ if gt $value 80.0 }}high{{ else if gt $value 50.0 }}mid{{ else }}low{{ end }}";
        assert_eq!(rv(t, 90.0), "high");
        assert_eq!(rv(t, 60.0), "mid");
        assert_eq!(rv(t, 10.0), "low");
        assert_eq!(
            rv("{{ if gt $value 80 }}high{{ else }}low{{ end }}", 81.0),
            "high"
        );
        assert_eq!(rv("{{ if eq $value 2 }}two{{ end }}", 2.0), "two");
        assert_eq!(
            r("{{ if eq $labels.job \"x\" \"node\" }}yes{{ end }}"),
            "yes"
        );
        assert_eq!(
            r("{{ if ne $labels.job \"node\" }}yes{{ else }}no{{ end }}"),
            "no"
        );
        assert_eq!(
            r("{{ if and 1 0 }}t{{ else }}f{{ end }} {{ or 0 \"\" \"x\" }} {{ and 1 2 }}"),
            "f x 2"
        );
        assert_eq!(
            r("{{ not 0 }} {{ not \"a\" }} {{ lt 1 2 }} {{ le 2 2 }} {{ ge \"a\" \"b\" }}"),
            "true false true true false"
        );
        assert_eq!(r("{{ if $labels.missing }}t{{ else }}f{{ end }}"), "f");
        assert_eq!(r("{{ if .Labels }}t{{ end }}"), "t");
        assert_eq!(r("{{ with $labels.job }}[{{ . }}]{{ end }}"), "[node]");
        assert!(
            err_msg("{{ if eq 1 \"a\" }}{{ end }}").contains("incompatible types for comparison")
        );
        assert!(err_msg("{{ lt nil 1 }}").contains("invalid type for comparison"));
    }

    #[test]
    fn ranges() {
        assert_eq!(
            r("{{ range $k, $v := $labels }}{{ $k }}={{ $v }};{{ end }}"),
            "instance=a:9100;job=node;"
        );
        assert_eq!(r("{{ range $labels }}{{ . }},{{ end }}"), "a:9100,node,");
        assert_eq!(
            r("{{ range $e := query \"x\" }}{{ $e.Value }} {{ end }}"),
            "1.5 2 "
        );
        assert_eq!(
            r("{{ range $i, $e := query \"x\" }}{{ $i }}:{{ $e.Labels.instance }} {{ end }}"),
            "0:i1 1:i2 "
        );
        assert_eq!(
            r("{{ range query \"empty\" }}x{{ else }}nothing{{ end }}"),
            "nothing"
        );
        assert_eq!(
            r("{{ range $externalLabels }}{{ . }} {{ end }}"),
            "prod eu "
        );
        assert_eq!(r("{{ range query \"x\" }}{{ if eq .Value 2.0 }}{{ break }}{{ end }}{{ .Value }}{{ end }}"), "1.5");
        assert_eq!(r("{{ range query \"x\" }}{{ if eq .Value 1.5 }}{{ continue }}{{ end }}{{ .Value }}{{ end }}"), "2");
        assert_eq!(
            r("{{ range query \"x\" }}{{ $.Labels.job }}{{ end }}"),
            "nodenode"
        );
        assert!(err_msg("{{ range 5 }}{{ end }}").contains("range can't iterate over 5"));
        assert!(err_msg("{{ break }}").contains("{{break}} outside {{range}}"));
    }

    #[test]
    fn variables() {
        assert_eq!(
            r("{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ end }}{{ $x }}"),
            "2"
        );
        assert_eq!(
            r("{{ $x := 1 }}{{ if true }}{{ $x := 3 }}{{ $x }}{{ end }}{{ $x }}"),
            "31"
        );
        assert_eq!(
            r("{{ $labels = $externalLabels }}{{ $labels.cluster }}"),
            "prod"
        );
        assert_eq!(
            r("{{ $a := args 1 \"x\" }}{{ $a.arg0 }}-{{ $a.arg1 }}-{{ $a.arg2 }}"),
            "1-x-<no value>"
        );
        assert_eq!(r("{{ $ }}"), "{map[instance:a:9100 job:node] map[cluster:prod region:eu] http://prom.example.com:9090/prom 0.5}");
        assert!(err_msg("{{ if true }}{{ $x := 1 }}{{ end }}{{ $x }}")
            .contains("undefined variable \"$x\""));
        assert!(err_msg("{{ $nope }}").contains("undefined variable \"$nope\""));
    }

    #[test]
    fn trim_markers_and_comments() {
        assert_eq!(r("a  {{- \"b\" -}}  \n c"), "abc");
        assert_eq!(r("a\n{{- /* a comment */ -}}\nb"), "ab");
        assert_eq!(r("a{{/* comment\nspanning lines */}}b"), "ab");
        assert_eq!(r("{{ 3 -}} x"), "3x");
        assert_eq!(r("{{- 3 }}"), "3");
        assert_eq!(r("x {{-3}}"), "x -3");
        assert!(err_msg("{{ /* bad */ }}").contains("unexpected \"/\" in command"));
        assert!(err_msg("{{ \u{1}x }}").contains("unrecognized character in action: U+0001"));
        assert!(err_msg("{{/* unclosed").contains("unclosed comment"));
    }

    #[test]
    fn external_data_and_links() {
        assert_eq!(r("{{ $externalLabels.cluster }}"), "prod");
        assert_eq!(r("{{ $externalURL }}"), "http://prom.example.com:9090/prom");
        assert_eq!(
            r("{{ .ExternalURL }} {{ externalURL }}"),
            "http://prom.example.com:9090/prom http://prom.example.com:9090/prom"
        );
        assert_eq!(r("{{ pathPrefix }}"), "/prom");
        assert_eq!(
            r("{{ graphLink \"up == 0\" }}"),
            "/graph?g0.expr=up+%3D%3D+0&g0.tab=0"
        );
        assert_eq!(
            r("{{ tableLink \"rate(x[5m])\" }}"),
            "/graph?g0.expr=rate%28x%5B5m%5D%29&g0.tab=1"
        );
    }

    #[test]
    fn string_functions() {
        assert_eq!(
            r("{{ reReplaceAll \"(.*):.*\" \"$1\" $labels.instance }}"),
            "a"
        );
        assert_eq!(r("{{ $labels.instance | reReplaceAll \":.*\" \"\" }}"), "a");
        assert_eq!(r("{{ toUpper \"a\" }}{{ toLower \"B\" }}"), "Ab");
        assert_eq!(r("{{ title \"hello world\" }}"), "Hello World");
        assert_eq!(r("{{ title \"foo-bar_baz\" }}"), "Foo-Bar_baz");
        assert_eq!(
            r("{{ match \"^a\" $labels.instance }} {{ match \"^b\" \"a\" }}"),
            "true false"
        );
        assert_eq!(r("{{ stripPort \"host:9090\" }} {{ stripPort \"[2001:db8::1]:80\" }} {{ stripPort \"nohost\" }}"), "host 2001:db8::1 nohost");
        assert_eq!(r("{{ stripDomain \"node.example.com:9100\" }} {{ stripDomain \"node.example.com\" }} {{ stripDomain \"10.0.0.1:80\" }}"), "node:9100 node 10.0.0.1:80");
        assert_eq!(r("{{ safeHtml \"<b>\" }}"), "<b>");
        assert_eq!(
            r("{{ len \"abc\" }} {{ len $labels }} {{ slice \"abcdef\" 1 3 }}"),
            "3 2 bc"
        );
        assert_eq!(
            r("{{ parseDuration \"1h30m\" }} {{ parseDuration \"250ms\" }}"),
            "5400 0.25"
        );
        assert!(err_msg("{{ reReplaceAll \"(\" \"\" \"x\" }}")
            .contains("error calling reReplaceAll: regexp: Compile"));
        assert!(
            err_msg("{{ parseDuration \"5x\" }}").contains("not a valid duration string: \"5x\"")
        );
    }

    #[test]
    fn parentheses_and_pipelines() {
        assert_eq!(
            r("{{ printf \"%s-%s\" (toUpper \"a\") (printf \"%d\" (len \"xyz\")) }}"),
            "A-3"
        );
        assert_eq!(r("{{ \"abc\" | printf \"%s:%s\" \"x\" }}"), "x:abc");
        assert_eq!(r("{{ (1) }}"), "1");
        assert_eq!(r("{{ ((query \"x\") | first).Labels.instance }}"), "i1");
    }

    #[test]
    fn parse_errors() {
        let e = err("{{ humanise $value }}");
        assert_eq!(
            e,
            TemplateError::Parse {
                name: "t".into(),
                line: 1,
                msg: "function \"humanise\" not defined".into()
            }
        );
        assert_eq!(
            e.to_string(),
            "template: t:1: function \"humanise\" not defined"
        );
        assert!(err_msg("{{ if }}x{{ end }}").contains("missing value for if"));
        assert!(err_msg("{{ if true }}x").contains("unexpected EOF"));
        assert!(err_msg("{{ .Labels").contains("unclosed action"));
        assert!(err_msg("{{ end }}").contains("unexpected {{end}}"));
        assert!(err_msg("{{ else }}").contains("unexpected {{else}}"));
        assert!(err_msg("{{ }}").contains("missing value for command"));
        assert!(err_msg("{{ \"a\" | 1 }}").contains("non executable command in pipeline stage 2"));
        assert!(err_msg("{{ \"abc }}").contains("unterminated quoted string"));
        assert!(err_msg("{{ (1 }}").contains("unclosed left paren"));
        assert!(err_msg("{{ 1) }}").contains("unexpected right paren"));
        assert!(err_msg("{{ 3x }}").contains("bad number syntax: \"3x\""));
        assert!(err_msg("{{ \"a\".b }}").contains("unexpected . after term"));
        assert!(err_msg("{{ define \"x\" }}{{ end }}").contains("not supported"));
        match err("a\nb\n{{ humanise 1 }}") {
            TemplateError::Parse { line, .. } => assert_eq!(line, 3),
            other => panic!("unexpected {other:?}"),
        }
        match err("{{ if true }}\n\n{{ nope }}{{ end }}") {
            TemplateError::Parse { line, msg, .. } => {
                assert_eq!(line, 3);
                assert_eq!(msg, "function \"nope\" not defined");
            }
            other => panic!("unexpected {other:?}"),
        }
        let deep = format!("{{{{ {}1{} }}}}", "(".repeat(200), ")".repeat(200));
        assert!(err_msg(&deep).contains("max expression depth exceeded"));
    }

    #[test]
    fn exec_errors() {
        assert!(err_msg("{{ $labels.a.b.c }}").contains("can't evaluate field b in type string"));
        assert!(err_msg("{{ .Nope }}").contains("can't evaluate field Nope"));
        assert!(err_msg("{{ humanize 1 2 }}")
            .contains("wrong number of args for humanize: want 1 got 2"));
        assert!(err_msg("{{ toUpper 5 }}").contains("expected string; found 5"));
        assert!(err_msg("{{ $value | toUpper }}")
            .contains("wrong type for value; expected string; got float64"));
        assert!(err_msg("{{ 1 | 2 }}").contains("non executable command"));
        assert!(err_msg("{{ \"a\" 1 }}").contains("can't give argument to non-function \"a\""));
        assert!(err_msg("{{ index \"ab\" 5 }}").contains("index out of range: 5"));
        let e = err("ok\nok\n{{ lt $labels 1 }}");
        assert!(matches!(e, TemplateError::Exec { line: 3, .. }), "{e:?}");
        assert!(e
            .to_string()
            .starts_with("template: t:3: executing \"t\": error calling lt:"));
    }

    #[test]
    fn deep_nesting_renders() {
        let parens = format!("{{{{ {}7{} }}}}", "(".repeat(95), ")".repeat(95));
        assert_eq!(r(&parens), "7");
        let ifs = format!("{}x{}", "{{ if true }}".repeat(95), "{{ end }}".repeat(95));
        assert_eq!(r(&ifs), "x");
    }

    #[test]
    fn template_is_send_and_sync() {
        fn check<X: Send + Sync>() {}
        check::<Template>();
        check::<TemplateError>();
        let t = Template::parse("named", "x").expect("parses");
        assert_eq!(t.name(), "named");
    }

    #[test]
    fn misc_go_semantics() {
        assert!(
            err_msg("{{ index $labels nil }}").contains("value is nil; should be of type string")
        );
        assert_eq!(
            r("{{ with $x := $labels.job }}{{ $x }}{{ else }}none{{ end }}"),
            "node"
        );
        assert_eq!(r("{{ with $labels.nope }}x{{ else }}none{{ end }}"), "none");
        assert_eq!(
            r("{{ if false }}a{{ else if false }}b{{ else if true }}c{{ end }}"),
            "c"
        );
        assert_eq!(r("{{ \"}}\" }}"), "}}");
        assert_eq!(
            r("{{ if\n  true\n}}multi-line action{{ end }}"),
            "multi-line action"
        );
        assert_eq!(r("{{ 0 | and 1 }}|{{ \"\" | or 0 }}"), "0|");
        assert!(err_msg("{{ printf \"%s\" \"a\", \"b\" }}").contains("unexpected \",\" in operand"));
        assert!(err_msg("{{ if true }}a{{ else }}b{{ else }}c{{ end }}")
            .contains("expected end; found {{else}}"));
        assert!(err_msg("{{ range . }}{{ else if true }}{{ end }}")
            .contains("unexpected <if> in input"));
        // NaN is neither less than nor equal to anything, so Go's gt is true.
        assert_eq!(rv("{{ gt $value 80.0 }}", f64::NAN), "true");
    }

    #[test]
    fn number_formatting_helpers() {
        assert_eq!(strconv_float(12345.0, 'g', Some(4)), "1.234e+04");
        assert_eq!(strconv_float(0.000123456, 'g', Some(4)), "0.0001235");
        assert_eq!(strconv_float(100.0, 'g', Some(4)), "100");
        assert_eq!(strconv_float(0.0, 'e', Some(2)), "0.00e+00");
        assert_eq!(strconv_float(1e100, 'g', None), "1e+100");
        assert_eq!(strconv_float(-0.0, 'g', None), "-0");
        assert_eq!(parse_go_float("1_000.5"), Ok(1000.5));
        assert_eq!(parse_go_float("1e400"), Err("value out of range"));
        assert_eq!(parse_go_float("abc"), Err("invalid syntax"));
        assert_eq!(parse_go_int("0b101"), (Some(5), false));
        assert_eq!(parse_go_int("18446744073709551615"), (None, true));
        assert_eq!(
            go_unquote("\"a\\tb\\u00e9\\x41\\101\"").as_deref(),
            Ok("a\tbéAA")
        );
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }
}
