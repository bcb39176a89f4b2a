//! Which paths the auditor will send to. Every path it did not write itself comes from the
//! target: the OpenAPI document, a docs page, ids in list answers. A hostile or careless target
//! can use them to turn a read-only scan into writes.
//!
//! Defends against three tricks, each found by an outside test posing as a hostile API:
//! - dot segments (`/v1/auth/logout/../../admin/reset`, also percent-encoded as `%2e%2e`),
//!   which the URL resolves to another route, so a "logout" or "login" taken from the document
//!   would be sent, with the operator's token or password, somewhere else: [`has_dot_segment`],
//!   refused for every request by the probe;
//! - GETs that change state on careless APIs (`/createdb`, `/del%65te`, `/de;lete`,
//!   `?action=delete`, a look-alike letter): [`is_state_changing_path`], decoded first, with
//!   the query read too and any path with a non-ASCII letter counted as one;
//! - ids from answers that are themselves paths (`..%2F..%2Fadmin%2Freset`): [`id_segment`].
//!
//! Each errs on the side of not sending: a harmless route skipped costs coverage, a harmful
//! one sent costs the target.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Words that say a GET there may change something: a path or query piece starting or ending
/// with one (`createdb`, `resetPassword`, `cache:flush`) counts. None is made of the letters
/// a-f alone, so the auditor's own made-up hex names never match.
const STATE_CHANGING_WORDS: [&str; 91] = [
    "reset",
    "delete",
    "remove",
    "create",
    "init",
    "drop",
    "logout",
    "logoff",
    "signout",
    "destroy",
    "purge",
    "wipe",
    "shutdown",
    "setup",
    "install",
    "seed",
    "migrate",
    "truncate",
    "flush",
    "clear",
    "erase",
    "format",
    "import",
    "execute",
    "exec",
    "approve",
    "reject",
    "block",
    "charge",
    "checkout",
    "refund",
    "cancel",
    "revoke",
    "disable",
    "enable",
    "activate",
    "deactivate",
    "lock",
    "unlock",
    "grant",
    "promote",
    "restore",
    "rollback",
    "restart",
    "kill",
    "trigger",
    "publish",
    "send",
    "confirm",
    "transfer",
    "rotate",
    "close",
    "unsubscribe",
    "subscribe",
    "cleanup",
    "deploy",
    "archive",
    "accept",
    "backup",
    "expire",
    "invite",
    "verify",
    "update",
    "save",
    "upload",
    "sync",
    "rename",
    "move",
    "assign",
    "join",
    "leave",
    "follow",
    "vote",
    "submit",
    "toggle",
    "increment",
    "decrement",
    "nuke",
    "reboot",
    "poweroff",
    "halt",
    "withdraw",
    "terminate",
    "invalidate",
    "purchase",
    "redeem",
    "evict",
    "elevate",
    "impersonate",
    "retry",
    "destructive",
];
/// Short words that count only as a whole piece (`/v1/del`, `/pay`, `/ban`), not inside
/// others (`/delivery`, `/payments`, `/banners`, `/credit`).
const STATE_CHANGING_PIECES: [&str; 18] = [
    "del", "rm", "pay", "set", "put", "post", "empty", "off", "ban", "edit", "end", "run", "start",
    "stop", "ack", "email", "mark", "make",
];

/// Everything but the unreserved characters of RFC 3986 (letters, digits, `-._~`): what a path
/// segment built from a value the target chose keeps unescaped.
pub(crate) const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `text` with `%XX` escapes decoded (invalid escapes kept as written), as a server reads it.
pub fn percent_decode(text: &str) -> String {
    percent_decode_str(text).decode_utf8_lossy().into_owned()
}

/// Whether the path part of `path` holds a `.` or `..` segment, as written or percent-encoded,
/// with `/` or `\` as separators (some servers take either), ignoring what follows a `;` in a
/// segment (`..;` is `..` to Tomcat and Spring).
pub fn has_dot_segment(path: &str) -> bool {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    // Decoded twice: `%252e%252e` is `..` to a server that decodes once more behind a proxy.
    let decoded = percent_decode(&percent_decode(path));
    decoded
        .split(['/', '\\'])
        .map(|piece| piece.split(';').next().unwrap_or_default())
        .any(|piece| piece == "." || piece == "..")
}

/// Whether `path` is one the auditor may send at all when it came from the target: ASCII only,
/// without control characters (the URL parser drops tabs and line breaks, so `/cre<TAB>atedb`
/// would be sent as `/createdb` after every check had passed it), without dot segments, and
/// without a query or fragment hiding another route (`/admin/reset#/logout`).
pub fn is_sendable_template(path: &str) -> bool {
    // Decoded, a delimiter ends the route a proxy passes on: `/admin/reset%3F/logout`,
    // `%23`, `%00`, a space and `;` too.
    let decoded = percent_decode(&percent_decode(path));
    !path.contains(['?', '#']) && !decoded.contains(['?', '#', ' ', ';']) && is_sendable(path)
}

/// [`is_sendable_template`] for a URL that may carry a query (a document URL a docs page names).
pub fn is_sendable(path: &str) -> bool {
    let route = path.split('?').next().unwrap_or_default();
    let decoded = percent_decode(&percent_decode(route));
    path.starts_with('/')
        && path.is_ascii()
        && !path.contains(|c: char| c.is_ascii_control() || c == ' ')
        && !has_dot_segment(path)
        && decoded.is_ascii()
        && !decoded.contains(|c: char| c.is_ascii_control())
}

/// Whether an operation's name or summary in the document says it changes state (an
/// `operationId` of `dropAllTables`, a summary "Drops every table"), whatever its path says.
pub(crate) fn says_it_changes_state(text: &str) -> bool {
    let words: String = text
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '/' })
        .collect();
    is_state_changing_path(&words.to_ascii_lowercase())
}

/// Whether a GET of `path` (a template or a filled path, with its query) could change state on
/// a careless API, such as VAmPI's `GET /createdb`; the read-only checks never send one.
pub(crate) fn is_state_changing_path(path: &str) -> bool {
    let decoded = percent_decode(&percent_decode(path));
    if !decoded.is_ascii() || decoded.contains(|c: char| c.is_ascii_control()) {
        // A look-alike letter (`dеlete` with a Cyrillic е) reads as nothing to a word list, and
        // a tab or line break is dropped by the URL parser (`cre<TAB>atedb`).
        return true;
    }
    let lower = decoded.to_ascii_lowercase();
    lower
        .split(['/', '\\', '?', '&', '=', '#'])
        .filter(|segment| !(segment.starts_with('{') && segment.ends_with('}')))
        .flat_map(|segment| {
            // `de;lete` and `de;x=1lete` read as `delete` to some routers, `de` to others.
            let joined: String = segment.split(';').collect();
            let mut pieces: Vec<String> = segment
                .split(['-', '_', '.', ':', ';', ',', '+', ' '])
                .map(str::to_owned)
                .collect();
            pieces.push(joined);
            pieces.push(segment.to_owned());
            pieces
        })
        .any(|piece| {
            !piece.is_empty()
                && (STATE_CHANGING_PIECES.contains(&piece.as_str())
                    || STATE_CHANGING_WORDS
                        .iter()
                        .any(|word| piece.starts_with(word) || piece.ends_with(word)))
        })
}

/// An id taken from an answer, as one path segment: percent-encoded but for unreserved
/// characters; `None` for an id that is itself a path or an escape (`..`, `a/b`, `a\b`,
/// `%2F`), which no honest API hands out as an id.
pub(crate) fn id_segment(id: &str) -> Option<String> {
    if id.is_empty()
        || id == "."
        || id == ".."
        || id.contains(['/', '\\', '%', ';'])
        || id.chars().any(char::is_control)
        || is_state_changing_path(id)
    {
        return None;
    }
    Some(utf8_percent_encode(id, UNRESERVED).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_are_found_however_they_are_written() {
        for path in [
            "/v1/auth/logout/../../admin/reset",
            "/v1/auth/logout/%2e%2e/%2e%2e/createdb",
            "/v1/auth/login/../../../v1/users",
            "/a/%2E%2e/b",
            "/a/.%2e/b",
            "/a/%252e%252e/b",
            "/a\\..\\b",
            "/a/./b",
            "/a/..",
            "/v1/auth/logout/..;/..;/admin/reset",
        ] {
            assert!(has_dot_segment(path), "{path}");
        }
        for path in [
            "/v1/auth/logout/.\t./.\t./admin/reset",
            "/v1/admin/reset#/v1/auth/logout",
            "/v1/admin/reset?next=/v1/auth/logout",
            "/v1/auth/logout/\u{ff0e}\u{ff0e}/admin",
            "/v1/auth/logout/%c0%ae%c0%ae/admin",
            "relative/logout",
        ] {
            assert!(!is_sendable_template(path), "{path:?}");
        }
        for path in [
            "/v1/admin/reset%00/v1/auth/logout",
            "/v1/admin/reset%3F/v1/auth/logout",
            "/v1/admin/reset%23/v1/auth/logout",
            "/v1/admin/reset%20/v1/auth/logout",
            "/v1/admin/reset /v1/auth/logout",
            "/v1/admin/reset;/v1/auth/logout",
        ] {
            assert!(!is_sendable_template(path), "{path:?}");
        }
        assert!(says_it_changes_state("dropAllTables Drops every table"));
        assert!(!says_it_changes_state("listUsers Lists the users"));
        assert!(is_sendable_template("/v1/auth/logout"));
        assert!(is_sendable_template("/v1/items/{id}"));
        for path in [
            "/v1/auth/logout",
            "/files/a..b",
            "/v1/items/.well-known",
            "/x?next=../y",
        ] {
            assert!(!has_dot_segment(path), "{path}");
        }
    }

    #[test]
    fn paths_that_read_as_changes_are_never_read() {
        for path in [
            "/createdb",
            "/users/v1/{username}/delete",
            "/api/v1/reset-password/",
            "/v1/auth/logout",
            "/admin/db_drop?confirm=1",
            "/setup",
            "/del%65te",
            "/admin/%2Fdelete",
            "/de;lete",
            "/d%D0%B5lete",
            "/index.php?action=delete",
            "/api/cache/flush",
            "/approve",
            "/ban",
            "/charge",
            "/checkout",
            "/clear",
            "/erase",
            "/execute",
            "/format",
            "/import",
            "/resetPassword",
            "/cache:purge",
            "/createdb?spec=openapi.json",
            "/v1/auth/logout?openapi.json",
            "/api/users/delete-all.json",
            "/cre\tatedb",
            "/de\nlete",
            "/logoff",
            "/pay",
            "/transfer?amount=1000&to=mallory",
            "/rotate-keys",
            "/v1/account/close",
            "/unsubscribe",
            "/v1/cleanup",
            "/v1/del",
            "/v1/deploy",
            "/v1/archive",
            "/v1/accept",
            "/v1/backup",
            "/v1/empty-trash",
            "/v1/expire",
            "/v1/nuke",
            "/v1/reboot",
            "/v1/terminate",
            "/v1/session/end",
            "/v1/users/1/make-admin",
            "/v1/jobs/run",
            "/v1/start",
            "/v1/impersonate",
            "/v1/mark-read",
            "/v1/ack",
        ] {
            assert!(is_state_changing_path(path), "{path}");
        }
        for path in [
            "/",
            "/users/v1",
            "/users/v1/_debug",
            "/users/v1/{username}",
            "/api/v1/items/{id}",
            "/books/v1/{book_title}",
            "/settings",
            "/me",
            "/api/v1/utils/health-check/",
            "/users/{delete_me}",
            "/openapi.json",
            "/api/v1/openapi.json",
            "/v3/api-docs",
            "/credentials",
            "/payments",
            "/delivery",
            "/banners",
            "/credit",
            "/settings",
            "/rampart-audit-add9fe0c/deadbeef",
        ] {
            assert!(!is_state_changing_path(path), "{path}");
        }
    }

    #[test]
    fn ids_that_are_paths_are_not_used() {
        assert_eq!(id_segment("b 2").as_deref(), Some("b%202"));
        assert_eq!(id_segment("user1-book").as_deref(), Some("user1-book"));
        for id in [
            "..",
            ".",
            "..%2F..%2Fadmin%2Freset",
            "1/delete",
            "a\\b",
            "",
            "a\nb",
        ] {
            assert_eq!(id_segment(id), None, "{id}");
        }
    }
}
