//! What the bindings' file stores ask the core about the files they hold.

/// Whether `bytes` are one whole JSON object (a damaged UTF-8 byte
/// replaced, not refused): a file store's check, in `recover()`, that a
/// temporary file a killed save left was written in full.
#[uniffi::export]
pub fn is_whole_record_file(bytes: Vec<u8>) -> bool {
    crate::store::is_whole_json_object(&bytes)
}
