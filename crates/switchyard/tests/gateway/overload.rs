//! Admission control: far more requests than the in-flight limit at once —
//! the accepted ones succeed, the others are shed quickly with 503 and
//! `retry-after`, and no deployment is blamed.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::*;

#[tokio::test]
async fn requests_past_the_limit_are_shed_at_once_and_the_rest_succeed() {
    let mock = mock(&["--latency", "300ms"]);
    let gw = gateway(&config(&mock.url("/v1"), "connect: 1s", "").replace(
        "providers:",
        "admission: { max_in_flight: 10, max_queue: 5, queue_timeout: 100ms }\nproviders:",
    ));
    // The mock answers after 300 ms, so 60 requests sent together
    // find 10 slots, 5 places in the queue (whose wait runs out), and no room.
    let body = chat("hello", json!({}));
    let sent = (0..60).map(|_| async {
        let started = Instant::now();
        let response = post(&gw, "/v1/chat/completions", &body).await;
        (
            response.status().as_u16(),
            response.headers().get("retry-after").cloned(),
            started.elapsed(),
            response.json::<Value>().await.unwrap(),
        )
    });
    let answers = futures_util::future::join_all(sent).await;
    let served = answers.iter().filter(|(status, ..)| *status == 200).count();
    assert!((10..=15).contains(&served), "{served} served");
    for (status, retry_after, took, body) in answers.iter().filter(|(status, ..)| *status != 200) {
        assert_eq!(*status, 503, "{body}");
        assert_eq!(retry_after.as_ref().unwrap(), "1");
        assert_eq!(body["error"]["code"], "overloaded", "{body}");
        // At once, or after the queue's wait: never after the answer would have come.
        assert!(*took < Duration::from_millis(250), "shed after {took:?}");
    }
    let metrics = metrics(&gw).await;
    assert!(
        metrics.contains("switchyard_requests_shed_total{reason=\"queue_full\"}"),
        "{metrics}"
    );
    // Shedding is not the provider's fault: its breaker stays closed, and
    // the next request is served.
    assert!(
        metrics.contains("switchyard_circuit_state{model=\"gpt-4.1\",deployment=\"up/mock-1\"} 0"),
        "{metrics}"
    );
    assert_eq!(post(&gw, "/v1/chat/completions", &body).await.status(), 200);
    assert_eq!(mock_requests(&mock).await, served as u64 + 1);
}
