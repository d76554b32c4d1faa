//! A stream cut after k content events (k = 0, 1, 5, 50): cut before any
//! content, the attempt fails over and the client never sees it; cut later,
//! the client gets exactly the k events, one error event and a clean end, and
//! the request's usage record says the stream was cut.

use std::time::Duration;

use serde_json::json;

use crate::Mode;
use crate::fixtures::{ask_stream, fallback_gateway, newest_error_type};
use crate::harness::{mock, set_faults};
use crate::streams;
use crate::table::Row;

pub async fn run(_mode: Mode) -> Vec<Row> {
    let mut rows = Vec::new();
    for k in [0, 1, 5, 50] {
        let cutting = mock(&["--completion-tokens", "64"]);
        set_faults(
            &cutting,
            json!({"stream_fault": {"kind": "cut_after", "after": k}}),
        )
        .await;
        let fallback = mock(&["--completion-tokens", "64"]);
        let gw = fallback_gateway(&cutting, &fallback, "connect: 1s, first_byte: 5s");
        let read = streams::read(ask_stream(&gw, "m"), Duration::from_secs(10)).await;
        let errors = read.errors();
        if k == 0 {
            rows.push(Row::new(
                "cut before its first content (k = 0): served whole by the fallback, the cut unseen",
                format!(
                    "{}, {} content events, {}, {} error events",
                    read.status,
                    read.content(),
                    if read.done() { "[DONE]" } else { "no [DONE]" },
                    errors.len()
                ),
                read.status == 200
                    && read.content() > 50
                    && read.done()
                    && errors.is_empty()
                    && read.clean_end,
            ));
            continue;
        }
        let error_type = newest_error_type(&gw).await;
        rows.push(Row::new(
            format!(
                "cut after {k} content event{}: exactly {k}, one error event, a clean end, a usage record marked `stream_cut`",
                if k == 1 { "" } else { "s" }
            ),
            format!(
                "{} content events, {} error event{} (well formed: {}), {}, record: {error_type}",
                read.content(),
                errors.len(),
                if errors.len() == 1 { "" } else { "s" },
                errors.iter().all(|ok| *ok),
                if read.clean_end { "clean end" } else { "no clean end" }
            ),
            read.content() == k
                && errors == [true]
                && read.clean_end
                && !read.done()
                && error_type == "stream_cut",
        ));
    }
    rows
}
