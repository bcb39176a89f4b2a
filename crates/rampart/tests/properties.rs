//! Property tests for every parser in the library that sees client or operator input: access
//! tokens, page cursors and limits, forwarding headers, the JSON extractor, and the settings
//! value syntax. Each property states what the parser promises for *any* input, not for the
//! handful of examples the unit tests pick: it never panics, it never accepts a value outside
//! its documented form, and what it renders parses back to the same value.
//!
//! The same parsers are `cargo fuzz` targets under `fuzz/` for longer, coverage-guided runs.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::OnceLock;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;
use rampart::http::client_ip::{ClientIpConfig, ForwardedHeader};
use rampart::keys::KeySet;
use rampart::pagination::{CursorKey, PageLimit, PageQuery};
use rampart::settings::{
    format_duration, parse_bool, parse_duration, parse_networks, parse_size, CorsOrigins,
    HashParams, Rate,
};
use rampart::tokens::{TokenPolicy, Tokens};
use rampart::ApiError;
use serde::{Deserialize, Serialize};

const BASE64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn tokens() -> &'static Tokens {
    static TOKENS: OnceLock<Tokens> = OnceLock::new();
    TOKENS.get_or_init(|| {
        let policy = TokenPolicy {
            issuer: "rampart".into(),
            audience: "rampart-api".into(),
            ttl: Duration::from_secs(900),
        };
        Tokens::eddsa(&KeySet::generate().unwrap(), policy).unwrap()
    })
}

fn b64_json(value: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

/// Strings shaped like a JWT (three base64url segments), the inputs most likely to get deep
/// into a verifier, plus arbitrary text.
fn token_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9_-]{0,40}\\.[A-Za-z0-9_-]{0,80}\\.[A-Za-z0-9_-]{0,90}",
        ".{0,200}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    // --- access tokens ----------------------------------------------------------------------

    #[test]
    fn no_made_up_token_verifies(token in token_like()) {
        prop_assert!(tokens().verify(&token).is_err());
    }

    #[test]
    fn issued_tokens_verify_to_the_ids_they_were_issued_for(
        user in "[a-zA-Z0-9-]{1,40}",
        session in "[a-zA-Z0-9-]{1,40}",
    ) {
        let issued = tokens().issue(&user, &session).unwrap();
        let claims = tokens().verify(&issued.token).unwrap();
        prop_assert_eq!(&claims.sub, &user);
        prop_assert_eq!(&claims.sid, &session);
    }

    /// Any one character changed, anywhere in the token (header, claims or signature), is
    /// refused: the signature covers every byte, and base64url decoding is canonical, so no
    /// substitute character decodes to the same signature.
    #[test]
    fn a_token_with_any_character_changed_is_refused(
        position in any::<prop::sample::Index>(),
        replacement in prop::sample::select(BASE64URL.iter().copied().chain([b'.']).collect::<Vec<u8>>()),
    ) {
        let token = tokens().issue("user-1", "session-1").unwrap().token;
        let mut bytes = token.clone().into_bytes();
        let at = position.index(bytes.len());
        prop_assume!(bytes[at] != replacement);
        bytes[at] = replacement;
        let forged = String::from_utf8(bytes).unwrap();
        prop_assert!(tokens().verify(&forged).is_err(), "accepted {forged}");
    }

    /// A forged header naming another algorithm (or none), with the real key id and any claims
    /// the attacker likes, never verifies: the key decides the algorithm, not the token.
    #[test]
    fn tokens_choosing_their_own_algorithm_are_refused(
        alg in prop::sample::select(vec!["none", "None", "HS256", "HS512", "RS256", "ES256", "PS256", "EdDSA"]),
        sub in "[a-z0-9-]{1,20}",
        ttl in 1u64..100_000,
        signature in "[A-Za-z0-9_-]{0,90}",
    ) {
        let real = tokens().issue("user-1", "session-1").unwrap();
        let kid = real.token.split('.').next().map(|h| {
            let header: serde_json::Value =
                serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap();
            header["kid"].as_str().unwrap().to_owned()
        }).unwrap();
        let header = serde_json::json!({"alg": alg, "typ": "at+jwt", "kid": kid});
        let claims = &real.claims;
        let body = serde_json::json!({
            "iss": claims.iss, "aud": claims.aud, "sub": sub, "sid": claims.sid,
            "jti": claims.jti, "iat": claims.iat, "nbf": claims.nbf,
            "exp": claims.iat + ttl, "typ": claims.typ,
        });
        let forged = format!("{}.{}.{signature}", b64_json(&header), b64_json(&body));
        prop_assert!(tokens().verify(&forged).is_err(), "accepted alg {alg}");
    }

    // --- page limits and cursors ------------------------------------------------------------

    #[test]
    fn any_query_string_parses_or_is_refused_without_panicking(query in ".{0,300}") {
        if let Ok(page) = PageQuery::from_query(&query) {
            prop_assert!((1..=100).contains(&page.limit.get()));
        }
    }

    /// A limit is accepted exactly when it is a whole number written in digits from 1 to 100.
    #[test]
    fn limits_parse_only_in_range(text in prop_oneof!["[0-9]{1,12}", "[+-]?[0-9]{1,4}", ".{0,12}"]) {
        let expected = text.bytes().all(|b| b.is_ascii_digit())
            && text.parse::<u64>().is_ok_and(|n| (1..=100).contains(&n));
        prop_assert_eq!(PageLimit::parse(&text).is_ok(), expected, "limit {:?}", text);
    }

    #[test]
    fn cursors_open_to_the_position_they_were_sealed_over(
        scope in ".{0,40}",
        position in ".{1,80}",
    ) {
        let key = CursorKey::derive(b"cursor key material");
        let sealed = key.seal(&scope, &position);
        let page = PageQuery::from_query(&format!("cursor={sealed}")).unwrap();
        prop_assert_eq!(key.position(&scope, &page).unwrap(), Some(position));
    }

    /// A cursor only opens under the key and scope that sealed it, and any edit spoils it.
    #[test]
    fn cursors_cannot_be_moved_made_up_or_edited(
        scope in "[a-z]{1,10}:[a-z0-9]{1,20}",
        other_scope in "[a-z]{1,10}:[a-z0-9]{1,20}",
        position in "[a-z0-9-]{1,40}",
        at in any::<prop::sample::Index>(),
        replacement in prop::sample::select(BASE64URL.to_vec()),
        made_up in "[A-Za-z0-9_-]{1,120}",
    ) {
        let key = CursorKey::derive(b"cursor key material");
        let other_key = CursorKey::derive(b"another deployment");
        let cursor = |text: &str| {
            PageQuery::from_query(&format!("cursor={text}")).ok().and_then(|p| p.cursor)
        };
        let sealed = key.seal(&scope, &position);
        let opened = key.open(&scope, &cursor(&sealed).unwrap());
        prop_assert!(opened.is_ok());
        if other_scope != scope {
            prop_assert!(key.open(&other_scope, &cursor(&sealed).unwrap()).is_err());
        }
        prop_assert!(other_key.open(&scope, &cursor(&sealed).unwrap()).is_err());

        let mut edited = sealed.clone().into_bytes();
        let i = at.index(edited.len());
        prop_assume!(edited[i] != replacement);
        edited[i] = replacement;
        let edited = String::from_utf8(edited).unwrap();
        prop_assert!(key.open(&scope, &cursor(&edited).unwrap()).is_err(), "edited {edited}");
        if let Some(made_up) = cursor(&made_up) {
            prop_assert!(key.open(&scope, &made_up).is_err());
        }
    }

    // --- forwarding headers -----------------------------------------------------------------

    /// A peer that is not a trusted proxy is the client, whatever it writes in the headers.
    #[test]
    fn an_untrusted_peer_cannot_choose_its_address(
        peer in any::<Ipv4Addr>().prop_filter("outside 10/8", |ip| ip.octets()[0] != 10),
        forwarded_for in prop::collection::vec(any::<u8>(), 0..200),
        forwarded in prop::collection::vec(any::<u8>(), 0..200),
        which in any::<bool>(),
    ) {
        let header = if which { ForwardedHeader::XForwardedFor } else { ForwardedHeader::Forwarded };
        let config = ClientIpConfig::new(vec!["10.0.0.0/8".parse().unwrap()], header);
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_bytes(&forwarded_for) {
            headers.insert("x-forwarded-for", v);
        }
        if let Ok(v) = HeaderValue::from_bytes(&forwarded) {
            headers.insert("forwarded", v);
        }
        prop_assert_eq!(config.resolve(IpAddr::V4(peer), &headers), IpAddr::V4(peer));
    }

    /// Behind trusted proxies the client is the rightmost address that is not a proxy: entries
    /// the client wrote to the left of it (spoofed addresses) never win.
    #[test]
    fn behind_proxies_the_client_is_the_rightmost_untrusted_hop(
        spoofed in prop::collection::vec(any::<Ipv4Addr>(), 0..6),
        client in any::<Ipv4Addr>().prop_filter("outside 10/8", |ip| ip.octets()[0] != 10),
        proxies in prop::collection::vec(any::<[u8; 3]>(), 0..4),
        forwarded_syntax in any::<bool>(),
    ) {
        let proxies: Vec<Ipv4Addr> = proxies.iter().map(|[a, b, c]| Ipv4Addr::new(10, *a, *b, *c)).collect();
        let chain: Vec<Ipv4Addr> = spoofed.iter().chain([&client]).chain(&proxies).copied().collect();
        let (header, name, value) = if forwarded_syntax {
            let value = chain.iter().map(|ip| format!("for={ip}")).collect::<Vec<_>>().join(", ");
            (ForwardedHeader::Forwarded, "forwarded", value)
        } else {
            let value = chain.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
            (ForwardedHeader::XForwardedFor, "x-forwarded-for", value)
        };
        let config = ClientIpConfig::new(vec!["10.0.0.0/8".parse().unwrap()], header);
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_str(&value).unwrap());
        let peer = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        prop_assert_eq!(config.resolve(peer, &headers), IpAddr::V4(client));
    }

    /// Any mix of proxies, clients and garbage entries resolves as the rule says: walk from
    /// the right past trusted proxies; the first other address is the client; a malformed
    /// entry stops the walk at the last address a trusted hop vouched for.
    #[test]
    fn forwarded_chains_resolve_by_the_rightmost_untrusted_rule(
        entries in prop::collection::vec(prop_oneof![
            any::<u16>().prop_map(|n| Hop::Proxy(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, n))),
            any::<Ipv6Addr>().prop_filter("not fd00::/8", |ip| ip.octets()[0] != 0xfd).prop_map(Hop::Client),
            "[^,\\x00-\\x1f\\x7f]{0,12}".prop_filter("not an address", |g| !names_an_address(g)).prop_map(Hop::Garbage),
        ], 0..10),
    ) {
        let value = entries.iter().map(Hop::render).collect::<Vec<_>>().join(",");
        let Ok(value) = HeaderValue::from_bytes(value.as_bytes()) else { return Ok(()) };
        let peer = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0xffff));
        let mut expected = peer;
        for hop in entries.iter().rev() {
            match hop {
                Hop::Proxy(ip) => expected = IpAddr::V6(*ip),
                Hop::Client(ip) => {
                    expected = ip.to_ipv4_mapped().map_or(IpAddr::V6(*ip), IpAddr::V4);
                    break;
                }
                Hop::Garbage(_) => break,
            }
        }
        let config = ClientIpConfig::new(vec!["fd00::/8".parse().unwrap()], ForwardedHeader::XForwardedFor);
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", value);
        prop_assert_eq!(config.resolve(peer, &headers), expected);
    }

    // --- the JSON extractor -----------------------------------------------------------------

    /// Any bytes at all: a value or a 400/422 problem, never a panic or another status.
    #[test]
    fn any_body_parses_or_is_a_client_error(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        match rampart::json::parse::<Note>(&bytes, 8) {
            Ok(_) | Err(ApiError::BadRequest(_) | ApiError::Validation(_)) => {}
            Err(other) => prop_assert!(false, "unexpected {other:?}"),
        }
    }

    /// Nesting is refused past the limit before the parser recurses, at any depth.
    #[test]
    fn nesting_past_the_limit_is_refused(depth in 9usize..200_000, open in prop::sample::select(vec!["[", "{\"a\":"])) {
        let body = open.repeat(depth);
        let refused = rampart::json::parse::<serde_json::Value>(body.as_bytes(), 8);
        prop_assert!(matches!(refused, Err(ApiError::BadRequest(_))));
    }

    #[test]
    fn well_formed_values_round_trip(note in any_note()) {
        let bytes = serde_json::to_vec(&note).unwrap();
        prop_assert_eq!(rampart::json::parse::<Note>(&bytes, 8).unwrap(), note);
    }

    /// An extra field, such as a mass-assignment attempt, is a 422 naming that field.
    #[test]
    fn unknown_fields_are_refused_by_name(note in any_note(), field in "[a-z_]{1,12}") {
        prop_assume!(field != "title" && field != "tags");
        let mut value = serde_json::to_value(&note).unwrap();
        value[&field] = serde_json::json!("admin");
        match rampart::json::parse::<Note>(value.to_string().as_bytes(), 8) {
            Err(ApiError::Validation(errors)) => {
                prop_assert!(errors[0].message.contains(&field), "{errors:?}");
            }
            other => prop_assert!(false, "expected 422, got {other:?}"),
        }
    }

    // --- settings values --------------------------------------------------------------------

    #[test]
    fn durations_round_trip_through_their_rendering(secs in 0u64..=10 * 365 * 86_400) {
        let d = Duration::from_secs(secs);
        prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
    }

    /// Exactly `<digits><s|m|h|d>` up to ten years: no sign, no fraction, no other unit.
    #[test]
    fn durations_accept_only_their_syntax(raw in prop_oneof!["[+-]?[0-9]{0,12}[smhdy ]?", ".{0,16}"]) {
        let body = raw.trim();
        let grammar = body.ends_with(['s', 'm', 'h', 'd'])
            && body.len() >= 2
            && body[..body.len() - 1].bytes().all(|b| b.is_ascii_digit());
        match parse_duration(&raw) {
            Ok(d) => {
                prop_assert!(grammar, "accepted {raw:?}");
                prop_assert!(d <= Duration::from_secs(10 * 365 * 86_400));
            }
            Err(message) => prop_assert!(!message.is_empty()),
        }
    }

    #[test]
    fn rates_round_trip_and_accept_only_their_syntax(
        count in 1u32..,
        unit in prop::sample::select(vec!["second", "minute", "hour"]),
        raw in prop_oneof!["[+-]? ?[0-9]{0,11} ?/ ?(second|minute|hour|[a-z]{0,7})", ".{0,20}"],
    ) {
        let rate: Rate = format!("{count}/{unit}").parse().unwrap();
        prop_assert_eq!(rate.count(), count);
        prop_assert_eq!(rate.to_string().parse::<Rate>(), Ok(rate));
        if let Ok(parsed) = raw.parse::<Rate>() {
            let (n, u) = raw.trim().split_once('/').unwrap();
            prop_assert!(n.trim().bytes().all(|b| b.is_ascii_digit()), "accepted {raw:?}");
            prop_assert!(["second", "minute", "hour"].contains(&u.trim()));
            prop_assert!(parsed.count() >= 1);
        }
    }

    #[test]
    fn sizes_round_trip_and_accept_only_their_syntax(
        n in 1usize..1 << 20,
        suffix in prop::sample::select(vec![("", 1usize), ("KiB", 1024), ("MiB", 1024 * 1024)]),
        raw in prop_oneof!["[+-]?[0-9]{0,22}(KiB|MiB|kb|B)?", ".{0,16}"],
    ) {
        prop_assert_eq!(parse_size(&format!("{n}{}", suffix.0)), Ok(n * suffix.1));
        if let Ok(size) = parse_size(&raw) {
            let number = raw.trim().trim_end_matches("KiB").trim_end_matches("MiB").trim();
            prop_assert!(number.bytes().all(|b| b.is_ascii_digit()), "accepted {raw:?}");
            prop_assert!(size > 0);
        }
    }

    #[test]
    fn hash_parameters_round_trip_and_stay_bounded(
        m in 8u32..=1024 * 1024,
        t in 1u32..20,
        p in 1u32..=16,
        raw in prop_oneof!["argon2id:[mtp=0-9,+ -]{0,30}", ".{0,30}"],
    ) {
        prop_assume!(m >= 8 * p);
        let params: HashParams = format!("argon2id:m={m},t={t},p={p}").parse().unwrap();
        prop_assert_eq!(params.to_string().parse::<HashParams>(), Ok(params));
        if let Ok(parsed) = raw.parse::<HashParams>() {
            prop_assert!(parsed.iterations >= 1 && (1..=16).contains(&parsed.parallelism));
            prop_assert!(parsed.memory_kib <= 1024 * 1024 && parsed.memory_kib >= 8 * parsed.parallelism);
        }
    }

    #[test]
    fn booleans_are_only_true_or_false(raw in ".{0,8}") {
        match parse_bool(&raw) {
            Ok(b) => prop_assert_eq!(raw.trim(), if b { "true" } else { "false" }),
            Err(_) => prop_assert!(!matches!(raw.trim(), "true" | "false")),
        }
    }

    /// An accepted origin list holds only `scheme://host[:port]` values: no path, wildcard,
    /// whitespace or upper case that would never match a browser's `Origin`.
    #[test]
    fn cors_origins_accept_only_exact_origins(raw in prop_oneof![
        "(https?://[a-zA-Z0-9.:*/ -]{0,20}, ?){0,3}",
        "\\*|(\\*, ?https://a\\.b)",
        ".{0,40}",
    ]) {
        match raw.parse::<CorsOrigins>() {
            Ok(CorsOrigins::List(origins)) => {
                for origin in origins {
                    let text = origin.to_str().unwrap();
                    let host = text.strip_prefix("https://").or_else(|| text.strip_prefix("http://"));
                    prop_assert!(host.is_some_and(|h| !h.is_empty()
                        && h.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b".-:[]".contains(&b))),
                        "accepted {text:?} from {raw:?}");
                }
            }
            Ok(CorsOrigins::Any) => {
                let entries: Vec<&str> = raw.split(',').map(str::trim).filter(|e| !e.is_empty()).collect();
                prop_assert_eq!(entries, vec!["*"]);
            }
            Ok(CorsOrigins::None) => prop_assert!(raw.split(',').all(|s| s.trim().is_empty())),
            Err(_) => {}
        }
    }

    #[test]
    fn proxy_networks_round_trip(addresses in prop::collection::vec(any::<IpAddr>(), 1..5), prefix in 0u8..=32) {
        let text = addresses.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        let nets = parse_networks(&text).unwrap();
        prop_assert_eq!(nets.len(), addresses.len());
        for (net, ip) in nets.iter().zip(&addresses) {
            prop_assert!(net.contains(ip));
            prop_assert_eq!(net.prefix_len(), net.max_prefix_len());
        }
        let cidr = format!("{}/{prefix}", addresses[0]);
        prop_assert_eq!(parse_networks(&cidr).unwrap().len(), 1);
    }

    #[test]
    fn proxy_networks_never_panic(raw in ".{0,60}") {
        let _ = parse_networks(&raw);
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Note {
    title: String,
    tags: Vec<u16>,
}

fn any_note() -> impl Strategy<Value = Note> {
    (".{0,30}", prop::collection::vec(any::<u16>(), 0..5))
        .prop_map(|(title, tags)| Note { title, tags })
}

#[derive(Debug, Clone)]
enum Hop {
    Proxy(Ipv6Addr),
    Client(Ipv6Addr),
    Garbage(String),
}

impl Hop {
    fn render(&self) -> String {
        match self {
            Self::Proxy(ip) | Self::Client(ip) => ip.to_string(),
            Self::Garbage(text) => text.clone(),
        }
    }
}

/// Whether a forwarding entry is an address in any form proxies write.
fn names_an_address(entry: &str) -> bool {
    let entry = entry.trim();
    entry.parse::<IpAddr>().is_ok()
        || entry.parse::<SocketAddr>().is_ok()
        || entry
            .strip_prefix('[')
            .and_then(|e| e.strip_suffix(']'))
            .is_some_and(|e| e.parse::<IpAddr>().is_ok())
}
