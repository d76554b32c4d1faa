//! Admission control: far more requests than the in-flight limit at once —
//! the accepted ones succeed, the others are shed quickly with 503 and
//! `retry-after`, and no deployment is blamed.

use std::sync::atomic::{AtomicBool, Ordering};
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

/// One request on a connection of its own: its status, `retry-after` and
/// time, or `None` when the gateway closed the connection unanswered.
///
/// The time runs from the moment the connection is up. Before that, a burst
/// of connections can overflow the listen backlog, and the kernel drops a
/// SYN the client's TCP sends again a second later: that wait is the
/// kernel's, not the gateway's.
async fn one_request(gw: &Process, body: &Value) -> Option<(u16, Option<String>, Duration, Value)> {
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(gw.addr).await.ok()?;
        let started = Instant::now();
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .ok()?;
        tokio::spawn(connection);
        let request = axum::http::Request::post("/v1/chat/completions")
            .header("host", gw.addr.to_string())
            .header("authorization", format!("Bearer {CLIENT_KEY}"))
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(
                serde_json::to_vec(body).unwrap(),
            )))
            .unwrap();
        let response = sender.send_request(request).await.ok()?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let took = started.elapsed();
        let bytes = http_body_util::BodyExt::collect(response.into_body())
            .await
            .ok()?
            .to_bytes();
        Some((
            status,
            retry_after,
            took,
            serde_json::from_slice(&bytes).ok()?,
        ))
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .ok()
        .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spike_past_the_descriptor_limit_is_shed_and_blames_no_provider() {
    let mock = mock(&["--latency", "400ms"]);
    // 256 descriptors: 48 requests in flight and 144 connections, sized.
    let gw = gateway_with_descriptors(
        &config(&mock.url("/v1"), "connect: 1s", "")
            .replace("providers:", "admission: { max_queue: 0 }\nproviders:"),
        256,
    );
    gw.wait_for_log(&[
        "admission limits",
        "max_in_flight=48",
        "max_connections=144",
    ]);
    let body = chat("hello", json!({}));
    // Every request on a new connection: 300 at once, three times over, far
    // past both limits.
    let (mut served, mut shed, mut closed) = (0, 0, 0);
    for _ in 0..3 {
        let round = (0..300).map(|_| one_request(&gw, &body));
        let answers = futures_util::future::join_all(round).await;
        for answer in answers {
            let Some((status, retry_after, took, body)) = answer else {
                closed += 1;
                continue;
            };
            if status == 200 {
                served += 1;
                assert!(
                    body["choices"][0]["message"]["content"].is_string(),
                    "{body}"
                );
                continue;
            }
            shed += 1;
            assert_eq!(status, 503, "{body}");
            assert_eq!(body["error"]["code"], "overloaded", "{body}");
            assert_eq!(retry_after.as_deref(), Some("1"));
            assert!(took < Duration::from_millis(300), "shed after {took:?}");
        }
    }
    assert!(
        served >= 3 * 40,
        "{served} served, {shed} shed, {closed} closed"
    );
    assert!(shed + closed > 0, "nothing was shed");
    let logs = gw.logs();
    assert!(!logs.contains("Too many open files"), "{logs}");
    assert!(!logs.contains("circuit breaker opened"), "{logs}");
    // No breaker opened: the next request is served at once.
    let after = post(&gw, "/v1/chat/completions", &body).await;
    assert_eq!(after.status(), 200);
    let metrics = metrics(&gw).await;
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("switchyard_circuit_state{"))
    {
        assert!(line.ends_with(" 0"), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_a_spike_took_is_given_back() {
    // Up to a thousand slow requests at once: a connection each here, in
    // the gateway two (client and upstream), one in the mock; as many as
    // the hard descriptor limit allows.
    let descriptors = rlimit::increase_nofile_limit(8192).unwrap();
    let spike = usize::try_from(descriptors.saturating_sub(200) / 3)
        .unwrap()
        .min(1000);
    assert!(
        spike >= 200,
        "a hard descriptor limit of {descriptors} is too low for this test"
    );
    let mock = mock(&["--latency", "1s"]);
    let gw = gateway(
        &config(&mock.url("/v1"), "connect: 1s", "  max_connections: 4000")
            .replace(
                "providers:",
                "admission: { max_in_flight: 4000 }\nproviders:",
            )
            .replace(
                "    timeouts:",
                "    pool: { idle_timeout: 1s }\n    timeouts:",
            ),
    );
    let body = chat("hello", json!({}));
    // Warmed up first (thread stacks, state built on first use), then measured.
    let warm_up = (0..20).map(|_| post(&gw, "/v1/chat/completions", &body));
    futures_util::future::join_all(warm_up).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let idle = gw.rss_kib();
    let sent = (0..spike).map(|_| one_request(&gw, &body));
    let done = AtomicBool::new(false);
    let mut peak = idle;
    let sample = async {
        while !done.load(Ordering::Relaxed) {
            peak = peak.max(gw.rss_kib());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let answers = async {
        let answers = futures_util::future::join_all(sent).await;
        done.store(true, Ordering::Relaxed);
        answers
    };
    let ((), answers) = tokio::join!(sample, answers);
    let served = answers
        .iter()
        .filter(|a| a.as_ref().is_some_and(|(status, ..)| *status == 200))
        .count();
    assert_eq!(served, spike);
    let grown = u64::try_from(spike).unwrap() * 20;
    assert!(peak > idle + grown, "idle {idle} KiB, peak {peak} KiB");
    // Back to within a fifth of the spike's growth, a few seconds later.
    let back = |rss: u64| rss < idle + (peak - idle) / 5;
    let mut rss = gw.rss_kib();
    for _ in 0..60 {
        if back(rss) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        rss = gw.rss_kib();
    }
    assert!(
        back(rss),
        "idle {idle} KiB, peak {peak} KiB, after 6 s {rss} KiB"
    );
}
