#![no_main]
//! Feeds arbitrary bytes through both grammars, walking every entry and
//! every label, so any panic or out-of-bounds slice in the parser shows up.

use libfuzzer_sys::fuzz_target;

// Included by path, not as a dependency on the homeostat crate, so the fuzz
// build compiles one file instead of the whole daemon with sanitizers.
#[allow(dead_code)]
#[path = "../../daemon/src/collect/exposition.rs"]
mod exposition;

use exposition::{Entry, Format, Parser};

fuzz_target!(|data: &[u8]| {
    for format in [Format::Text, Format::OpenMetrics] {
        let mut errors = 0;
        for entry in Parser::new(data, format) {
            match entry {
                Ok(Entry::Sample(s)) => {
                    // Validation in next_entry must make lazy decoding infallible.
                    for label in s.labels() {
                        let (name, value) = label.expect("labels() failed on a validated sample");
                        assert!(!name.is_empty());
                        std::hint::black_box(value);
                    }
                    assert!(!s.series.is_empty());
                    assert!(s.series.starts_with(s.name.as_bytes()));
                }
                Ok(_) => {}
                Err(e) => {
                    errors += 1;
                    std::hint::black_box(e.to_string());
                }
            }
        }
        // The parser stops at the first error.
        assert!(errors <= 1);
    }
});
