//! Generates the Kotlin, Swift and Python bindings from the built library:
//! `cargo run --features uniffi-cli --bin uniffi-bindgen -- generate --library <lib> --language <l> --out-dir <dir> --no-format`.

fn main() {
    uniffi::uniffi_bindgen_main()
}
