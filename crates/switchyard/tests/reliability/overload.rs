//! Overload at three times capacity: what cannot be admitted is shed at once
//! (503 with `retry-after`), and what is admitted is served nearly as fast as
//! when the gateway is not loaded.

use std::time::{Duration, Instant};

use crate::Mode;
use crate::fixtures::{ask, gateway_on};
use crate::harness::{Process, mock};
use crate::load::{self, Outcome, ms, percentile};
use crate::table::Row;

/// Requests the gateway admits at once: its capacity here.
const CAPACITY: usize = 50;

/// `clients` closed-loop clients for `duration`, each sending its next
/// request when the last is answered, 50 ms later after a 503.
async fn clients(gw: &Process, clients: usize, duration: Duration) -> Vec<Outcome> {
    let deadline = Instant::now() + duration;
    let each = (0..clients).map(|client| async move {
        let mut outcomes = Vec::new();
        let mut i = 0;
        while Instant::now() < deadline {
            let outcome = load::send(ask(gw, client * 1_000_000 + i)).await;
            i += 1;
            if outcome.status == 503 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            outcomes.push(outcome);
        }
        outcomes
    });
    futures_util::future::join_all(each).await.concat()
}

pub async fn run(mode: Mode) -> Vec<Row> {
    // Answers take 50 ms: the gateway's capacity is 50 in flight, 1,000 a second.
    let upstream = mock(&["--latency", "50ms"]);
    let gw = gateway_on(
        &[("up", &upstream)],
        "",
        &format!("admission: {{ max_in_flight: {CAPACITY}, max_queue: 0 }}\n"),
    );
    let duration = mode.pick(Duration::from_secs(5), Duration::from_secs(10));
    let unloaded = clients(&gw, CAPACITY / 2, duration).await;
    let loaded = clients(&gw, CAPACITY * 3, duration).await;
    let p99 = |outcomes: &[Outcome], status: u16| {
        percentile(
            outcomes
                .iter()
                .filter(|o| o.status == status)
                .map(|o| o.latency),
            99.0,
        )
    };
    let base = p99(&unloaded, 200);
    let accepted = p99(&loaded, 200);
    let shed = p99(&loaded, 503);
    let count = |status: u16| loaded.iter().filter(|o| o.status == status).count();
    let others = loaded.len() - count(200) - count(503);
    vec![
        Row::new(
            "overload at 3× capacity (150 clients, 50 admitted at once): shed answers p99 ≤ 20 ms",
            format!("{} shed with 503, p99 {}", count(503), ms(shed)),
            count(503) > 0 && shed <= Duration::from_millis(20) && others == 0,
        ),
        Row::new(
            "… accepted requests p99 ≤ 2× unloaded",
            format!(
                "{} served, p99 {} against {} unloaded (25 clients){}",
                count(200),
                ms(accepted),
                ms(base),
                if others == 0 {
                    String::new()
                } else {
                    format!("; {others} other answers")
                }
            ),
            accepted <= base * 2 && count(200) > 0,
        ),
    ]
}
