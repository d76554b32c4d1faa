#![allow(clippy::unwrap_used)]

use std::time::Duration;

use super::*;
use crate::config::{Provider, ProviderKind, Timeouts};

fn provider(base_url: &str) -> Provider {
    let second = Duration::from_secs(1);
    Provider {
        name: "up".to_owned(),
        kind: ProviderKind::Openai,
        base_url: base_url.to_owned(),
        api_keys: Vec::new(),
        api_version: String::new(),
        timeouts: Timeouts {
            connect: second,
            first_byte: second,
            idle: second,
            total: second,
            first_token: second,
            stream_total: second,
        },
        pool: crate::config::Pool::default(),
        http2: false,
    }
}

#[test]
fn the_host_header_names_host_and_port_only() {
    let client =
        ProviderClient::new(&provider("http://user:secret@127.0.0.1:9999/v1"), None).unwrap();
    assert_eq!(client.fixed_headers["host"], "127.0.0.1:9999");
    assert_eq!(client.fixed_headers["content-type"], "application/json");
    let client = ProviderClient::new(&provider("http://relay.internal/v1"), None).unwrap();
    assert_eq!(client.fixed_headers["host"], "relay.internal");
    let client = ProviderClient::new(&provider("https://api.example.com/v1"), None).unwrap();
    assert_eq!(client.fixed_headers["host"], "api.example.com");
    assert!(client.fixed_headers.contains_key("user-agent"));
    // HTTP/2 carries `:authority` instead, which its client sets.
    let mut http2 = provider("https://api.example.com/v1");
    http2.http2 = true;
    let client = ProviderClient::new(&http2, None).unwrap();
    assert!(!client.fixed_headers.contains_key("host"));
}

#[test]
fn running_out_of_descriptors_is_told_from_a_provider_failure() {
    #[derive(Debug, thiserror::Error)]
    #[error("client error (Connect)")]
    struct Wrapper(#[source] std::io::Error);
    let local = |e: &(dyn std::error::Error + 'static)| {
        io_cause(e, |io| {
            LOCAL_ERRNOS.contains(&io.raw_os_error().unwrap_or(0))
        })
    };
    assert!(local(&Wrapper(std::io::Error::from_raw_os_error(24))));
    assert!(local(&Wrapper(std::io::Error::from_raw_os_error(23))));
    let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
    assert!(!local(&Wrapper(refused)));
}
