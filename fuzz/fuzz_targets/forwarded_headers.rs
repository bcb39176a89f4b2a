//! Any `X-Forwarded-For` / `Forwarded` value from behind a trusted proxy: resolved without
//! panicking, and never to a trusted proxy address unless every hop is one.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use rampart::http::client_ip::{ClientIpConfig, ForwardedHeader};

fuzz_target!(|data: &[u8]| {
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    let peer = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    let outsider = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    for (header, name) in [
        (ForwardedHeader::XForwardedFor, "x-forwarded-for"),
        (ForwardedHeader::Forwarded, "forwarded"),
    ] {
        let config = ClientIpConfig::new(
            vec!["10.0.0.0/8"
                .parse()
                .unwrap_or_else(|_| std::process::abort())],
            header,
        );
        let mut headers = HeaderMap::new();
        headers.insert(name, value.clone());
        let _ = config.resolve(peer, &headers);
        // A peer outside the proxy networks is the client, whatever it wrote.
        assert_eq!(config.resolve(outsider, &headers), outsider);
    }
});
