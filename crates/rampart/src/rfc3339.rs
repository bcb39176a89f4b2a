//! Instants as fixed-width RFC 3339 text in UTC with microseconds, `2026-12-05T06:09:38.476083Z`:
//! the form of every log line's timestamp and of every time the server stores and returns.
//!
//! Written digit by digit: through `fmt`'s padded integers, one such time cost more than the
//! rest of a log line, and an item in a response carries two.

use time::{OffsetDateTime, UtcOffset};

/// The length of [`utc_micros`]'s text.
pub const UTC_MICROS_LEN: usize = 27;

/// `at` (converted to UTC) as `YYYY-MM-DDTHH:MM:SS.ffffffZ`, or `None` for a year outside
/// 0..=9999, which four digits cannot hold.
pub fn utc_micros(at: OffsetDateTime) -> Option<[u8; UTC_MICROS_LEN]> {
    let at = at.to_offset(UtcOffset::UTC);
    let year = u32::try_from(at.year()).ok().filter(|year| *year <= 9999)?;
    let (hour, minute, second, micros) = at.to_hms_micro();
    let parts: [(u32, usize, u8); 7] = [
        (year, 4, b'-'),
        (u32::from(u8::from(at.month())), 2, b'-'),
        (u32::from(at.day()), 2, b'T'),
        (u32::from(hour), 2, b':'),
        (u32::from(minute), 2, b':'),
        (u32::from(second), 2, b'.'),
        (micros, 6, b'Z'),
    ];
    let mut text = [0u8; UTC_MICROS_LEN];
    let mut at = 0;
    for (value, width, then) in parts {
        let mut rest = value;
        for slot in text[at..at + width].iter_mut().rev() {
            // A digit: always below 10.
            *slot = b'0' + u8::try_from(rest % 10).unwrap_or(0);
            rest /= 10;
        }
        text[at + width] = then;
        at += width + 1;
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::format_description::well_known::Rfc3339;

    #[test]
    fn writes_what_the_calendar_says_in_utc() {
        let cases = [
            (
                "2026-12-05T07:09:38.476083123+01:00",
                "2026-12-05T06:09:38.476083Z",
            ),
            ("0000-01-01T00:00:00Z", "0000-01-01T00:00:00.000000Z"),
            ("9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59.999999Z"),
            (
                "2024-02-29T00:00:00.000001-00:30",
                "2024-02-29T00:30:00.000001Z",
            ),
        ];
        for (input, expected) in cases {
            let at = OffsetDateTime::parse(input, &Rfc3339).unwrap_or_else(|e| panic!("{e}"));
            let text = utc_micros(at).map(|t| String::from_utf8_lossy(&t).into_owned());
            assert_eq!(text.as_deref(), Some(expected), "{input}");
        }
    }

    #[test]
    fn a_year_four_digits_cannot_hold_is_refused() {
        let before_zero = OffsetDateTime::UNIX_EPOCH.replace_year(-1).ok();
        assert_eq!(before_zero.map(utc_micros), Some(None));
    }
}
