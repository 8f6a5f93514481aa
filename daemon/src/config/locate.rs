//! Maps a field path (`scrape_configs.0.static_configs.1.targets`) to the line
//! and column where that field appears in a YAML document.
//!
//! serde tells us *which* field is wrong; only a parser that keeps positions can
//! tell us *where*. This index is built once per load from saphyr's event stream
//! and is used only for error messages, so it favours simplicity over speed.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser};

#[derive(Debug, Default)]
pub struct LineIndex {
    /// Path segments joined with '.', sequence items by their index.
    positions: HashMap<String, (usize, usize)>,
    /// Where the value of a field starts (for a key, the node after it).
    values: HashMap<String, (usize, usize)>,
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, next: usize },
}

impl LineIndex {
    /// Builds the index; a document saphyr cannot parse gives an empty index (the
    /// serde pass reports the syntax error with its own position).
    pub fn build(text: &str) -> Self {
        let mut positions = HashMap::new();
        let mut values = HashMap::new();
        let mut stack: Vec<Frame> = Vec::new();
        let mut parser = Parser::new_from_str(text);
        while let Some(Ok((event, span))) = parser.next_event() {
            let pos = (span.start.line(), span.start.col() + 1);
            // The path of the node this event starts, if it starts one.
            let node_path = |stack: &mut Vec<Frame>| -> Option<String> {
                match stack.last_mut() {
                    None => Some(String::new()),
                    Some(Frame::Map { path, key }) => key.take().map(|k| join(path, &k)),
                    Some(Frame::Seq { path, next }) => {
                        let p = join(path, &next.to_string());
                        *next += 1;
                        Some(p)
                    }
                }
            };
            match event {
                Event::Scalar(value, ..) => {
                    let is_key = matches!(stack.last(), Some(Frame::Map { key: None, .. }));
                    if is_key {
                        if let Some(Frame::Map { path, key }) = stack.last_mut() {
                            let p = join(path, &value);
                            positions.entry(p).or_insert(pos);
                            *key = Some(value.into_owned());
                        }
                    } else if let Some(p) = node_path(&mut stack) {
                        values.entry(p.clone()).or_insert(pos);
                        positions.entry(p).or_insert(pos);
                    }
                }
                Event::MappingStart(..) => {
                    let p = node_path(&mut stack).unwrap_or_default();
                    values.entry(p.clone()).or_insert(pos);
                    positions.entry(p.clone()).or_insert(pos);
                    stack.push(Frame::Map { path: p, key: None });
                }
                Event::SequenceStart(..) => {
                    let p = node_path(&mut stack).unwrap_or_default();
                    values.entry(p.clone()).or_insert(pos);
                    positions.entry(p.clone()).or_insert(pos);
                    stack.push(Frame::Seq { path: p, next: 0 });
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                }
                Event::Alias(_) => {
                    node_path(&mut stack);
                }
                _ => {}
            }
        }
        LineIndex { positions, values }
    }

    /// Where the value of the field at `path` starts, as Prometheus's rule
    /// errors report it (`expr: 'x +'` → the position of `'x +'`).
    pub fn locate_value(&self, path: &str) -> Option<(usize, usize)> {
        self.values.get(path).copied().or_else(|| self.locate(path))
    }

    /// The position of the deepest known prefix of `path`, so an error about a
    /// value that is absent points at the section that should have held it.
    pub fn locate(&self, path: &str) -> Option<(usize, usize)> {
        let mut p = path;
        loop {
            if let Some(pos) = self.positions.get(p) {
                return Some(*pos);
            }
            match p.rfind('.') {
                Some(i) => p = &p[..i],
                None => return self.positions.get("").copied(),
            }
        }
    }
}

fn join(base: &str, seg: &str) -> String {
    if base.is_empty() {
        seg.to_string()
    } else {
        format!("{base}.{seg}")
    }
}

/// Renders a dotted path the way users write it: `a.0.b` → `a[0].b`.
pub fn display_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 4);
    for seg in path.split('.').filter(|s| !s.is_empty()) {
        if seg.bytes().all(|b| b.is_ascii_digit()) {
            out.push('[');
            out.push_str(seg);
            out.push(']');
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(seg);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "global:\n  scrape_interval: 5s\nscrape_configs:\n  - job_name: a\n    static_configs:\n      - targets: [x:1, y:2]\n  - job_name: b\n    honor_labels: true\n";

    #[test]
    fn finds_keys_and_sequence_items() {
        let idx = LineIndex::build(DOC);
        assert_eq!(idx.locate("global.scrape_interval"), Some((2, 3)));
        assert_eq!(idx.locate("scrape_configs.1.honor_labels"), Some((8, 5)));
        assert_eq!(
            idx.locate("scrape_configs.0.static_configs.0.targets.1")
                .map(|p| p.0),
            Some(6)
        );
    }

    #[test]
    fn falls_back_to_nearest_parent() {
        let idx = LineIndex::build(DOC);
        assert_eq!(idx.locate("scrape_configs.1.missing").map(|p| p.0), Some(7));
    }

    #[test]
    fn display_path_uses_brackets() {
        assert_eq!(
            display_path("scrape_configs.0.static_configs.1.targets"),
            "scrape_configs[0].static_configs[1].targets"
        );
    }
}
