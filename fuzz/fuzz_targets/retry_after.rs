//! A Retry-After value: delta seconds or any of the three HTTP-date forms.
//! The checks live in `freshtoken::fuzzing::check_retry_after`, shared with
//! the corpus replay test (tests/fuzz_corpus.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| freshtoken::fuzzing::check_retry_after(data));
