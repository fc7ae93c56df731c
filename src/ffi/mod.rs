//! The uniffi export (Kotlin, Swift, Python): thin conversions onto the
//! core. Empty until the bindings issue lands.
