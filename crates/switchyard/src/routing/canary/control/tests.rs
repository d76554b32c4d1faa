use std::time::Duration;

use tokio::time::Instant;

use super::*;

fn config() -> config::Canary {
    config::Canary {
        tier: "next".to_owned(),
        stages: vec![5, 50, 100],
        dwell: Duration::from_secs(60),
        min_requests: 20,
        max_error_rate: 0.05,
        max_p99: Some(Duration::from_secs(2)),
    }
}

fn record(attempts: u64, failures: u64, p99_ms: u64) -> Snapshot {
    Snapshot {
        attempts,
        failures,
        p99: Some(Duration::from_millis(p99_ms)),
    }
}

const STAGES: [u8; 3] = [5, 50, 100];

#[test]
fn a_healthy_canary_moves_through_its_stages_then_is_promoted() {
    let (config, t0) = (config(), Instant::now());
    let mut control = Control::new(t0);
    assert_eq!(control.percent(&STAGES), 5);
    let healthy = record(20, 1, 300);
    // Before its dwell is over, a stage holds.
    let early = t0 + Duration::from_secs(59);
    assert_eq!(control.judge(&config, &healthy, early), Verdict::Hold);
    // Past it, the stage needs its `min_requests` too.
    let late = t0 + Duration::from_secs(60);
    assert_eq!(
        control.judge(&config, &record(19, 0, 300), late),
        Verdict::Hold
    );
    assert_eq!(control.judge(&config, &healthy, late), Verdict::Advance);
    control.apply(Verdict::Advance, late);
    assert_eq!((control.stage(), control.percent(&STAGES)), (1, 50));
    assert_eq!(control.since(), late);
    // The dwell counts from the stage's start.
    let t2 = late + Duration::from_secs(30);
    assert_eq!(control.judge(&config, &healthy, t2), Verdict::Hold);
    let t2 = late + Duration::from_secs(60);
    control.apply(control.judge(&config, &healthy, t2), t2);
    assert_eq!((control.stage(), control.percent(&STAGES)), (2, 100));
    assert_eq!(control.state(), State::Running);
    let t3 = t2 + Duration::from_secs(60);
    assert_eq!(control.judge(&config, &healthy, t3), Verdict::Promote);
    control.apply(Verdict::Promote, t3);
    assert_eq!(control.state(), State::Promoted);
    assert_eq!(control.percent(&STAGES), 100);
    // A promoted canary is not judged any more.
    let failing = record(100, 100, 300);
    assert_eq!(control.judge(&config, &failing, t3), Verdict::Hold);
}

#[test]
fn a_broken_bound_rolls_back_at_once_once_the_stage_has_enough_attempts() {
    let (config, t0) = (config(), Instant::now());
    let mut control = Control::new(t0);
    let t1 = t0 + Duration::from_secs(1);
    // Too few attempts to judge, however bad they are.
    assert_eq!(
        control.judge(&config, &record(19, 19, 300), t1),
        Verdict::Hold
    );
    // The bound itself holds: 1 of 20 is 0.05.
    assert_eq!(
        control.judge(&config, &record(20, 1, 300), t1),
        Verdict::Hold
    );
    let verdict = control.judge(&config, &record(20, 2, 300), t1);
    let Verdict::RollBack(breach) = verdict else {
        panic!("{verdict:?}");
    };
    assert_eq!(
        breach,
        Breach::ErrorRate {
            rate: 0.1,
            max: 0.05
        }
    );
    control.apply(verdict, t1);
    assert_eq!(control.state(), State::RolledBack);
    assert_eq!((control.stage(), control.percent(&STAGES)), (0, 0));
    assert_eq!(
        control.reason(),
        Some("error rate 0.100 above max_error_rate 0.05")
    );
    // It stays there: the controller leaves it alone.
    let healthy = record(100, 0, 300);
    let later = t1 + Duration::from_secs(600);
    assert_eq!(control.judge(&config, &healthy, later), Verdict::Hold);
}

#[test]
fn a_slow_new_set_rolls_back_on_its_p99() {
    let (config, t0) = (config(), Instant::now());
    let control = Control::new(t0);
    let verdict = control.judge(&config, &record(20, 0, 2500), t0);
    assert_eq!(
        verdict,
        Verdict::RollBack(Breach::P99 {
            p99: Duration::from_millis(2500),
            max: Duration::from_secs(2),
        })
    );
    let unbounded = config::Canary {
        max_p99: None,
        ..config
    };
    assert_eq!(
        control.judge(&unbounded, &record(20, 0, 2500), t0),
        Verdict::Hold
    );
}

#[test]
fn operators_pause_resume_promote_and_abort() {
    let (config, t0) = (config(), Instant::now());
    let mut control = Control::new(t0);
    let refused = |action, state| Err(Refused { action, state });
    assert_eq!(
        control.act(Action::Resume, &STAGES, t0),
        refused(Action::Resume, State::Running)
    );
    control.act(Action::Pause, &STAGES, t0).unwrap();
    assert_eq!(control.state(), State::Paused);
    assert_eq!(control.percent(&STAGES), 5);
    // A paused canary is not judged: its percent stays.
    let late = t0 + Duration::from_secs(600);
    assert_eq!(
        control.judge(&config, &record(20, 0, 1), late),
        Verdict::Hold
    );
    assert_eq!(
        control.act(Action::Pause, &STAGES, t0),
        refused(Action::Pause, State::Paused)
    );
    // Resume starts the stage's dwell afresh.
    control.act(Action::Resume, &STAGES, late).unwrap();
    assert_eq!((control.state(), control.since()), (State::Running, late));
    let almost = late + Duration::from_secs(59);
    assert_eq!(
        control.judge(&config, &record(20, 0, 1), almost),
        Verdict::Hold
    );

    control.act(Action::Abort, &STAGES, late).unwrap();
    assert_eq!(control.state(), State::RolledBack);
    assert_eq!(control.reason(), Some(ABORTED));
    assert_eq!(control.percent(&STAGES), 0);
    assert_eq!(
        control.act(Action::Abort, &STAGES, late),
        refused(Action::Abort, State::RolledBack)
    );
    // A rolled-back canary resumes at the stage it stopped at.
    control.act(Action::Resume, &STAGES, late).unwrap();
    assert_eq!((control.state(), control.stage()), (State::Running, 0));
    assert_eq!(control.reason(), None);

    control.act(Action::Promote, &STAGES, late).unwrap();
    assert_eq!(control.state(), State::Promoted);
    assert_eq!((control.stage(), control.percent(&STAGES)), (2, 100));
    assert_eq!(
        control.act(Action::Promote, &STAGES, late),
        refused(Action::Promote, State::Promoted)
    );
    assert_eq!(
        control.act(Action::Resume, &STAGES, late),
        refused(Action::Resume, State::Promoted)
    );
    // Even a promoted canary can be taken back.
    control.act(Action::Abort, &STAGES, late).unwrap();
    assert_eq!(control.percent(&STAGES), 0);
}

#[test]
fn actions_and_states_have_their_names() {
    for action in [
        Action::Pause,
        Action::Resume,
        Action::Promote,
        Action::Abort,
    ] {
        assert_eq!(Action::parse(action.as_str()), Some(action));
    }
    assert_eq!(Action::parse("restart"), None);
    let values: Vec<(&str, u8)> = [
        State::Running,
        State::Paused,
        State::RolledBack,
        State::Promoted,
    ]
    .iter()
    .map(|s| (s.as_str(), s.value()))
    .collect();
    assert_eq!(
        values,
        [
            ("running", 0),
            ("paused", 1),
            ("rolled_back", 2),
            ("promoted", 3)
        ]
    );
}
