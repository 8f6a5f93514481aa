//! Training and prediction cost on a week of 1-minute data (10,080 points) with a daily
//! cycle, noise and a weekday/weekend difference: the size the daemon trains on.

use criterion::{criterion_group, criterion_main, Criterion};
use homeostat_ml::{Forecaster, ModelConfig, Series};

fn week_of_minutes() -> Series {
    let mut rng = 42u64;
    let values = (0..7 * 1440)
        .map(|i| {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (rng >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
            let day = (i % 1440) as f64 / 1440.0;
            let weekend = if (i / 1440) % 7 >= 5 { 0.6 } else { 1.0 };
            weekend * (200.0 + 120.0 * (2.0 * std::f64::consts::PI * day).sin()) + 30.0 * u
        })
        .collect();
    Series::new(0, 60_000, values)
}

fn bench(c: &mut Criterion) {
    let series = week_of_minutes();
    let mut g = c.benchmark_group("week_1m");
    g.sample_size(10);
    for horizon in [10usize, 30] {
        let cfg = ModelConfig {
            horizon,
            ..ModelConfig::default()
        };
        g.bench_function(format!("fit_h{horizon}"), |b| {
            b.iter(|| Forecaster::fit(&series, &cfg).expect("fit"))
        });
        let model = Forecaster::fit(&series, &cfg).expect("fit");
        g.bench_function(format!("predict_h{horizon}"), |b| {
            b.iter(|| model.predict(&series).expect("predict"))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
