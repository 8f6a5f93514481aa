//! Label sets: the canonical identity of a series.
//!
//! Owns the `Label`/`Labels` value types, their canonical form (sorted,
//! unique names, no empty values), fingerprinting and Prometheus-style
//! display. Must not touch storage, the index, I/O, scraping or PromQL:
//! it is a plain value type usable anywhere.

use std::fmt;
use std::hash::Hasher;
use std::sync::Arc;

/// The reserved label carrying the metric name.
pub const METRIC_NAME: &str = "__name__";

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Label {
    pub name: Arc<str>,
    pub value: Arc<str>,
}

/// Same order as a derive (name, then value, as strings), but interned
/// strings are usually pointer-equal, and checking that first keeps sorting
/// query results from being dominated by `memcmp` of identical strings.
/// (`Arc`'s `Eq` already has this shortcut; `Ord` does not.)
impl Ord for Label {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        fn cmp_arc(a: &Arc<str>, b: &Arc<str>) -> std::cmp::Ordering {
            if Arc::ptr_eq(a, b) {
                std::cmp::Ordering::Equal
            } else {
                (**a).cmp(&**b)
            }
        }
        cmp_arc(&self.name, &other.name).then_with(|| cmp_arc(&self.value, &other.value))
    }
}

impl PartialOrd for Label {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Label {
    pub fn new(name: impl AsRef<str>, value: impl AsRef<str>) -> Self {
        Label {
            name: Arc::from(name.as_ref()),
            value: Arc::from(value.as_ref()),
        }
    }
}

/// Canonical label set. The invariants (sorted by name, unique names, no
/// empty values) are established by every constructor, so comparison,
/// hashing and ordering of two `Labels` agree with series identity.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Labels(Vec<Label>);

impl Labels {
    /// Canonicalises: sorts by name, keeps the last of duplicate names (so a
    /// later `set` overrides, like relabelling), then drops empty values
    /// because Prometheus treats an empty value as an absent label.
    pub fn new(mut v: Vec<Label>) -> Self {
        // Stable sort keeps input order among equal names, which is what
        // lets "last wins" be decided below.
        v.sort_by(|a, b| a.name.cmp(&b.name));
        let mut out: Vec<Label> = Vec::with_capacity(v.len());
        for l in v {
            match out.last_mut() {
                Some(prev) if prev.name == l.name => *prev = l,
                _ => out.push(l),
            }
        }
        out.retain(|l| !l.value.is_empty());
        out.shrink_to_fit();
        Labels(out)
    }

    pub fn from_pairs<I, N, V>(it: I) -> Self
    where
        I: IntoIterator<Item = (N, V)>,
        N: AsRef<str>,
        V: AsRef<str>,
    {
        Labels::new(it.into_iter().map(|(n, v)| Label::new(n, v)).collect())
    }

    /// Builds from labels already known to be canonical (e.g. re-interned
    /// copies of an existing `Labels`), skipping the sort.
    pub(super) fn from_sorted_unchecked(v: Vec<Label>) -> Self {
        debug_assert!(v.windows(2).all(|w| w[0].name < w[1].name));
        Labels(v)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        // Binary search: labels are sorted by name.
        self.0
            .binary_search_by(|l| (*l.name).cmp(name))
            .ok()
            .map(|i| &*self.0[i].value)
    }

    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Label> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_slice(&self) -> &[Label] {
        &self.0
    }

    /// Hash of `name 0xff value 0xff ...`. The 0xff separators cannot occur
    /// in UTF-8, so `{a="bc"}` and `{ab="c"}` hash different inputs.
    pub fn fingerprint(&self) -> u64 {
        let mut h = rustc_hash::FxHasher::default();
        for l in &self.0 {
            h.write(l.name.as_bytes());
            h.write_u8(0xff);
            h.write(l.value.as_bytes());
            h.write_u8(0xff);
        }
        // FxHasher's raw state has weak low bits for short inputs; a final
        // avalanche (splitmix64 finaliser) makes it usable as a map key and
        // keeps accidental collisions rare.
        let mut z = h.finish();
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        z ^ (z >> 31)
    }

    pub fn builder(&self) -> LabelsBuilder {
        LabelsBuilder {
            labels: self.0.clone(),
        }
    }

    /// Heap bytes owned by this value, not counting shared (interned) strings.
    pub(super) fn heap_bytes(&self) -> usize {
        self.0.capacity() * std::mem::size_of::<Label>()
    }
}

/// Edits a label set; `build` re-canonicalises so callers cannot break the
/// invariants.
#[derive(Clone, Debug)]
pub struct LabelsBuilder {
    labels: Vec<Label>,
}

impl LabelsBuilder {
    /// An empty value deletes, matching Prometheus relabelling semantics.
    pub fn set(&mut self, name: impl AsRef<str>, value: impl AsRef<str>) -> &mut Self {
        let name = name.as_ref();
        self.labels.retain(|l| &*l.name != name);
        if !value.as_ref().is_empty() {
            self.labels.push(Label::new(name, value));
        }
        self
    }

    pub fn del(&mut self, name: impl AsRef<str>) -> &mut Self {
        let name = name.as_ref();
        self.labels.retain(|l| &*l.name != name);
        self
    }

    pub fn build(&self) -> Labels {
        Labels::new(self.labels.clone())
    }
}

fn write_escaped(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    for c in s.chars() {
        match c {
            '\\' => f.write_str("\\\\")?,
            '"' => f.write_str("\\\"")?,
            '\n' => f.write_str("\\n")?,
            c => fmt::Write::write_char(f, c)?,
        }
    }
    Ok(())
}

impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.metric_name();
        if let Some(n) = name {
            f.write_str(n)?;
        }
        let mut rest = self.0.iter().filter(|l| &*l.name != METRIC_NAME).peekable();
        if name.is_some() && rest.peek().is_none() {
            return Ok(());
        }
        f.write_str("{")?;
        let mut first = true;
        for l in rest {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            f.write_str(&l.name)?;
            f.write_str("=\"")?;
            write_escaped(f, &l.value)?;
            f.write_str("\"")?;
        }
        f.write_str("}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonicalises_sort_dedup_and_empty() {
        let l = Labels::from_pairs([("b", "2"), ("a", "1"), ("c", ""), ("b", "3")]);
        let names: Vec<_> = l.iter().map(|l| (&*l.name, &*l.value)).collect();
        assert_eq!(names, vec![("a", "1"), ("b", "3")]);
        assert_eq!(l.get("c"), None);
        // last wins even when the last one is empty, i.e. deletes
        let l = Labels::from_pairs([("a", "1"), ("a", "")]);
        assert!(l.is_empty());
    }

    #[test]
    fn equal_sets_equal_fingerprints() {
        let a = Labels::from_pairs([("x", "1"), ("y", "2")]);
        let b = Labels::from_pairs([("y", "2"), ("x", "1")]);
        assert_eq!(a, b);
        assert_eq!(a.fingerprint(), b.fingerprint());
        let c = Labels::from_pairs([("x", "12")]);
        let d = Labels::from_pairs([("x1", "2")]);
        assert_ne!(c.fingerprint(), d.fingerprint());
    }

    #[test]
    fn display_escapes() {
        let l = Labels::from_pairs([
            ("__name__", "up"),
            ("job", "a\"b\\c\nd"),
            ("instance", "h:1"),
        ]);
        assert_eq!(l.to_string(), r#"up{instance="h:1", job="a\"b\\c\nd"}"#);
        assert_eq!(Labels::from_pairs([("__name__", "up")]).to_string(), "up");
        assert_eq!(Labels::from_pairs([("a", "b")]).to_string(), r#"{a="b"}"#);
        assert_eq!(Labels::default().to_string(), "{}");
    }

    #[test]
    fn builder_set_del() {
        let l = Labels::from_pairs([("__name__", "up"), ("job", "a")]);
        let mut b = l.builder();
        b.set("instance", "x").set("job", "b").del("__name__");
        let n = b.build();
        assert_eq!(n, Labels::from_pairs([("instance", "x"), ("job", "b")]));
        assert_eq!(n.metric_name(), None);
        let mut b = n.builder();
        b.set("job", "");
        assert_eq!(b.build().len(), 1);
    }
}
