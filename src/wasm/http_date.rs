//! The wasm half of `Retry-After` dates: the host's `Date` reads them.

/// An HTTP-date in ms since the Unix epoch through `Date.parse` (which
/// never throws: text it cannot read is `NaN`, which is `None`, as is a
/// date before 1970). The asctime form has no zone; RFC 9110 means UTC.
pub(crate) fn http_date_ms(value: &str) -> Option<u64> {
    let ms = if value.ends_with("GMT") {
        js_sys::Date::parse(value)
    } else {
        js_sys::Date::parse(&(value.to_owned() + " GMT"))
    };
    // `as` saturates; NaN and negative times fail the test first.
    (ms >= 0.0).then_some(ms as u64)
}
