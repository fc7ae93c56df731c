//! Any answer with any status (a first line `STATUS\n`, then the body):
//! RFC 6749 §5.2 error bodies and classify.
//! The checks live in `freshtoken::fuzzing::check_error_response`, shared with
//! the corpus replay test (tests/fuzz_corpus.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| freshtoken::fuzzing::check_error_response(data));
