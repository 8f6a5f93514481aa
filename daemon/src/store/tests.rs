//! Store-level tests: behaviour through the public API only. Must not reach
//! into chunk or index internals (those have their own tests).

use std::sync::Arc;

use super::*;

fn ls(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

fn eq(n: &str, v: &str) -> Matcher {
    Matcher::new(MatchOp::Equal, n, v).unwrap()
}
fn ne(n: &str, v: &str) -> Matcher {
    Matcher::new(MatchOp::NotEqual, n, v).unwrap()
}
fn re(n: &str, v: &str) -> Matcher {
    Matcher::new(MatchOp::RegexMatch, n, v).unwrap()
}
fn nre(n: &str, v: &str) -> Matcher {
    Matcher::new(MatchOp::RegexNoMatch, n, v).unwrap()
}

/// Three series: up{job=a,instance=1}, up{job=b}, other{job=a,env=prod}
fn fixture() -> Store {
    let s = Store::default();
    for (i, l) in [
        ls(&[("__name__", "up"), ("job", "a"), ("instance", "1")]),
        ls(&[("__name__", "up"), ("job", "b")]),
        ls(&[("__name__", "other"), ("job", "a"), ("env", "prod")]),
    ]
    .iter()
    .enumerate()
    {
        let r = s.get_or_create(l).unwrap();
        s.append(r, 1000, i as f64).unwrap();
    }
    s
}

fn names(res: &[SeriesSamples]) -> Vec<String> {
    res.iter().map(|s| s.labels.to_string()).collect()
}

#[test]
fn store_is_send_sync() {
    fn check<T: Send + Sync>() {}
    check::<Store>();
    check::<Arc<Store>>();
}

#[test]
fn get_or_create_is_idempotent() {
    let s = Store::default();
    let a = s
        .get_or_create(&ls(&[("__name__", "x"), ("a", "1")]))
        .unwrap();
    let b = s
        .get_or_create(&ls(&[("a", "1"), ("__name__", "x"), ("empty", "")]))
        .unwrap();
    assert_eq!(a, b);
    let c = s
        .get_or_create(&ls(&[("__name__", "x"), ("a", "2")]))
        .unwrap();
    assert_ne!(a, c);
    assert_eq!(s.stats().num_series, 2);
    assert_eq!(s.get(&ls(&[("__name__", "x"), ("a", "2")])), Some(c));
}

#[test]
fn append_select_roundtrip() {
    let s = Store::default();
    let r = s.get_or_create(&ls(&[("__name__", "m")])).unwrap();
    let want: Vec<(i64, f64)> = (0..1000)
        .map(|i| (i * 15_000 + (i % 5), i as f64 * 0.5))
        .collect();
    for &(t, v) in &want {
        s.append(r, t, v).unwrap();
    }
    let got = s.select(&[eq("__name__", "m")], i64::MIN, i64::MAX);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].samples, want);
    assert_eq!(s.stats().samples_appended_total, 1000);
}

#[test]
fn select_range_is_inclusive_across_chunks() {
    let s = Store::default();
    let r = s.get_or_create(&ls(&[("__name__", "m")])).unwrap();
    // 500 samples at 1s => 5 chunks of 120 (last partial)
    for i in 0..500i64 {
        s.append(r, i * 1000, i as f64).unwrap();
    }
    assert_eq!(s.stats().chunks, 5);
    for (lo, hi) in [
        (0, 0),
        (119_000, 120_000),
        (119_500, 240_000),
        (5_000, 480_000),
        (499_000, 600_000),
    ] {
        let got = s.select(&[eq("__name__", "m")], lo, hi);
        let want: Vec<(i64, f64)> = (0..500i64)
            .map(|i| (i * 1000, i as f64))
            .filter(|(t, _)| *t >= lo && *t <= hi)
            .collect();
        assert_eq!(got[0].samples, want, "range {lo}..={hi}");
    }
    // a range between samples yields no series at all
    assert!(s.select(&[eq("__name__", "m")], 1001, 1999).is_empty());
    assert!(s
        .select(&[eq("__name__", "m")], 600_000, 700_000)
        .is_empty());
    assert!(s.select(&[eq("__name__", "m")], 10, 5).is_empty());
}

#[test]
fn out_of_order_and_duplicates_are_rejected_and_counted() {
    let s = Store::default();
    let r = s.get_or_create(&ls(&[("__name__", "m")])).unwrap();
    s.append(r, 2000, 1.0).unwrap();
    assert_eq!(s.append(r, 1000, 1.0), Err(AppendError::OutOfOrder));
    assert_eq!(s.append(r, 2000, 1.0), Ok(())); // identical re-delivery
    assert_eq!(s.append(r, 2000, 2.0), Err(AppendError::DuplicateTimestamp));
    s.append(r, 3000, 3.0).unwrap();
    let st = s.stats();
    assert_eq!(st.out_of_order_total, 1);
    assert_eq!(st.duplicate_total, 1);
    assert_eq!(st.samples_appended_total, 2);
    let got = s.select(&[eq("__name__", "m")], 0, 10_000);
    assert_eq!(got[0].samples, vec![(2000, 1.0), (3000, 3.0)]);
}

#[test]
fn out_of_order_enforced_after_chunk_cut() {
    let s = Store::default();
    let r = s.get_or_create(&ls(&[("__name__", "m")])).unwrap();
    for i in 0..120 {
        s.append(r, i, 0.0).unwrap();
    }
    assert_eq!(s.append(r, 119, 1.0), Err(AppendError::DuplicateTimestamp));
    assert_eq!(s.append(r, 50, 1.0), Err(AppendError::OutOfOrder));
}

#[test]
fn stale_nan_roundtrips_bit_exactly() {
    assert!(is_stale_nan(stale_nan()));
    assert!(!is_stale_nan(f64::NAN));
    let s = Store::default();
    let r = s.get_or_create(&ls(&[("__name__", "m")])).unwrap();
    s.append(r, 1, 1.0).unwrap();
    s.append(r, 2, stale_nan()).unwrap();
    s.append(r, 3, f64::NAN).unwrap();
    s.append(r, 4, 2.0).unwrap();
    // NaN == NaN is false, so duplicate detection must compare bits
    assert_eq!(s.append(r, 4, 2.0), Ok(()));
    let got = &s.select(&[], 0, 10)[0].samples;
    assert!(is_stale_nan(got[1].1));
    assert!(got[2].1.is_nan() && !is_stale_nan(got[2].1));
    assert_eq!(got[3], (4, 2.0));
}

#[test]
fn stale_nan_redelivery_is_noop_but_other_nan_is_duplicate() {
    let s = Store::default();
    let r = s.get_or_create(&ls(&[("__name__", "m")])).unwrap();
    s.append(r, 5, stale_nan()).unwrap();
    assert_eq!(s.append(r, 5, stale_nan()), Ok(()));
    assert_eq!(
        s.append(r, 5, f64::NAN),
        Err(AppendError::DuplicateTimestamp)
    );
}

#[test]
fn series_limit() {
    let s = Store::new(StoreConfig {
        max_series: 2,
        ..StoreConfig::default()
    });
    s.get_or_create(&ls(&[("a", "1")])).unwrap();
    s.get_or_create(&ls(&[("a", "2")])).unwrap();
    assert_eq!(
        s.get_or_create(&ls(&[("a", "3")])),
        Err(AppendError::SeriesLimit { limit: 2 })
    );
    // existing series still resolve at the limit
    assert!(s.get_or_create(&ls(&[("a", "1")])).is_ok());
    assert_eq!(s.stats().series_limit_rejections_total, 1);
}

#[test]
fn unknown_series_ref() {
    let a = Store::default();
    let b = Store::default();
    let r = a.get_or_create(&ls(&[("a", "1")])).unwrap();
    b.get_or_create(&ls(&[("z", "1")])).unwrap();
    let _ = r;
    assert_eq!(
        b.append(SeriesRef(999), 1, 1.0),
        Err(AppendError::UnknownSeries)
    );
}

#[test]
fn matcher_equal_and_name() {
    let s = fixture();
    let r = s.select(&[eq("__name__", "up")], 0, 2000);
    assert_eq!(
        names(&r),
        vec![r#"up{instance="1", job="a"}"#, r#"up{job="b"}"#]
    );
    let r = s.select(&[eq("__name__", "up"), eq("job", "a")], 0, 2000);
    assert_eq!(r.len(), 1);
    assert!(s.select(&[eq("__name__", "nope")], 0, 2000).is_empty());
    assert!(s
        .select(&[eq("__name__", "up"), eq("job", "zzz")], 0, 2000)
        .is_empty());
}

#[test]
fn missing_label_matches_empty() {
    let s = fixture();
    // instance="" : series without instance
    let r = s.select(&[eq("__name__", "up"), eq("instance", "")], 0, 2000);
    assert_eq!(names(&r), vec![r#"up{job="b"}"#]);
    // instance!="" : series with instance
    let r = s.select(&[ne("instance", "")], 0, 2000);
    assert_eq!(names(&r), vec![r#"up{instance="1", job="a"}"#]);
    // env!="prod" includes series without env
    let r = s.select(&[ne("env", "prod")], 0, 2000);
    assert_eq!(r.len(), 2);
    // nonexistent label name with = "" matches everything
    assert_eq!(s.select(&[eq("nolabel", "")], 0, 2000).len(), 3);
    assert!(s.select(&[ne("nolabel", "")], 0, 2000).is_empty());
}

#[test]
fn regex_matchers() {
    let s = fixture();
    assert_eq!(s.select(&[re("__name__", ".*")], 0, 2000).len(), 3);
    assert_eq!(s.select(&[re("env", ".*")], 0, 2000).len(), 3); // incl. missing
    assert_eq!(s.select(&[re("env", ".+")], 0, 2000).len(), 1);
    assert_eq!(s.select(&[re("__name__", "u")], 0, 2000).len(), 0); // anchored
    assert_eq!(s.select(&[re("__name__", "u.")], 0, 2000).len(), 2);
    assert_eq!(s.select(&[re("job", "a|b")], 0, 2000).len(), 3);
    assert_eq!(s.select(&[re("job", "b|c")], 0, 2000).len(), 1);
    assert_eq!(s.select(&[nre("job", "a")], 0, 2000).len(), 1);
    assert_eq!(s.select(&[nre("env", "p.*")], 0, 2000).len(), 2);
    assert_eq!(s.select(&[re("instance", "|1")], 0, 2000).len(), 3);
    assert_eq!(
        s.select(&[eq("job", "a"), nre("__name__", "up")], 0, 2000)
            .len(),
        1
    );
}

#[test]
fn select_output_sorted_by_labels() {
    let s = Store::default();
    for v in ["c", "a", "b", "aa"] {
        let r = s
            .get_or_create(&ls(&[("__name__", "m"), ("x", v)]))
            .unwrap();
        s.append(r, 1, 1.0).unwrap();
    }
    let r = s.select(&[eq("__name__", "m")], 0, 1);
    let xs: Vec<_> = r
        .iter()
        .map(|s| s.labels.get("x").unwrap().to_string())
        .collect();
    assert_eq!(xs, vec!["a", "aa", "b", "c"]);
}

#[test]
fn series_api_respects_time() {
    let s = fixture();
    assert_eq!(s.series(&[re("__name__", ".+")], 0, 2000).len(), 3);
    assert!(s.series(&[re("__name__", ".+")], 2000, 3000).is_empty());
}

#[test]
fn label_names_and_values() {
    let s = fixture();
    assert_eq!(
        s.label_names(&[]),
        vec!["__name__", "env", "instance", "job"]
    );
    assert_eq!(
        s.label_names(&[eq("__name__", "up")]),
        vec!["__name__", "instance", "job"]
    );
    assert_eq!(s.label_values("job", &[]), vec!["a", "b"]);
    assert_eq!(
        s.label_values("__name__", &[eq("job", "a")]),
        vec!["other", "up"]
    );
    assert!(s.label_values("nope", &[]).is_empty());
}

#[test]
fn labels_are_interned() {
    let s = Store::default();
    let a = s
        .get_or_create(&ls(&[("job", "shared-value"), ("i", "1")]))
        .unwrap();
    let b = s
        .get_or_create(&ls(&[("job", "shared-value"), ("i", "2")]))
        .unwrap();
    s.append(a, 1, 1.0).unwrap();
    s.append(b, 1, 1.0).unwrap();
    let r = s.select(&[eq("job", "shared-value")], 0, 1);
    let va = &r[0].labels.as_slice()[1].value;
    let vb = &r[1].labels.as_slice()[1].value;
    assert!(Arc::ptr_eq(va, vb));
}

#[test]
fn retention_drops_chunks_then_series_and_index() {
    let s = Store::default();
    let old = s
        .get_or_create(&ls(&[("__name__", "m"), ("k", "old")]))
        .unwrap();
    let live = s
        .get_or_create(&ls(&[("__name__", "m"), ("k", "live")]))
        .unwrap();
    for i in 0..360i64 {
        s.append(old, i * 1000, 1.0).unwrap(); // 3 chunks, ends at 359s
        s.append(live, i * 1000, 1.0).unwrap();
    }
    for i in 360..480i64 {
        s.append(live, i * 1000, 1.0).unwrap();
    }
    // cut at 200s: drops chunk [0,119] of both; nothing else
    let st = s.truncate_before(200_000);
    assert_eq!(
        (st.chunks_removed, st.samples_removed, st.series_removed),
        (2, 240, 0)
    );
    let got = s.select(&[eq("k", "old")], 0, i64::MAX);
    assert_eq!(got[0].samples.first().unwrap().0, 120_000);
    // cut at 400s: old is gone entirely, live keeps its last chunk
    let st = s.truncate_before(400_000);
    assert_eq!(st.series_removed, 1);
    assert_eq!(s.stats().num_series, 1);
    assert_eq!(s.label_values("k", &[]), vec!["live"]);
    assert!(s.select(&[eq("k", "old")], 0, i64::MAX).is_empty());
    assert_eq!(s.append(old, 500_000, 1.0), Err(AppendError::UnknownSeries));
    // recreating gives a fresh ref
    let again = s
        .get_or_create(&ls(&[("__name__", "m"), ("k", "old")]))
        .unwrap();
    assert_ne!(again, old);
    s.append(again, 1, 1.0).unwrap(); // new series: no order history
}

#[test]
fn retention_frees_series_limit() {
    let s = Store::new(StoreConfig {
        max_series: 1,
        ..StoreConfig::default()
    });
    let a = s.get_or_create(&ls(&[("a", "1")])).unwrap();
    s.append(a, 10, 1.0).unwrap();
    assert!(s.get_or_create(&ls(&[("a", "2")])).is_err());
    s.truncate_before(100);
    assert!(s.get_or_create(&ls(&[("a", "2")])).is_ok());
}

#[test]
fn never_appended_series_survive_one_truncation() {
    let s = Store::default();
    let r = s.get_or_create(&ls(&[("a", "1")])).unwrap();
    assert_eq!(s.truncate_before(1000).series_removed, 0);
    assert_eq!(s.truncate_before(1000).series_removed, 1);
    assert_eq!(s.append(r, 1, 1.0), Err(AppendError::UnknownSeries));
}

#[test]
fn retention_keeps_series_index_consistent_for_shared_postings() {
    let s = Store::default();
    let mut refs = Vec::new();
    for i in 0..100 {
        let r = s
            .get_or_create(&ls(&[("__name__", "m"), ("i", &i.to_string())]))
            .unwrap();
        s.append(r, if i % 2 == 0 { 10 } else { 10_000 }, 1.0)
            .unwrap();
        refs.push(r);
    }
    assert_eq!(s.truncate_before(5000).series_removed, 50);
    let r = s.select(&[eq("__name__", "m")], 0, i64::MAX);
    assert_eq!(r.len(), 50);
    assert_eq!(s.select(&[ne("i", "1")], 0, i64::MAX).len(), 49);
    assert_eq!(s.label_values("i", &[]).len(), 50);
}

#[test]
fn stats_memory_estimate_is_plausible() {
    let s = Store::default();
    for i in 0..1000 {
        let r = s
            .get_or_create(&ls(&[("__name__", "m"), ("i", &i.to_string())]))
            .unwrap();
        for t in 0..240 {
            s.append(r, t * 5000, (t * 3) as f64).unwrap();
        }
    }
    let st = s.stats();
    assert_eq!(st.samples_stored, 240_000);
    assert_eq!(st.chunks, 2000);
    assert!(st.memory_bytes > st.chunk_bytes);
    assert!(st.chunk_bytes < 240_000 * 2, "{}", st.chunk_bytes);
}

#[test]
fn concurrent_appends_and_queries() {
    let s = Arc::new(Store::default());
    let threads: Vec<_> = (0..8)
        .map(|w| {
            let s = Arc::clone(&s);
            std::thread::spawn(move || {
                for i in 0..200 {
                    let l = ls(&[
                        ("__name__", "m"),
                        ("w", &w.to_string()),
                        ("i", &i.to_string()),
                    ]);
                    let r = s.get_or_create(&l).unwrap();
                    for t in 0..50 {
                        s.append(r, t, t as f64).unwrap();
                    }
                    // also race creation of a series shared by all workers
                    let shared = s.get_or_create(&ls(&[("__name__", "shared")])).unwrap();
                    let _ = s.append(shared, i, 0.0);
                    if i % 50 == 0 {
                        let _ = s.select(&[eq("w", &w.to_string())], 0, 100);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let st = s.stats();
    assert_eq!(st.num_series, 1601);
    let r = s.select(&[eq("__name__", "m")], 0, 100);
    assert_eq!(r.len(), 1600);
    assert!(r.iter().all(|x| x.samples.len() == 50));
    assert_eq!(s.select(&[eq("__name__", "shared")], 0, 1000).len(), 1);
}

#[test]
fn error_display() {
    assert_eq!(
        AppendError::SeriesLimit { limit: 5 }.to_string(),
        "series limit of 5 reached"
    );
    let e: StoreError = AppendError::OutOfOrder.into();
    assert!(std::error::Error::source(&e).is_some());
}
