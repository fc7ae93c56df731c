//! The wasm half of `Retry-After` dates: the host's `RegExp` and `Date` read
//! them, as the native build's `httpdate` does: RFC 9110 §5.6.7's three
//! forms only, and only a date that exists with the weekday it names.
//! `Date.parse` alone reads far more (`2099-01-01`, `Dec 2099`), rolls an
//! impossible date over (31 Feb) and ignores the weekday: the two builds
//! would then wait differently for one answer.

use js_sys::{Date, RegExp};
use wasm_bindgen::JsValue;

thread_local! {
    /// IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), rfc850-date
    /// (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime-date
    /// (`Sun Nov  6 08:49:37 1994`), compiled once. (Written out whole:
    /// building them with `format!` cost wasm bytes.)
    static FORMS: [RegExp; 3] = [
        RegExp::new(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\d\d) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) (\d{4}) (\d\d:\d\d:\d\d) GMT$", ""),
        RegExp::new(r"^(Mon|Tues|Wednes|Thurs|Fri|Satur|Sun)day, (\d\d)-(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)-(\d\d) (\d\d:\d\d:\d\d) GMT$", ""),
        RegExp::new(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) ([ \d]\d) (\d\d:\d\d:\d\d) (\d{4})$", ""),
    ];
}

/// `value` as an IMF-fixdate, from whichever form it has; `None` if none.
fn as_imf_fixdate(value: &str) -> Option<String> {
    FORMS.with(|forms| {
        let (form, parts) = forms
            .iter()
            .enumerate()
            .find_map(|(i, form)| Some((i, form.exec(value)?)))?;
        let part = |i: u32| parts.get(i).as_string().unwrap_or_default();
        let weekday = part(1);
        let weekday = &weekday[..3];
        let (day, month, year, time) = match form {
            0 => (part(2), part(3), part(4), part(5)),
            1 => {
                // Two digits: httpdate's reading, 70–99 in the 1900s.
                // The pattern's `\d\d` is two ASCII digits, which compare
                // as text as they do as numbers: no number is parsed.
                let yy = part(4);
                let century = if yy.as_str() < "70" { "20" } else { "19" };
                (part(2), part(3), century.to_owned() + &yy, part(5))
            }
            _ => (part(3).replace(" ", "0"), part(2), part(5), part(4)),
        };
        Some(format!("{weekday}, {day} {month} {year} {time} GMT"))
    })
}

/// An HTTP-date in ms since the Unix epoch; `None` for text of none of the
/// three forms, a date that does not exist (`Date` would roll it over: it
/// then prints otherwise) or another weekday's, and a date before 1970.
pub(crate) fn http_date_ms(value: &str) -> Option<u64> {
    let imf = as_imf_fixdate(value)?;
    let ms = Date::parse(&imf);
    if ms.is_nan() || ms < 0.0 {
        return None;
    }
    let printed = Date::new(&JsValue::from_f64(ms)).to_utc_string();
    // `as` saturates (a date is below 2^53 ms anyway).
    (printed == imf.as_str()).then_some(ms as u64)
}
