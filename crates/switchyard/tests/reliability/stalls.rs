//! Stalls: a provider that never sends its first byte is answered 504, and a
//! stream that goes silent mid-way is ended with one error event, each within
//! its timeout and a second.

use std::time::Duration;

use serde_json::json;

use crate::Mode;
use crate::fixtures::{ask, ask_stream, gateway_on};
use crate::harness::{mock, set_faults};
use crate::load::{self, ms};
use crate::streams;
use crate::table::Row;

pub async fn run(_mode: Mode) -> Vec<Row> {
    let mut rows = Vec::new();
    // A provider that takes a minute to answer; one attempt, so that the
    // first-byte timeout is the whole wait.
    let silent = mock(&["--latency", "60s"]);
    let gw = gateway_on(
        &[("silent", &silent)],
        "connect: 1s, first_byte: 2s",
        "retries:\n  attempts: 1\n",
    );
    let json = load::many(1, 1, |i| ask(&gw, i)).await[0];
    rows.push(Row::new(
        "no first byte (first_byte 2 s): 504 within 3 s",
        format!("{} after {}", json.status, ms(json.latency)),
        json.status == 504 && json.latency <= Duration::from_secs(3),
    ));
    let stream = streams::read(ask_stream(&gw, "m"), Duration::from_secs(10)).await;
    rows.push(Row::new(
        "… the same for a stream: 504 within 3 s, before any event",
        format!("{} after {}", stream.status, ms(stream.ended)),
        stream.status == 504 && stream.ended <= Duration::from_secs(3),
    ));
    drop((gw, silent));

    // A stream that goes silent after three content events.
    let stalling = mock(&[]);
    set_faults(
        &stalling,
        json!({"stream_fault": {"kind": "stall_after", "after": 3}}),
    )
    .await;
    let gw = gateway_on(
        &[("stalling", &stalling)],
        "connect: 1s, first_byte: 5s, idle: 2s",
        "",
    );
    let read = streams::read(ask_stream(&gw, "m"), Duration::from_secs(10)).await;
    let errors = read.errors();
    let waited = read
        .first_error()
        .map(|at| at.saturating_sub(read.last_content()));
    rows.push(Row::new(
        "a stream silent mid-way (idle 2 s): one well-formed error event within 3 s of the silence, then a clean end",
        format!(
            "{} content events, {} error event{} {} after the last, {}",
            read.content(),
            errors.len(),
            if errors.len() == 1 { "" } else { "s" },
            waited.map_or_else(|| "never".to_owned(), ms),
            if read.clean_end { "clean end" } else { "no clean end" }
        ),
        read.content() == 3
            && errors == [true]
            && waited.is_some_and(|w| w <= Duration::from_secs(3))
            && read.clean_end,
    ));
    rows
}
