//! Spend alerts: when a key's or team's spend in a budget period crosses a
//! threshold of its budget (80 % and 95 % by default), one JSON message to a
//! webhook — Slack's incoming-webhook shape (`text`) with the figures beside
//! it — once per key or team, period and threshold, however many replicas
//! see it: the first to claim it in the store sends it.
//!
//! The spend writer ([`crate::limits::spend`]) hands each total it reads back
//! from the store to [`Alerts::spent`]; a claimed alert is sent on a task of
//! its own, tried again with a doubling backoff (1 s, 2 s, 4 s, …) up to
//! `alerts.retries` times. None is lost: an alert that could not be sent after
//! all its tries is given back in the store (and forgotten here), so the next
//! total past its threshold, on any replica or after a restart, claims and
//! sends it again; at shutdown ([`Alerts::stop`]) the sends under way get one
//! more `alerts.timeout` to finish, and those that do not are given back too.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use switchyard_store::{SpendScope, Store};
use tokio_util::task::TaskTracker;

use crate::config;
use crate::keys::admin::views::{rfc3339, usd};

/// An alert: whose, the period's start, and the threshold.
type Alert = (SpendScope, Arc<str>, i64, u8);

/// The first wait before an alert is sent again.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// The webhook, the thresholds, and the alerts this process has settled.
pub struct Alerts {
    config: config::Alerts,
    client: reqwest::Client,
    store: Arc<dyn Store>,
    /// Alerts claimed (or found claimed) here: not asked of the store again.
    settled: Mutex<HashSet<Alert>>,
    /// Alerts claimed here and not sent yet.
    unsent: Mutex<HashSet<Alert>>,
    /// The sends under way.
    sends: TaskTracker,
}

impl Alerts {
    /// Alerts as `config` says, claimed in `store`.
    pub fn new(config: &config::Alerts, store: Arc<dyn Store>) -> Arc<Self> {
        let client = reqwest::Client::builder()
            .connect_timeout(config.timeout)
            .build()
            .unwrap_or_default();
        Arc::new(Self {
            config: config.clone(),
            client,
            store,
            settled: Mutex::default(),
            unsent: Mutex::default(),
            sends: TaskTracker::new(),
        })
    }

    /// At shutdown: waits one `alerts.timeout` for the sends under way, then
    /// gives back in the store every alert still unsent.
    pub async fn stop(&self) {
        self.sends.close();
        let _ = tokio::time::timeout(self.config.timeout, self.sends.wait()).await;
        let unsent: Vec<Alert> = self
            .unsent
            .lock()
            .map(|mut set| set.drain().collect())
            .unwrap_or_default();
        for alert in unsent {
            tracing::warn!(
                scope = alert.0.as_str(),
                id = %alert.1,
                threshold_pct = alert.3,
                "a spend alert was not sent before shutdown; it is given back to be sent again"
            );
            self.give_back(&alert).await;
        }
    }

    /// Gives `alert` back in the store, to be claimed and sent again.
    async fn give_back(&self, alert: &Alert) {
        let (scope, id, period_start, pct) = alert;
        if let Err(e) = self
            .store
            .release_alert(*scope, id, *period_start, *pct)
            .await
        {
            tracing::error!(error = %e, "an unsent spend alert could not be given back; it is lost");
        }
        self.unsettle(alert);
    }

    /// Notes that `id` of `scope` has spent `total` micro-USD of its `limit`
    /// in the period starting `period_start`: each threshold crossed is
    /// claimed in the store, and sent when this call claimed it.
    pub async fn spent(
        self: &Arc<Self>,
        scope: SpendScope,
        id: &Arc<str>,
        period_start: i64,
        limit: i64,
        total: i64,
    ) {
        if limit <= 0 {
            return;
        }
        for &pct in &self.config.thresholds {
            if i128::from(total) * 100 < i128::from(limit) * i128::from(pct) {
                continue;
            }
            let settled = (scope, id.clone(), period_start, pct);
            if !self.settle(settled) {
                continue;
            }
            match self.store.claim_alert(scope, id, period_start, pct).await {
                Ok(true) => {
                    let alert = (scope, id.clone(), period_start, pct);
                    if let Ok(mut unsent) = self.unsent.lock() {
                        unsent.insert(alert.clone());
                    }
                    let message = message(scope, id, period_start, pct, total, limit);
                    let alerts = self.clone();
                    self.sends.spawn(async move {
                        let sent = send(&alerts.client, &alerts.config, &message).await;
                        let still_unsent = alerts
                            .unsent
                            .lock()
                            .is_ok_and(|mut unsent| unsent.remove(&alert));
                        if !sent && still_unsent {
                            alerts.give_back(&alert).await;
                        }
                    });
                }
                Ok(false) => {}
                Err(e) => {
                    // Not settled after all: asked again at the next total.
                    self.unsettle(&(scope, id.clone(), period_start, pct));
                    tracing::warn!(error = %e, "a spend alert could not be claimed in the store");
                }
            }
        }
    }

    /// Marks an alert settled here; `false` when it already was.
    fn settle(&self, alert: Alert) -> bool {
        self.settled
            .lock()
            .map(|mut set| set.insert(alert))
            .unwrap_or(false)
    }

    fn unsettle(&self, alert: &Alert) {
        if let Ok(mut set) = self.settled.lock() {
            set.remove(alert);
        }
    }
}

impl std::fmt::Debug for Alerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alerts")
            .field("config", &self.config)
            .field("sends", &self.sends)
            .finish_non_exhaustive()
    }
}

/// The webhook's message.
fn message(
    scope: SpendScope,
    id: &str,
    period_start: i64,
    pct: u8,
    total: i64,
    limit: i64,
) -> serde_json::Value {
    let (spent, budget) = (usd(total), usd(limit));
    let period = rfc3339(period_start);
    json!({
        "text": format!(
            "Switchyard budget alert: {} {id} has spent ${spent:.2} of its ${budget:.2} budget \
             ({:.0} %, past the {pct} % threshold) in the period from {period}.",
            scope.as_str(),
            total as f64 * 100.0 / limit as f64,
        ),
        "alert": "budget_threshold",
        "scope": scope.as_str(),
        "id": id,
        "threshold_pct": pct,
        "spent_usd": spent,
        "budget_usd": budget,
        "period_start": period,
    })
}

/// Posts `message` to the webhook, each post bounded by `alerts.timeout`,
/// tried again after 1 s, 2 s, 4 s, … up to `alerts.retries` more times while
/// it fails (no answer, or a status other than 2xx). Answers whether it was sent.
async fn send(
    client: &reqwest::Client,
    config: &config::Alerts,
    message: &serde_json::Value,
) -> bool {
    let mut backoff = FIRST_BACKOFF;
    let retries = config.retries;
    for attempt in 0..=retries {
        let post = client.post(&config.webhook_url).json(message).send();
        let failure = match tokio::time::timeout(config.timeout, post).await {
            Ok(Ok(response)) if response.status().is_success() => return true,
            Ok(Ok(response)) => format!("status {}", response.status()),
            Ok(Err(e)) => e.without_url().to_string(),
            Err(_) => format!("no answer within {:?}", config.timeout),
        };
        if attempt == retries {
            tracing::error!(
                failure,
                attempts = attempt + 1,
                "a spend alert could not be sent; it is given back to be sent again"
            );
            return false;
        }
        tracing::warn!(failure, "a spend alert could not be sent; trying again");
        tokio::time::sleep(backoff).await;
        backoff = backoff.saturating_mul(2);
    }
    false
}
