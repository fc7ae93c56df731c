//! Replays every committed fuzz seed (`fuzz/corpus/<target>/`) through the
//! same checks the fuzz targets run, on the stable toolchain:
//! `cargo test --features fuzzing --test fuzz_corpus`.
#![cfg(feature = "fuzzing")]

use freshtoken::fuzzing;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(
        files.len() >= 10,
        "{}: only {} seeds",
        dir.display(),
        files.len()
    );
    let failed: Vec<String> = files
        .iter()
        .filter_map(|path| {
            let data = std::fs::read(path).unwrap();
            catch_unwind(AssertUnwindSafe(|| check(&data)))
                .err()
                .map(|_| path.file_name().unwrap().to_string_lossy().into_owned())
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{target}: {} of {} seeds fail their checks: {failed:?}",
        failed.len(),
        files.len()
    );
}

#[test]
fn token_response_seeds() {
    replay("token_response", fuzzing::check_token_response);
}

#[test]
fn error_response_seeds() {
    replay("error_response", fuzzing::check_error_response);
}

#[test]
fn record_seeds() {
    replay("record", fuzzing::check_record);
}

#[test]
fn retry_after_seeds() {
    replay("retry_after", fuzzing::check_retry_after);
}
