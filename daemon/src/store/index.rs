//! Inverted label index and series identity map.
//!
//! Owns: postings (label name -> value -> sorted series ids), the id ->
//! labels map, the fingerprint -> id map (collision-safe), and interning of
//! label strings (the index's own keys are the canonical `Arc<str>`s).
//! Resolves matchers to sorted id lists. Must not touch samples, chunks or
//! locking (the caller wraps it in a `RwLock`), nor do any I/O.

use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};

use super::labels::{Label, Labels};
use super::matcher::Matcher;

#[derive(Default)]
struct NamePostings {
    /// The interned name, kept here because `HashMap` cannot hand out its
    /// key together with a mutable value.
    name: Arc<str>,
    values: FxHashMap<Arc<str>, Vec<u64>>,
}

#[derive(Default)]
pub struct Index {
    postings: FxHashMap<Arc<str>, NamePostings>,
    labels: FxHashMap<u64, Labels>,
    by_fp: FxHashMap<u64, u64>,
    /// Extra ids whose fingerprint collides with `by_fp`'s entry. Almost
    /// always empty; keeps the common map at 16 bytes per entry.
    fp_collisions: FxHashMap<u64, Vec<u64>>,
    /// Every live id, sorted: the starting set for matchers that all match
    /// the empty string (e.g. only `!=`).
    all: Vec<u64>,
}

impl Index {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn labels_of(&self, id: u64) -> Option<&Labels> {
        self.labels.get(&id)
    }

    pub fn lookup(&self, fp: u64, labels: &Labels) -> Option<u64> {
        let first = *self.by_fp.get(&fp)?;
        if self.labels.get(&first) == Some(labels) {
            return Some(first);
        }
        self.fp_collisions
            .get(&fp)?
            .iter()
            .copied()
            .find(|id| self.labels.get(id) == Some(labels))
    }

    /// Adds a series. `id` must be larger than every id inserted before, which
    /// keeps every postings list sorted by plain `push`.
    pub fn insert(&mut self, id: u64, fp: u64, labels: &Labels) {
        let mut interned = Vec::with_capacity(labels.len());
        for l in labels.iter() {
            let np = match self.postings.get_mut(&*l.name) {
                Some(np) => np,
                None => self
                    .postings
                    .entry(l.name.clone())
                    .or_insert_with(|| NamePostings {
                        name: l.name.clone(),
                        values: FxHashMap::default(),
                    }),
            };
            let value = match np.values.get_key_value(&*l.value) {
                Some((k, _)) => k.clone(),
                None => l.value.clone(),
            };
            np.values.entry(value.clone()).or_default().push(id);
            interned.push(Label {
                name: np.name.clone(),
                value,
            });
        }
        self.labels
            .insert(id, Labels::from_sorted_unchecked(interned));
        match self.by_fp.entry(fp) {
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(id);
            }
            std::collections::hash_map::Entry::Occupied(_) => {
                self.fp_collisions.entry(fp).or_default().push(id);
            }
        }
        self.all.push(id);
    }

    /// Removes a batch of series. Batched so each touched postings list is
    /// rewritten once instead of once per removed id.
    pub fn remove(&mut self, ids: &[u64]) {
        if ids.is_empty() {
            return;
        }
        let dead: FxHashSet<u64> = ids.iter().copied().collect();
        let mut touched: FxHashSet<(Arc<str>, Arc<str>)> = FxHashSet::default();
        for id in ids {
            let Some(labels) = self.labels.remove(id) else {
                continue;
            };
            let fp = labels.fingerprint();
            if self.by_fp.get(&fp) == Some(id) {
                self.by_fp.remove(&fp);
                if let Some(col) = self.fp_collisions.get_mut(&fp) {
                    if let Some(promoted) = col.pop() {
                        self.by_fp.insert(fp, promoted);
                    }
                    if col.is_empty() {
                        self.fp_collisions.remove(&fp);
                    }
                }
            } else if let Some(col) = self.fp_collisions.get_mut(&fp) {
                col.retain(|x| x != id);
                if col.is_empty() {
                    self.fp_collisions.remove(&fp);
                }
            }
            for l in labels.iter() {
                touched.insert((l.name.clone(), l.value.clone()));
            }
        }
        for (name, value) in touched {
            let Some(np) = self.postings.get_mut(&*name) else {
                continue;
            };
            if let Some(list) = np.values.get_mut(&*value) {
                list.retain(|x| !dead.contains(x));
                if list.is_empty() {
                    np.values.remove(&*value);
                } else if list.capacity() > 2 * list.len() + 4 {
                    list.shrink_to_fit();
                }
            }
            if np.values.is_empty() {
                self.postings.remove(&*name);
            }
        }
        self.all.retain(|x| !dead.contains(x));
        if self.all.capacity() > 2 * self.all.len() + 64 {
            self.all.shrink_to_fit();
        }
    }

    pub fn label_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.postings.keys().map(|k| k.to_string()).collect();
        v.sort_unstable();
        v
    }

    pub fn label_values(&self, name: &str) -> Vec<String> {
        let mut v: Vec<String> = match self.postings.get(name) {
            Some(np) => np.values.keys().map(|k| k.to_string()).collect(),
            None => Vec::new(),
        };
        v.sort_unstable();
        v
    }

    /// Rough heap estimate; maps are costed at their capacity.
    pub fn memory_bytes(&self) -> usize {
        use std::mem::size_of;
        let mut b = self.labels.capacity() * (size_of::<(u64, Labels)>() + 1)
            + self.by_fp.capacity() * (size_of::<(u64, u64)>() + 1)
            + self.all.capacity() * 8
            + self.postings.capacity() * (size_of::<(Arc<str>, NamePostings)>() + 1);
        for l in self.labels.values() {
            b += l.heap_bytes();
        }
        for np in self.postings.values() {
            b += np.name.len() + 16;
            b += np.values.capacity() * (size_of::<(Arc<str>, Vec<u64>)>() + 1);
            for (v, list) in &np.values {
                b += v.len() + 16 + list.capacity() * 8;
            }
        }
        b
    }

    /// Sorted ids of series matching all matchers.
    ///
    /// Each matcher is turned into a set of ids. A matcher that does not
    /// match "" selects the union of the postings of the values it matches
    /// ("positive"); one that matches "" selects everything except the
    /// postings of values it rejects ("negative"). Positives are intersected
    /// smallest first; once the candidate set is much smaller than a
    /// matcher's postings it is cheaper to test candidates' labels directly.
    pub fn select_ids(&self, matchers: &[Matcher]) -> Vec<u64> {
        struct Set<'a> {
            lists: Vec<&'a [u64]>,
            total: usize,
        }
        let mut positives: Vec<(Set<'_>, &Matcher)> = Vec::new();
        let mut negatives: Vec<(Set<'_>, &Matcher)> = Vec::new();
        let mut deferred: Vec<&Matcher> = Vec::new();

        for m in matchers {
            let matches_empty = m.matches("");
            let np = self.postings.get(m.name.as_str());
            let mut lists: Vec<&[u64]> = Vec::new();
            // For positives we collect values the matcher accepts; for
            // negatives the values it rejects.
            let want = !matches_empty;
            match (m.literal_set(), np) {
                (_, None) => {}
                (Some(lits), Some(np)) if m.is_positive_op() == want => {
                    // The literal set is exactly the wanted value set.
                    lits.for_each(|v| {
                        if let Some(l) = np.values.get(v) {
                            lists.push(l);
                        }
                    });
                }
                (_, Some(np)) => {
                    for (v, l) in &np.values {
                        if m.matches(v) == want {
                            lists.push(l);
                        }
                    }
                }
            }
            let total = lists.iter().map(|l| l.len()).sum();
            if want {
                if total == 0 {
                    return Vec::new();
                }
                positives.push((Set { lists, total }, m));
            } else if total > 0 {
                negatives.push((Set { lists, total }, m));
            }
        }

        positives.sort_by_key(|(s, _)| s.total);
        let mut cand: Vec<u64> = match positives.first() {
            Some((s, _)) => union(&s.lists),
            None => self.all.clone(),
        };
        for (s, m) in positives.iter().skip(1) {
            if cand.is_empty() {
                return cand;
            }
            if s.lists.len() == 1 {
                intersect_in_place(&mut cand, s.lists[0]);
            } else if cand.len() * 8 < s.total {
                // Re-testing labels is cheaper than merging many lists.
                deferred.push(m);
            } else {
                let u = union(&s.lists);
                intersect_in_place(&mut cand, &u);
            }
        }
        for (s, m) in &negatives {
            if cand.is_empty() {
                return cand;
            }
            if cand.len() * 4 < s.total {
                deferred.push(m);
            } else if s.lists.len() == 1 {
                subtract_in_place(&mut cand, s.lists[0]);
            } else {
                let u = union(&s.lists);
                subtract_in_place(&mut cand, &u);
            }
        }
        if !deferred.is_empty() {
            cand.retain(|id| match self.labels.get(id) {
                Some(ls) => deferred
                    .iter()
                    .all(|m| m.matches(ls.get(&m.name).unwrap_or(""))),
                None => false,
            });
        }
        cand
    }
}

fn union(lists: &[&[u64]]) -> Vec<u64> {
    match lists {
        [] => Vec::new(),
        [one] => one.to_vec(),
        _ => {
            let mut v: Vec<u64> = Vec::with_capacity(lists.iter().map(|l| l.len()).sum());
            for l in lists {
                v.extend_from_slice(l);
            }
            v.sort_unstable();
            v.dedup();
            v
        }
    }
}

/// Keeps elements of `a` present in sorted `b`. Gallops via binary search
/// when `b` is much longer, so `{__name__="x", job="a"}` costs O(small).
fn intersect_in_place(a: &mut Vec<u64>, b: &[u64]) {
    if b.len() > 16 * a.len() {
        a.retain(|x| b.binary_search(x).is_ok());
        return;
    }
    let mut j = 0;
    a.retain(|x| {
        while j < b.len() && b[j] < *x {
            j += 1;
        }
        j < b.len() && b[j] == *x
    });
}

fn subtract_in_place(a: &mut Vec<u64>, b: &[u64]) {
    if b.len() > 16 * a.len() {
        a.retain(|x| b.binary_search(x).is_err());
        return;
    }
    let mut j = 0;
    a.retain(|x| {
        while j < b.len() && b[j] < *x {
            j += 1;
        }
        !(j < b.len() && b[j] == *x)
    });
}
