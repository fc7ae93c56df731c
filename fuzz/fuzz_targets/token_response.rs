//! A token-endpoint success body (RFC 6749 §5.1): parse_token_response,
//! salvage_refresh_token and classify for 2xx.
//! The checks live in `freshtoken::fuzzing::check_token_response`, shared with
//! the corpus replay test (tests/fuzz_corpus.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| freshtoken::fuzzing::check_token_response(data));
