//! The wasm half of `Retry-After` dates: the host's `Date` reads them.

use js_sys::RegExp;

/// RFC 9110 §5.6.7's three forms (IMF-fixdate, rfc850-date, asctime-date),
/// as the native build's `httpdate` accepts them. `Date.parse` alone reads
/// far more (`2099-01-01`, `Dec 2099`), where the native build reads
/// nothing: the two builds would then wait differently for one answer.
const HTTP_DATE: &str = concat!(
    r"^(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d % \d{4} # GMT",
    r"|(?:Mon|Tues|Wednes|Thurs|Fri|Satur|Sun)day, \d\d-%-\d\d # GMT",
    r"|(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) % [ \d]\d # \d{4})$",
);

thread_local! {
    /// [`HTTP_DATE`] compiled once, with its month (`%`) and time of day
    /// (`#`) spelled out.
    static FORMS: RegExp = RegExp::new(
        &HTTP_DATE
            .replace('%', "(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)")
            .replace('#', r"\d\d:\d\d:\d\d"),
        "",
    );
}

/// An HTTP-date in ms since the Unix epoch through `Date.parse` (which
/// never throws: text it cannot read is `NaN`, which is `None`, as is a
/// date before 1970); `None` for text of none of the three forms. The
/// asctime form has no zone; RFC 9110 means UTC.
pub(crate) fn http_date_ms(value: &str) -> Option<u64> {
    if !FORMS.with(|forms| forms.test(value)) {
        return None;
    }
    let ms = if value.ends_with("GMT") {
        js_sys::Date::parse(value)
    } else {
        js_sys::Date::parse(&(value.to_owned() + " GMT"))
    };
    // `as` saturates; NaN and negative times fail the test first.
    (ms >= 0.0).then_some(ms as u64)
}
