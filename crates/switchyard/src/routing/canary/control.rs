//! A canary's state machine, on an explicit clock: the stage it is at, and
//! the moves between states that the controller's judgement and operators make.
//!
//! ```text
//! running(stage i) ──dwell over, bounds held──▶ running(stage i+1) … ──▶ promoted (100 %)
//!     │  ▲                                                                   │
//!     │  └─ resume ── paused (percent frozen) ◀── pause                       │
//!     └──── bounds broken / abort ──▶ rolled_back (0 %) ◀─────── abort ───────┘
//! ```
//!
//! `resume` also restarts a rolled-back canary at the stage it stopped at;
//! `promote` ends any other state at 100 %.

use std::time::Duration;

use tokio::time::Instant;

use crate::config;

/// Where a canary stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Moving through its stages.
    Running,
    /// Held at its stage's percent by an operator.
    Paused,
    /// At 0 %, after its bounds were broken or an operator aborted it.
    RolledBack,
    /// At 100 %, its last stage done or an operator's choice.
    Promoted,
}

impl State {
    /// Its name in the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Paused => "paused",
            Self::RolledBack => "rolled_back",
            Self::Promoted => "promoted",
        }
    }

    /// The state named `name` (as [`State::as_str`] names it).
    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::Running,
            Self::Paused,
            Self::RolledBack,
            Self::Promoted,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }

    /// Its value in `switchyard_canary_state`.
    pub fn value(self) -> u8 {
        match self {
            Self::Running => 0,
            Self::Paused => 1,
            Self::RolledBack => 2,
            Self::Promoted => 3,
        }
    }
}

/// What an operator may ask of a canary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Running → paused.
    Pause,
    /// Paused or rolled back → running, the stage started afresh.
    Resume,
    /// Anything but promoted → promoted.
    Promote,
    /// Anything but rolled back → rolled back.
    Abort,
}

impl Action {
    /// The action named `name` in the admin API's path.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "pause" => Some(Self::Pause),
            "resume" => Some(Self::Resume),
            "promote" => Some(Self::Promote),
            "abort" => Some(Self::Abort),
            _ => None,
        }
    }

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Promote => "promote",
            Self::Abort => "abort",
        }
    }
}

/// The new set's record in the current stage.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Snapshot {
    /// Attempts that said something of the deployment (success or failure).
    pub attempts: u64,
    /// Those that failed.
    pub failures: u64,
    /// The p99 time to first content of the successful ones.
    pub p99: Option<Duration>,
}

impl Snapshot {
    /// Failures / attempts (0 without attempts).
    pub fn error_rate(&self) -> f64 {
        if self.attempts == 0 {
            return 0.0;
        }
        self.failures as f64 / self.attempts as f64
    }
}

/// A bound of the canary that its new set broke.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Breach {
    /// Too many failures.
    ErrorRate {
        /// The stage's error rate.
        rate: f64,
        /// `max_error_rate`.
        max: f64,
    },
    /// Too slow.
    P99 {
        /// The stage's p99.
        p99: Duration,
        /// `max_p99`.
        max: Duration,
    },
}

impl std::fmt::Display for Breach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ErrorRate { rate, max } => {
                write!(f, "error rate {rate:.3} above max_error_rate {max}")
            }
            Self::P99 { p99, max } => write!(f, "p99 {p99:?} above max_p99 {max:?}"),
        }
    }
}

/// What the controller made of a running canary.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// Nothing to do yet.
    Hold,
    /// On to the next stage.
    Advance,
    /// Its last stage done: promoted.
    Promote,
    /// Back to 0 %.
    RollBack(Breach),
}

/// An action the canary's state does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// The action.
    pub action: Action,
    /// The state that refused it.
    pub state: State,
}

/// Why a rolled-back canary is at 0 % when an operator aborted it.
pub const ABORTED: &str = "aborted by operator";

/// A canary's state, its stage, since when, and why it was rolled back.
#[derive(Debug, Clone, PartialEq)]
pub struct Control {
    state: State,
    stage: usize,
    since: Instant,
    reason: Option<String>,
    /// Counts its decisions: rollbacks and operators' actions (see
    /// [`Control::version`]).
    decisions: u64,
    /// Counts its other changes: stages reached, promotions by its controller.
    epoch: u64,
    /// The replica that made the last change: 0 for this one.
    origin: u64,
}

/// A change of a canary's state in the fleet's order: by how many decisions
/// (rollbacks, operators' actions) it follows, then how many other changes,
/// then the replica that made it. A rollback or an operator's action thus
/// outranks any number of stages another replica moved through meanwhile
/// (while Redis was down, say).
pub type Version = (u64, u64, u64);

impl Control {
    /// A canary running its first stage from `now`.
    pub fn new(now: Instant) -> Self {
        Self {
            state: State::Running,
            stage: 0,
            since: now,
            reason: None,
            decisions: 0,
            epoch: 0,
            origin: 0,
        }
    }

    /// Its place among the fleet's changes, this replica's changes made by
    /// `me`.
    pub fn version(&self, me: u64) -> Version {
        let origin = if self.origin == 0 { me } else { self.origin };
        (self.decisions, self.epoch, origin)
    }

    /// Whether it has neither changed nor taken another replica's state since
    /// it began: a replica just started, whose state the fleet's replaces.
    pub fn fresh(&self) -> bool {
        (self.decisions, self.epoch, self.origin) == (0, 0, 0)
    }

    /// Takes another replica's state, made by change `version`, its stage
    /// begun at `since`.
    pub fn adopt(
        &mut self,
        version: Version,
        (state, stage, reason): (State, usize, Option<String>),
        since: Instant,
    ) {
        (self.decisions, self.epoch, self.origin) = version;
        self.state = state;
        self.stage = stage;
        self.reason = reason;
        self.since = since;
    }

    /// Notes a change made here: a decision (a rollback, an operator's
    /// action) or a move through the stages.
    fn changed(&mut self, decision: bool, now: Instant) {
        self.since = now;
        if decision {
            self.decisions += 1;
        } else {
            self.epoch += 1;
        }
        self.origin = 0;
    }

    /// Its state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The index of its stage in `stages` (the last one once promoted).
    pub fn stage(&self) -> usize {
        self.stage
    }

    /// When its stage (or its state, when it is not running) began.
    pub fn since(&self) -> Instant {
        self.since
    }

    /// Why it was rolled back, if it was.
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    /// The percent of requests its new set gets.
    pub fn percent(&self, stages: &[u8]) -> u8 {
        match self.state {
            State::Running | State::Paused => stages.get(self.stage).copied().unwrap_or(100),
            State::RolledBack => 0,
            State::Promoted => 100,
        }
    }

    /// Judges a running canary by its stage's record at `now`: once the stage
    /// has `min_requests` attempts, a broken bound rolls it back; once its
    /// dwell is over too, it moves on (or is promoted after the last stage).
    pub fn judge(&self, config: &config::Canary, stats: &Snapshot, now: Instant) -> Verdict {
        if self.state != State::Running || stats.attempts < u64::from(config.min_requests) {
            return Verdict::Hold;
        }
        let rate = stats.error_rate();
        if rate > config.max_error_rate {
            return Verdict::RollBack(Breach::ErrorRate {
                rate,
                max: config.max_error_rate,
            });
        }
        if let (Some(p99), Some(max)) = (stats.p99, config.max_p99)
            && p99 > max
        {
            return Verdict::RollBack(Breach::P99 { p99, max });
        }
        if now.saturating_duration_since(self.since) < config.dwell {
            return Verdict::Hold;
        }
        if self.stage + 1 >= config.stages.len() {
            Verdict::Promote
        } else {
            Verdict::Advance
        }
    }

    /// Carries out the controller's verdict at `now`.
    pub fn apply(&mut self, verdict: Verdict, now: Instant) {
        match verdict {
            Verdict::Hold => return,
            Verdict::Advance => self.stage += 1,
            Verdict::Promote => self.state = State::Promoted,
            Verdict::RollBack(breach) => {
                self.state = State::RolledBack;
                self.reason = Some(breach.to_string());
            }
        }
        self.changed(matches!(verdict, Verdict::RollBack(_)), now);
    }

    /// Carries out an operator's action at `now`, when the state allows it.
    pub fn act(&mut self, action: Action, stages: &[u8], now: Instant) -> Result<(), Refused> {
        let state = match (action, self.state) {
            (Action::Pause, State::Running) => State::Paused,
            (Action::Resume, State::Paused | State::RolledBack) => State::Running,
            (Action::Promote, State::Running | State::Paused | State::RolledBack) => {
                self.stage = stages.len().saturating_sub(1);
                State::Promoted
            }
            (Action::Abort, State::Running | State::Paused | State::Promoted) => {
                self.reason = Some(ABORTED.to_owned());
                State::RolledBack
            }
            (action, state) => return Err(Refused { action, state }),
        };
        if state != State::RolledBack {
            self.reason = None;
        }
        self.state = state;
        self.changed(true, now);
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
