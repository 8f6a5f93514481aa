//! Memory footprint: counting allocator, 100k series x 720 samples (1h @5s).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use common::*;
use homeostat::store::{Store, StoreConfig};

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

const N: usize = 100_000;
const SAMPLES: i64 = 720;

fn main() {
    let base = live();
    let store = Store::new(StoreConfig::default());
    let refs: Vec<_> = {
        let labels: Vec<_> = (0..N).map(labels_for).collect();
        labels
            .iter()
            .map(|l| store.get_or_create(l).unwrap())
            .collect()
    }; // caller's label copies dropped; only interned strings remain
    let refs_bytes = (refs.capacity() * std::mem::size_of_val(&refs[0])) as isize;
    let after_create = live() - refs_bytes;
    let per_series = (after_create - base) as f64 / N as f64;

    let mut rng = Rng::new(7);
    let mut vals = vec![0.0f64; N];
    let start = 1_700_000_000_000i64;
    let t0 = Instant::now();
    for k in 0..SAMPLES {
        for (i, r) in refs.iter().enumerate() {
            vals[i] = next_value(i, vals[i], &mut rng);
            store
                .append(*r, ts(start, 5000, k, &mut rng), vals[i])
                .unwrap();
        }
    }
    let el = t0.elapsed();
    let total_samples = N as f64 * SAMPLES as f64;
    let after_append = live() - refs_bytes - (vals.capacity() * 8) as isize;
    let st = store.stats();

    println!("series: {N}, samples: {}", total_samples as u64);
    println!(
        "live bytes total (store): {} ({:.1} MiB)",
        after_append - base,
        (after_append - base) as f64 / 1048576.0
    );
    println!("bytes/series overhead (after create, before append): {per_series:.0}");
    println!(
        "chunk bytes/sample (closed exact + head capacity): {:.3}",
        st.chunk_bytes as f64 / total_samples
    );
    println!(
        "all bytes added by appending / sample (chunks + chunk metadata + malloc'd slack): {:.3}",
        (after_append - after_create) as f64 / total_samples
    );
    println!(
        "append: {:.2} M samples/s single thread ({:.2?} total)",
        total_samples / el.as_secs_f64() / 1e6,
        el
    );
    println!(
        "stats.memory_bytes estimate: {} ({:.1} MiB), chunks: {}",
        st.memory_bytes,
        st.memory_bytes as f64 / 1048576.0,
        st.chunks
    );

    // Concurrent appenders on disjoint halves (like scrape tasks per target).
    for threads in [1usize, 2] {
        let more = 60i64;
        let t0 = Instant::now();
        let base_k = SAMPLES + if threads == 1 { 0 } else { more };
        std::thread::scope(|sc| {
            for part in refs.chunks(N / threads) {
                let store = &store;
                sc.spawn(move || {
                    let mut rng = Rng::new(part.len() as u64);
                    for k in base_k..base_k + more {
                        for (i, r) in part.iter().enumerate() {
                            let v = (k * 10 + (i as i64 % 7)) as f64;
                            store.append(*r, ts(start, 5000, k, &mut rng), v).unwrap();
                        }
                    }
                });
            }
        });
        let rate = (N as f64 * more as f64) / t0.elapsed().as_secs_f64() / 1e6;
        println!("append with {threads} thread(s): {rate:.2} M samples/s");
    }

    // Per value model, to show what drives bytes/sample.
    for (kind, jitter) in (0..5usize).flat_map(|k| [(k, true), (k, false)]) {
        let s2 = Store::default();
        let mut rng = Rng::new(kind as u64 + 100);
        let mut vs = vec![0.0f64; 100];
        let refs: Vec<_> = (0..100)
            .map(|i| s2.get_or_create(&labels_for(i)).unwrap())
            .collect();
        for k in 0..SAMPLES {
            for (j, r) in refs.iter().enumerate() {
                vs[j] = next_value(kind, vs[j], &mut rng);
                let t = if jitter {
                    ts(start, 5000, k, &mut rng)
                } else {
                    start + k * 5000
                };
                s2.append(*r, t, vs[j]).unwrap();
            }
        }
        let st = s2.stats();
        let j = if jitter {
            "0-2ms jitter"
        } else {
            "aligned ts  "
        };
        println!(
            "  model {kind} {j}: {:.3} chunk bytes/sample",
            st.chunk_bytes as f64 / (100.0 * SAMPLES as f64)
        );
    }
}
