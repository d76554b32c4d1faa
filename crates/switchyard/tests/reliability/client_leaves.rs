//! A client that leaves mid-stream: the upstream connection is dropped within
//! a second, and the request's usage record says the client closed.

use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::Mode;
use crate::fixtures::{ask_stream, gateway_on, newest_error_type};
use crate::harness::{Process, mock};
use crate::load::ms;
use crate::table::Row;

/// Established TCP connections whose local port is `mock`'s (its side of
/// the gateway's connections to it).
fn connections_to(mock: &Process) -> usize {
    let port = format!(":{:04X} ", mock.addr.port());
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() > 3 && format!("{} ", fields[1]).ends_with(&port) && fields[3] == "01"
        })
        .count()
}

pub async fn run(_mode: Mode) -> Vec<Row> {
    // Twenty seconds of tokens.
    let slow = mock(&["--completion-tokens", "200", "--tokens-per-second", "10"]);
    let gw = gateway_on(&[("slow", &slow)], "", "");
    let response = ask_stream(&gw, "m").send().await.expect("send");
    let mut body = response.bytes_stream();
    // The head and a few events, then the client goes.
    for _ in 0..3 {
        body.next().await;
    }
    let open = connections_to(&slow);
    drop(body);
    let left = Instant::now();
    while connections_to(&slow) > 0 && left.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let dropped = left.elapsed();
    let error_type = newest_error_type(&gw).await;
    vec![
        Row::new(
            "a client leaving mid-stream: the upstream connection closed within 1 s",
            format!(
                "{open} upstream connection open while streaming, none {} after the client left",
                ms(dropped)
            ),
            open == 1 && connections_to(&slow) == 0 && dropped <= Duration::from_secs(1),
        ),
        Row::new(
            "… and its usage record marked `client_closed`",
            format!("record: {error_type}"),
            error_type == "client_closed",
        ),
    ]
}
