//! Stored times as a type, not as text a caller must know how to compare.
//!
//! Defends against decisions made on the wrong order: refresh tokens, sessions and the
//! revocation poll all ask "is this before that", and comparing RFC 3339 strings is right only
//! while every string has the same offset and precision. Here every time is a UTC instant with
//! microseconds, compared as an instant in Rust, and written in one fixed-width form (UTC,
//! `Z`, six fractional digits) whose text order is its time order, which is what the `WHERE
//! expires_at > $1` comparisons inside the database rely on. Both schemas keep TEXT columns
//! (PostgreSQL's `timestamptz` would order correctly too, but SQLite has no such type and the
//! statements are shared), so the type encodes and decodes through sqlx as that text.

use std::fmt;

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// A UTC instant to the microsecond, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

impl Timestamp {
    pub fn now() -> Self {
        Self::from(OffsetDateTime::now_utc())
    }

    pub fn instant(self) -> OffsetDateTime {
        self.0
    }

    /// How long ago this was at `now`; zero when it is in the future, so callers that use it to
    /// decide how long to keep remembering something keep it longest.
    pub fn age(self, now: OffsetDateTime) -> std::time::Duration {
        std::time::Duration::try_from(now - self.0).unwrap_or_default()
    }

    /// How long from this until `end`; zero when `end` is not later.
    pub fn until(self, end: Self) -> std::time::Duration {
        std::time::Duration::try_from(end.0 - self.0).unwrap_or_default()
    }

    /// Parses a stored or transmitted time (any RFC 3339 offset, converted to UTC).
    pub fn parse(text: &str) -> Result<Self, time::error::Parse> {
        if let Some(stored) = Self::parse_stored(text) {
            return Ok(stored);
        }
        OffsetDateTime::parse(text, &Rfc3339).map(Self::from)
    }

    /// The stored form read by position, or `None` for anything else (another offset or
    /// precision, a leap second, a date the calendar lacks), which the general parser then
    /// reads or refuses. Every read row holds two or three times, and the general parser cost
    /// more than the row's other columns together.
    fn parse_stored(text: &str) -> Option<Self> {
        let bytes: &[u8; rampart::rfc3339::UTC_MICROS_LEN] = text.as_bytes().try_into().ok()?;
        let separators = [
            (4, b'-'),
            (7, b'-'),
            (10, b'T'),
            (13, b':'),
            (16, b':'),
            (19, b'.'),
        ];
        if bytes[26] != b'Z' || separators.iter().any(|&(at, sep)| bytes[at] != sep) {
            return None;
        }
        let number = |from: usize, to: usize| {
            bytes[from..to].iter().try_fold(0u32, |value, &b| {
                b.is_ascii_digit().then(|| value * 10 + u32::from(b - b'0'))
            })
        };
        let narrow = |from, to| number(from, to).and_then(|n| u8::try_from(n).ok());
        let date = time::Date::from_calendar_date(
            i32::try_from(number(0, 4)?).ok()?,
            time::Month::try_from(narrow(5, 7)?).ok()?,
            narrow(8, 10)?,
        )
        .ok()?;
        let clock = time::Time::from_hms_micro(
            narrow(11, 13)?,
            narrow(14, 16)?,
            narrow(17, 19)?,
            number(20, 26)?,
        )
        .ok()?;
        Some(Self(time::PrimitiveDateTime::new(date, clock).assume_utc()))
    }
}

/// Truncated to the microsecond, so a value read back equals the value written.
impl From<OffsetDateTime> for Timestamp {
    fn from(at: OffsetDateTime) -> Self {
        let at = at.to_offset(UtcOffset::UTC);
        let micros = at.nanosecond() / 1000 * 1000;
        Self(at.replace_nanosecond(micros).unwrap_or(at))
    }
}

/// Saturating: a configured lifetime too long for the calendar ends at its end.
impl std::ops::Add<std::time::Duration> for Timestamp {
    type Output = Self;
    fn add(self, span: std::time::Duration) -> Self {
        let span = time::Duration::try_from(span).unwrap_or(time::Duration::MAX);
        Self::from(self.0.saturating_add(span))
    }
}

impl std::ops::Sub<std::time::Duration> for Timestamp {
    type Output = Self;
    fn sub(self, span: std::time::Duration) -> Self {
        let span = time::Duration::try_from(span).unwrap_or(time::Duration::MAX);
        Self::from(self.0.saturating_sub(span))
    }
}

/// The stored form: `2026-12-05T06:09:38.476083Z`.
impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = self.0;
        if let Some(text) = rampart::rfc3339::utc_micros(at) {
            // Digits and separators only.
            return f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?);
        }
        // A year four digits cannot hold (a saturated lifetime's end).
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            at.year(),
            u8::from(at.month()),
            at.day(),
            at.hour(),
            at.minute(),
            at.second(),
            at.microsecond()
        )
    }
}

/// As its text, written straight into the serializer: through `Display` (`collect_str`), the
/// formatter's machinery cost more than the digits.
impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match rampart::rfc3339::utc_micros(self.0) {
            Some(text) => serializer.serialize_str(
                std::str::from_utf8(&text).map_err(|_| serde::ser::Error::custom("not text"))?,
            ),
            None => serializer.collect_str(self),
        }
    }
}

impl<DB: sqlx::Database> sqlx::Type<DB> for Timestamp
where
    String: sqlx::Type<DB>,
{
    fn type_info() -> DB::TypeInfo {
        <String as sqlx::Type<DB>>::type_info()
    }
    fn compatible(ty: &DB::TypeInfo) -> bool {
        <String as sqlx::Type<DB>>::compatible(ty)
    }
}

impl<'q, DB: sqlx::Database> sqlx::Encode<'q, DB> for Timestamp
where
    String: sqlx::Encode<'q, DB>,
{
    fn encode_by_ref(
        &self,
        buf: &mut <DB as sqlx::Database>::ArgumentBuffer<'q>,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <String as sqlx::Encode<'q, DB>>::encode(self.to_string(), buf)
    }
}

impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for Timestamp
where
    &'r str: sqlx::Decode<'r, DB>,
{
    fn decode(
        value: <DB as sqlx::Database>::ValueRef<'r>,
    ) -> Result<Self, sqlx::error::BoxDynError> {
        let text = <&str as sqlx::Decode<'r, DB>>::decode(value)?;
        Ok(Self::parse(text)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_form_round_trips_and_sorts_as_time_does() {
        let at =
            Timestamp::parse("2026-12-05T07:09:38.476083123+01:00").unwrap_or(Timestamp::now());
        assert_eq!(at.to_string(), "2026-12-05T06:09:38.476083Z");
        assert_eq!(Timestamp::parse(&at.to_string()).ok(), Some(at));
        // Text order is time order across a second, a day and a year boundary.
        let times = [
            "2026-12-31T23:59:59.999999Z",
            "2027-01-01T00:00:00.000000Z",
            "2027-01-01T00:00:00.000001Z",
        ];
        let parsed: Vec<Timestamp> = times
            .iter()
            .filter_map(|t| Timestamp::parse(t).ok())
            .collect();
        assert_eq!(parsed.len(), 3);
        assert!(parsed.windows(2).all(|w| w[0] < w[1]));
        let texts: Vec<String> = parsed.iter().map(ToString::to_string).collect();
        assert!(texts.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn the_stored_form_is_read_as_the_general_parser_reads_it() {
        let agree = [
            "2026-12-05T06:09:38.476083Z",
            "0000-01-01T00:00:00.000000Z",
            "9999-12-31T23:59:59.999999Z",
            "2024-02-29T12:00:00.000001Z",
        ];
        for text in agree {
            let general = OffsetDateTime::parse(text, &Rfc3339)
                .map(Timestamp::from)
                .ok();
            assert_eq!(Timestamp::parse_stored(text), general, "{text}");
            assert!(general.is_some(), "{text}");
        }
        // Not the stored form, or not a time: left to the general parser, which reads the
        // first three and refuses the rest.
        let other = [
            "2026-12-05T06:09:38.476083+00:00",
            "2026-12-05T06:09:38Z",
            "2026-12-05t06:09:38.476083z",
            "2023-02-29T12:00:00.000000Z",
            "2026-13-05T06:09:38.476083Z",
            "2026-12-05T24:00:00.000000Z",
            "2026-12-05T06:60:00.000000Z",
            "+026-12-05T06:09:38.476083Z",
            "2026-12-05T06:09:3a.476083Z",
            "2026-12-05 06:09:38.476083Z",
        ];
        for text in other {
            assert_eq!(Timestamp::parse_stored(text), None, "{text}");
        }
        assert!(Timestamp::parse("2026-12-05T06:09:38.476083+00:00").is_ok());
        assert!(Timestamp::parse("2023-02-29T12:00:00.000000Z").is_err());
        assert!(Timestamp::parse("2026-12-05T06:09:3a.476083Z").is_err());
    }

    #[test]
    fn a_saturated_time_is_still_written() {
        let end = Timestamp::now() + std::time::Duration::MAX;
        assert_eq!(end.to_string(), "9999-12-31T23:59:59.999999Z");
        let start = Timestamp::now() - std::time::Duration::MAX;
        assert!(start.to_string().starts_with('-'), "{start}");
    }

    #[test]
    fn json_holds_the_same_text_as_display() {
        let at = Timestamp::parse("2026-12-05T07:09:38.476083+01:00").unwrap_or(Timestamp::now());
        let start = Timestamp::now() - std::time::Duration::MAX;
        for time in [at, start] {
            let json = serde_json::to_string(&time).ok();
            assert_eq!(json, Some(format!("\"{time}\"")));
        }
        assert_eq!(
            serde_json::to_string(&at).ok().as_deref(),
            Some("\"2026-12-05T06:09:38.476083Z\"")
        );
    }

    #[test]
    fn an_offset_is_compared_as_the_instant_it_names() {
        // As text, the first sorts after the second; as times it is an hour before.
        let earlier = Timestamp::parse("2026-12-05T08:30:00+03:00").unwrap_or(Timestamp::now());
        let later = Timestamp::parse("2026-12-05T06:30:00Z").unwrap_or(Timestamp::now());
        assert!(earlier < later);
        assert_eq!(later.age(earlier.instant()), std::time::Duration::ZERO);
        assert_eq!(
            earlier.age(later.instant()),
            std::time::Duration::from_secs(3600)
        );
    }
}
