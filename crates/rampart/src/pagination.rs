//! Paging through lists without trusting the client: a page size that only parses in range and
//! cursors only the server can make.
//!
//! Defends against unbounded reads (`limit=1000000`, a negative or non-numeric limit reaching
//! SQL) and against cursor tampering: a cursor is its position plus an HMAC-SHA256 tag over
//! the list's *scope* (for example `items:<owner id>`) and that position. A cursor that was
//! edited, made up, or issued for another scope, such as another user's list, is refused with
//! 422 before any query runs. Positions are not secret (they are ids the client already saw),
//! only unforgeable.
//!
//! No crate offers signed, scope-bound page cursors, so this is written here on top of `hmac`.

use axum::extract::FromRequestParts;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use http::request::Parts;
use sha2::Sha256;

use crate::error::ApiError;

/// Smallest, default and largest page size.
pub const MIN_LIMIT: u32 = 1;
pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 100;
/// Longer `cursor` values are refused without decoding.
const MAX_CURSOR_LEN: usize = 512;
/// Bytes of the HMAC tag kept in a cursor (128 bits).
const TAG_LEN: usize = 16;

/// A page size in `1..=100`. There is no way to make one outside that range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimit(u32);

impl PageLimit {
    /// Parses a `limit` query value; out of range or not a whole number is an error message.
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        crate::settings::whole_number::<u32>(text)
            .filter(|n| (MIN_LIMIT..=MAX_LIMIT).contains(n))
            .map(Self)
            .ok_or("must be a whole number from 1 to 100")
    }

    pub fn get(self) -> u32 {
        self.0
    }

    /// The limit as a row count, for fetching one extra row to learn whether a next page exists.
    pub fn rows(self) -> usize {
        self.0 as usize
    }
}

impl Default for PageLimit {
    fn default() -> Self {
        Self(DEFAULT_LIMIT)
    }
}

/// The `limit` and `cursor` query parameters of a list endpoint, parsed strictly: any other
/// parameter, a repeated one, or a bad limit is 422 naming it. The cursor is still sealed; open
/// it with [`CursorKey::open`] and the list's scope.
#[derive(Debug, Clone, Default)]
pub struct PageQuery {
    pub limit: PageLimit,
    pub cursor: Option<SealedCursor>,
}

/// A cursor as the client sent it, not yet verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedCursor(String);

impl<S: Send + Sync> FromRequestParts<S> for PageQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        Self::from_query(parts.uri.query().unwrap_or_default())
    }
}

impl PageQuery {
    /// Parses a raw query string (without the `?`).
    pub fn from_query(query: &str) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
            .map_err(|_| ApiError::invalid("", "the query string is not valid form encoding"))?;
        let mut page = Self::default();
        let (mut seen_limit, mut seen_cursor) = (false, false);
        for (name, value) in pairs {
            match name.as_str() {
                "limit" if !seen_limit => {
                    seen_limit = true;
                    page.limit =
                        PageLimit::parse(&value).map_err(|m| ApiError::invalid("limit", m))?;
                }
                "cursor" if !seen_cursor => {
                    seen_cursor = true;
                    if value.is_empty() || value.len() > MAX_CURSOR_LEN {
                        return Err(foreign_cursor());
                    }
                    page.cursor = Some(SealedCursor(value));
                }
                "limit" | "cursor" => {
                    return Err(ApiError::invalid(name, "must be given at most once"));
                }
                _ => {
                    return Err(ApiError::invalid(
                        name,
                        "is not a parameter of this list (limit, cursor)",
                    ))
                }
            }
        }
        Ok(page)
    }
}

fn derive_mac(material: &[u8]) -> Hmac<Sha256> {
    let new_mac = |key: &[u8]| {
        <Hmac<Sha256> as Mac>::new_from_slice(key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"))
    };
    let mut kdf = new_mac(material);
    kdf.update(b"rampart page cursor key v1");
    new_mac(&kdf.finalize().into_bytes())
}

fn foreign_cursor() -> ApiError {
    ApiError::invalid("cursor", "is not a cursor this list issued")
}

/// The secret that signs cursors. Derive it from key material the deployment already keeps
/// secret (and shares between nodes), under a label of its own so the MAC key is never the
/// material itself. Several keys may be held while signing keys rotate: the first seals, any
/// opens, so a client paging across a rotation is not cut off.
#[derive(Clone)]
pub struct CursorKey {
    sealer: Hmac<Sha256>,
    openers: Vec<Hmac<Sha256>>,
}

impl std::fmt::Debug for CursorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorKey(..)")
    }
}

impl CursorKey {
    /// Derives the cursor key as HMAC-SHA256(material, label).
    pub fn derive(material: &[u8]) -> Self {
        Self::derive_all(material, [])
    }

    /// `current` seals new cursors; cursors sealed under `current` or any of `previous` open.
    pub fn derive_all<'m>(current: &[u8], previous: impl IntoIterator<Item = &'m [u8]>) -> Self {
        let sealer = derive_mac(current);
        let mut openers = vec![sealer.clone()];
        openers.extend(previous.into_iter().map(derive_mac));
        Self { sealer, openers }
    }

    fn tag(mac: &Hmac<Sha256>, scope: &str, position: &str) -> Hmac<Sha256> {
        let mut mac = mac.clone();
        // Length-prefixed, so ("ab", "c") and ("a", "bc") cannot share a tag.
        mac.update(&(scope.len() as u64).to_be_bytes());
        mac.update(scope.as_bytes());
        mac.update(position.as_bytes());
        mac
    }

    /// The cursor that resumes `scope`'s list after `position`.
    pub fn seal(&self, scope: &str, position: &str) -> String {
        let tag = Self::tag(&self.sealer, scope, position)
            .finalize()
            .into_bytes();
        let mut raw = Vec::with_capacity(TAG_LEN + position.len());
        raw.extend_from_slice(&tag[..TAG_LEN]);
        raw.extend_from_slice(position.as_bytes());
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// The position inside `cursor`, if this key sealed it for `scope`; 422 otherwise.
    pub fn open(&self, scope: &str, cursor: &SealedCursor) -> Result<String, ApiError> {
        let raw = URL_SAFE_NO_PAD
            .decode(&cursor.0)
            .map_err(|_| foreign_cursor())?;
        if raw.len() <= TAG_LEN {
            return Err(foreign_cursor());
        }
        let (tag, position) = raw.split_at(TAG_LEN);
        let position = std::str::from_utf8(position).map_err(|_| foreign_cursor())?;
        self.openers
            .iter()
            .any(|mac| {
                Self::tag(mac, scope, position)
                    .verify_truncated_left(tag)
                    .is_ok()
            })
            .then(|| position.to_owned())
            .ok_or_else(foreign_cursor)
    }

    /// Opens the cursor of `page`, if any.
    pub fn position(&self, scope: &str, page: &PageQuery) -> Result<Option<String>, ApiError> {
        page.cursor
            .as_ref()
            .map(|cursor| self.open(scope, cursor))
            .transpose()
    }

    /// Cuts `rows` (fetched with one row more than the limit) to a page; the next cursor is
    /// sealed over the last row's position when more rows remain.
    pub fn page<T>(
        &self,
        scope: &str,
        limit: PageLimit,
        mut rows: Vec<T>,
        position_of: impl Fn(&T) -> String,
    ) -> (Vec<T>, Option<String>) {
        if rows.len() <= limit.rows() {
            return (rows, None);
        }
        rows.truncate(limit.rows());
        let next = rows.last().map(|last| self.seal(scope, &position_of(last)));
        (rows, next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(err: &ApiError) -> String {
        match err {
            ApiError::Validation(errors) => errors[0].field.clone(),
            other => panic!("expected 422, got {other:?}"),
        }
    }

    #[test]
    fn limits_parse_only_in_range() {
        assert_eq!(PageQuery::from_query("").unwrap().limit.get(), 20);
        assert_eq!(PageQuery::from_query("limit=1").unwrap().limit.get(), 1);
        assert_eq!(PageQuery::from_query("limit=100").unwrap().limit.get(), 100);
        for bad in [
            "limit=0",
            "limit=101",
            "limit=-1",
            "limit=99999999999999999999",
            "limit=ten",
            "limit=",
            "limit=1.5",
            "limit=%201",
        ] {
            let err = PageQuery::from_query(bad).unwrap_err();
            assert_eq!(field_of(&err), "limit", "{bad}");
        }
    }

    #[test]
    fn unknown_and_repeated_parameters_are_refused() {
        assert_eq!(
            field_of(&PageQuery::from_query("limt=5").unwrap_err()),
            "limt"
        );
        assert_eq!(
            field_of(&PageQuery::from_query("limit=5&limit=6").unwrap_err()),
            "limit"
        );
        assert_eq!(
            field_of(&PageQuery::from_query("cursor=a&cursor=b").unwrap_err()),
            "cursor"
        );
    }

    #[test]
    fn cursors_open_only_for_their_scope_and_unaltered() {
        let key = CursorKey::derive(b"deployment secret");
        let sealed = key.seal("items:alice", "0192-item-17");
        let page = PageQuery::from_query(&format!("cursor={sealed}")).unwrap();
        assert_eq!(
            key.position("items:alice", &page).unwrap().as_deref(),
            Some("0192-item-17")
        );
        // Another user's cursor, another key, an edited cursor, garbage.
        assert!(key.position("items:bob", &page).is_err());
        assert!(CursorKey::derive(b"other secret")
            .position("items:alice", &page)
            .is_err());
        let mut raw = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        *raw.last_mut().unwrap() ^= 1;
        let edited = SealedCursor(URL_SAFE_NO_PAD.encode(raw));
        assert!(key.open("items:alice", &edited).is_err());
        for junk in ["", "x", "%%%", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"] {
            assert!(key
                .open("items:alice", &SealedCursor(junk.to_owned()))
                .is_err());
        }
        let long = format!("cursor={}", "A".repeat(MAX_CURSOR_LEN + 1));
        assert_eq!(
            field_of(&PageQuery::from_query(&long).unwrap_err()),
            "cursor"
        );
    }

    #[test]
    fn scope_and_position_cannot_be_shifted_into_each_other() {
        // Without the length prefix, scope "items:a" + position "bc" and scope "items:ab" +
        // position "c" would MAC the same bytes.
        let key = CursorKey::derive(b"k");
        let raw = URL_SAFE_NO_PAD.decode(key.seal("items:a", "bc")).unwrap();
        let mut shifted = raw[..TAG_LEN].to_vec();
        shifted.extend_from_slice(b"c");
        let shifted = SealedCursor(URL_SAFE_NO_PAD.encode(shifted));
        assert!(key.open("items:ab", &shifted).is_err());
    }

    #[test]
    fn cursors_survive_a_key_rotation() {
        let old = CursorKey::derive(b"old");
        let sealed = SealedCursor(old.seal("s", "p"));
        let rotated = CursorKey::derive_all(b"new", [b"old".as_slice()]);
        assert_eq!(rotated.open("s", &sealed).unwrap(), "p");
        let fresh = SealedCursor(rotated.seal("s", "p"));
        assert!(
            old.open("s", &fresh).is_err(),
            "new cursors use the new key"
        );
    }

    #[test]
    fn pages_carry_a_cursor_only_when_more_rows_remain() {
        let key = CursorKey::derive(b"k");
        let limit = PageLimit::parse("2").unwrap();
        let (rows, next) = key.page("s", limit, vec![1, 2], ToString::to_string);
        assert_eq!((rows, next), (vec![1, 2], None));
        let (rows, next) = key.page("s", limit, vec![1, 2, 3], ToString::to_string);
        assert_eq!(rows, vec![1, 2]);
        let next = SealedCursor(next.unwrap());
        assert_eq!(key.open("s", &next).unwrap(), "2");
    }
}
