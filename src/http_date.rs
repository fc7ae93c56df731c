//! HTTP-date parsing (RFC 9110 §5.6.7) for `Retry-After`.
//!
//! Hand-written on purpose: the three date formats fit in a few lines, and
//! the `httpdate` crate (with `SystemTime` formatting it pulls in) cost
//! several kilobytes of wasm for this one use.

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Seconds since the Unix epoch of an HTTP-date in any of its three forms:
/// IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), RFC 850
/// (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime (`Sun Nov  6 08:49:37 1994`).
pub fn parse_http_date(value: &str) -> Option<u64> {
    let fields: Vec<&str> = value.split_ascii_whitespace().collect();
    let (day, month, year, time) = match fields.as_slice() {
        [_, day, month, year, time, "GMT"] => (*day, *month, four_digits(year)?, *time),
        [_, date, time, "GMT"] => {
            let mut parts = date.split('-');
            let (day, month, yy) = (parts.next()?, parts.next()?, parts.next()?);
            if parts.next().is_some() || yy.len() != 2 {
                return None;
            }
            let yy = number(yy, 0, 99)?;
            (
                day,
                month,
                if yy < 70 { 2000 + yy } else { 1900 + yy },
                *time,
            )
        }
        [_, month, day, time, year] => (*day, *month, four_digits(year)?, *time),
        _ => return None,
    };
    let day: u64 = number(day, 1, 31)?;
    let month = MONTHS.iter().position(|m| *m == month)? as u64 + 1;
    let mut hms = time.split(':');
    let hour = number(hms.next()?, 0, 23)?;
    let minute = number(hms.next()?, 0, 59)?;
    let second = number(hms.next()?, 0, 60)?;
    if hms.next().is_some() || !(1970..=9999).contains(&year) || day > days_in_month(year, month) {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// RFC 9110's `year = 4DIGIT` (`str::parse` alone would also take `+994`).
fn four_digits(text: &str) -> Option<u64> {
    if text.len() != 4 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn number(text: &str, min: u64, max: u64) -> Option<u64> {
    if text.is_empty() || text.len() > 2 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = text.parse().ok()?;
    (min..=max).contains(&n).then_some(n)
}

fn days_in_month(year: u64, month: u64) -> u64 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (years ≥ 1970).
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_forms_of_rfc_9110() {
        let expected = Some(784_111_777);
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), expected);
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), expected);
        assert_eq!(parse_http_date("Sun Nov  6 08:49:37 1994"), expected);
    }

    #[test]
    fn known_dates() {
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse_http_date("Tue, 29 Feb 2000 12:00:00 GMT"),
            Some(951_825_600)
        );
        assert_eq!(
            parse_http_date("Thu, 26 Nov 2026 06:51:47 GMT"),
            Some(1_795_675_907)
        );
        assert_eq!(
            parse_http_date("Fri, 31 Dec 9999 23:59:59 GMT"),
            Some(253_402_300_799)
        );
    }

    #[test]
    fn malformed_dates_are_none() {
        for bad in [
            "",
            "soon",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "Sun, 29 Feb 2001 08:49:37 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1994 08:49 GMT",
            "Sun, 06 Nov 1969 08:49:37 GMT",
            "Sun, 06 Nov 99999 08:49:37 GMT",
            "Sun, +6 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-1994 08:49:37 GMT",
            "Sun, 06 Nov +1994 08:49:37 GMT",
            "Sun Nov  6 08:49:37 +1994",
            "Sun, 06 Nov 01994 08:49:37 GMT",
            "Sunday, 06-Nov-+4 08:49:37 GMT",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad:?}");
        }
    }
}
