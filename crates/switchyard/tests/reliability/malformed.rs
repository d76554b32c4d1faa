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
    // The four faults in turn, round after round. The allocator keeps some
    // of what a large event took, for the next, and gives some back: resident
    // memory rises and falls, within a band that a leak would leave.
    let rounds = mode.pick(300, 1000);
    let mut good = [0; 4];
    let mut last = Vec::new();
    // Resident memory after each round.
    let mut resident = Vec::new();
    for _ in 0..rounds {
        last.clear();
        for (n, (_, fault)) in faults.iter().enumerate() {
            set_faults(&upstream, json!({ "stream_fault": fault })).await;
            let read = streams::read(ask_stream(&gw, "m"), Duration::from_secs(10)).await;
            if read.status == 200
                && read.content() == 2
                && read.errors() == [true]
                && read.clean_end
                && !read.done()
            {
                good[n] += 1;
            }
            last.push(read);
        }
        resident.push(gw.rss_kib());
    }
    let mut rows = Vec::new();
    for (n, (what, _)) in faults.iter().enumerate() {
        rows.push(Row::new(
            format!("{what}: the content before it, one well-formed error event, a clean end"),
            format!(
                "{} of {} streams so (the last: {} content events, {} error events)",
                good[n],
                rounds,
                last[n].content(),
                last[n].errors().len()
            ),
            good[n] == rounds,
        ));
    }
    set_faults(&upstream, json!({"stream_fault": {"kind": "none"}})).await;
    let after = load::many(20, 4, |i| ask(&gw, i)).await;
    let served = after.iter().filter(|o| o.ok()).count();
    let peak = resident.iter().copied().max().unwrap_or(before);
    let (first, second) = resident.split_at(resident.len() / 2);
    let peak_of = |half: &[u64]| half.iter().copied().max().unwrap_or(before);
    let (first, second) = (peak_of(first), peak_of(second));
    let levels_off = second <= first + first / 10;
    rows.push(Row::new(
        "no crash, bounded memory: still serving after; resident memory's peak over the second half of the streams within 10 % of the first half's, under 200 MiB",
        format!(
            "{served} of 20 served after; {} MiB before, peaks of {} and {} MiB over two halves of {} malformed streams",
            before / 1024,
            first / 1024,
            second / 1024,
            rounds * 4
        ),
        served == 20 && levels_off && peak <= 200 << 10,
    ));
    rows
}
