//! Malformed upstream streams — an event that is not JSON, a 2 MiB event, a
//! body that ends without finishing, an in-band overload error — each end with
//! one error event and a clean end; the gateway does not crash, and its memory
//! levels off (the allocator keeps some of what a 1 MiB event took, for the
//! next one, and no more).

use std::time::Duration;

use serde_json::{Value, json};

use crate::Mode;
use crate::fixtures::{ask, ask_stream, gateway_on};
use crate::harness::{mock, set_faults};
use crate::load;
use crate::streams;
use crate::table::Row;

pub async fn run(mode: Mode) -> Vec<Row> {
    let upstream = mock(&[]);
    let gw = gateway_on(&[("up", &upstream)], "", "");
    // Warm: the memory the gateway holds serving plain streams.
    for _ in 0..20 {
        streams::read(ask_stream(&gw, "m"), Duration::from_secs(10)).await;
    }
    let before = gw.rss_kib();
    let faults: [(&str, Value); 4] = [
        (
            "an event that is not JSON",
            json!({"kind": "bad_json", "after": 2}),
        ),
        (
            "a 2 MiB event (past the 1 MiB limit of an event)",
            json!({"kind": "huge_event", "after": 2, "bytes": 2 << 20}),
        ),
        (
            "a body that ends without finishing",
            json!({"kind": "no_terminator", "after": 2}),
        ),
        (
            "an in-band overload error",
            json!({"kind": "in_band_error", "after": 2}),
        ),
    ];
    let rounds = mode.pick(100, 300);
    let mut rows = Vec::new();
    // Resident memory after each stream.
    let mut resident = Vec::new();
    for (what, fault) in faults {
        set_faults(&upstream, json!({ "stream_fault": fault })).await;
        let mut good = 0;
        let mut last = None;
        for _ in 0..rounds {
            let read = streams::read(ask_stream(&gw, "m"), Duration::from_secs(10)).await;
            if read.status == 200
                && read.content() == 2
                && read.errors() == [true]
                && read.clean_end
                && !read.done()
            {
                good += 1;
            }
            last = Some(read);
            resident.push(gw.rss_kib());
        }
        let last = last.expect("a round");
        rows.push(Row::new(
            format!("{what}: the content before it, one well-formed error event, a clean end"),
            format!(
                "{good} of {rounds} streams so (the last: {} content events, {} error events)",
                last.content(),
                last.errors().len()
            ),
            good == rounds,
        ));
    }
    set_faults(&upstream, json!({"stream_fault": {"kind": "none"}})).await;
    let after = load::many(20, 4, |i| ask(&gw, i)).await;
    let served = after.iter().filter(|o| o.ok()).count();
    let peak = resident.iter().copied().max().unwrap_or(before);
    let (middle, end) = (resident[resident.len() / 2], resident[resident.len() - 1]);
    let levels_off = end <= middle + (middle / 50).max(2 << 10);
    rows.push(Row::new(
        "no crash, bounded memory: still serving after; resident memory levels off (≤ 2 % more over the second half of the streams) under 200 MiB",
        format!(
            "{served} of 20 served after; {} MiB warm, {} MiB halfway, {} MiB at the end of {} malformed streams, peak {} MiB",
            before / 1024,
            middle / 1024,
            end / 1024,
            resident.len(),
            peak / 1024
        ),
        served == 20 && levels_off && peak <= 200 << 10,
    ));
    rows
}
