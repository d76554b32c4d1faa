use std::time::Duration;

use tokio::time::Instant;

use super::*;

const NEW: u64 = 0b10;
const OLD: u64 = 0b01;

fn canary(metrics: &Metrics) -> Canary {
    let config = config::Canary {
        tier: "next".to_owned(),
        stages: vec![30, 100],
        dwell: Duration::from_secs(60),
        min_requests: 10,
        max_error_rate: 0.1,
        max_p99: None,
    };
    Canary::new("m", &config, [NEW, OLD], metrics)
}

#[test]
fn the_share_of_requests_on_the_new_set_follows_the_percent() {
    let metrics = Metrics::new();
    let canary = canary(&metrics);
    let on_new = (0..10_000).filter(|_| canary.held_back() == OLD).count();
    assert!((2_700..3_300).contains(&on_new), "{on_new}");
    canary.act(Action::Abort, Instant::now()).unwrap();
    assert!((0..100).all(|_| canary.held_back() == NEW));
    canary.act(Action::Promote, Instant::now()).unwrap();
    assert!((0..100).all(|_| canary.held_back() == OLD));
}

#[test]
fn failures_of_the_new_set_roll_it_back_and_show_in_the_metrics() {
    let metrics = Metrics::new();
    let canary = canary(&metrics);
    let t0 = Instant::now();
    for _ in 0..8 {
        canary.success(Duration::from_millis(20));
    }
    canary.failure();
    canary.judge(t0);
    assert_eq!(canary.status(t0)["state"], "running");
    canary.failure();
    canary.judge(t0 + Duration::from_secs(1));
    let status = canary.status(t0 + Duration::from_secs(1));
    assert_eq!(status["state"], "rolled_back");
    assert_eq!(
        (status["stage"].as_u64(), status["percent"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(
        (status["attempts"].as_u64(), status["failures"].as_u64()),
        (Some(10), Some(2))
    );
    assert_eq!(
        status["reason"],
        "error rate 0.200 above max_error_rate 0.1"
    );
    assert!(status["p99_ms"].as_f64().unwrap() > 20.0);
    assert_eq!(canary.held_back(), NEW);
    canary.export();
    let text = metrics.render();
    for line in [
        r#"switchyard_canary_percent{model="m"} 0"#,
        r#"switchyard_canary_state{model="m"} 2"#,
        r#"switchyard_canary_rollbacks_total{model="m"} 1"#,
    ] {
        assert!(text.contains(line), "{line} in {text}");
    }
}

#[test]
fn a_stage_that_holds_moves_on_with_fresh_statistics() {
    let metrics = Metrics::new();
    let canary = canary(&metrics);
    let t0 = Instant::now();
    for _ in 0..10 {
        canary.success(Duration::from_millis(5));
    }
    canary.judge(t0 + Duration::from_secs(60));
    let status = canary.status(t0 + Duration::from_secs(60));
    assert_eq!(
        (status["stage"].as_u64(), status["percent"].as_u64()),
        (Some(1), Some(100))
    );
    assert_eq!(status["attempts"], 0);
    assert_eq!(status["p99_ms"], serde_json::Value::Null);
    assert_eq!(canary.held_back(), OLD);
}

#[test]
fn an_action_the_state_refuses_is_a_conflict() {
    let metrics = Metrics::new();
    let canary = canary(&metrics);
    let refused = canary.act(Action::Resume, Instant::now()).unwrap_err();
    assert_eq!(refused.status(), StatusCode::CONFLICT);
    assert_eq!(
        refused.to_string(),
        "cannot resume the canary of `m`: it is running"
    );
    let paused = canary.act(Action::Pause, Instant::now()).unwrap();
    assert_eq!(
        (paused["state"].as_str(), paused["percent"].as_u64()),
        (Some("paused"), Some(30))
    );
}

#[test]
fn the_controller_ticks_twenty_times_per_dwell_within_bounds() {
    let metrics = Metrics::new();
    let mut canary = canary(&metrics);
    assert_eq!(canary.tick(), MAX_TICK);
    canary.config.dwell = Duration::from_millis(300);
    assert_eq!(canary.tick(), Duration::from_millis(15));
    canary.config.dwell = Duration::from_millis(20);
    assert_eq!(canary.tick(), MIN_TICK);
    assert_eq!(mask([true, false, true].into_iter()), 0b101);
}
