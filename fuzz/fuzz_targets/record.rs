//! A stored record: Record::decode; a decoded record re-encodes and
//! decodes equal.
//! The checks live in `freshtoken::fuzzing::check_record`, shared with
//! the corpus replay test (tests/fuzz_corpus.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| freshtoken::fuzzing::check_record(data));
