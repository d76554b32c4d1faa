//! Metrics the gateway keeps itself, for what every request records: a
//! histogram of fixed buckets, and a counter of millionths.
//!
//! Recording into a [`DurationHistogram`] is one atomic addition to its
//! bucket and one to its sum: no clock read and no buffer of samples that
//! grows until the next scrape, as the exporter's histograms have. A
//! [`MicroCounter`] adds whole millionths and renders them as an exact
//! decimal (the exporter's counters are whole numbers). Both are registered
//! once, like the exporter's handles, and rendered after its families.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use metrics_exporter_prometheus::formatting::{sanitize_description, sanitize_label_value};

/// A histogram of durations, in seconds, over fixed buckets.
#[derive(Clone)]
pub struct DurationHistogram(Arc<Cells>);

/// The buckets and sum of one histogram series.
struct Cells {
    /// Upper bounds, in seconds, ascending.
    bounds: &'static [f64],
    /// Per bucket (not cumulative), then the `+Inf` one.
    counts: Box<[AtomicU64]>,
    /// The sum of the values, in seconds: an `f64`'s bits.
    sum: AtomicU64,
}

impl std::fmt::Debug for DurationHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurationHistogram").finish_non_exhaustive()
    }
}

impl DurationHistogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self(Arc::new(Cells {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0f64.to_bits()),
        }))
    }

    /// Counts `value` in its bucket and adds it to the sum.
    pub fn record(&self, value: Duration) {
        let cells = &*self.0;
        let seconds = value.as_secs_f64();
        let bucket = cells.bounds.partition_point(|&bound| bound < seconds);
        if let Some(count) = cells.counts.get(bucket) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        let mut current = cells.sum.load(Ordering::Relaxed);
        loop {
            let sum = (f64::from_bits(current) + seconds).to_bits();
            match cells.sum.compare_exchange_weak(
                current,
                sum,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(seen) => current = seen,
            }
        }
    }
}

/// A counter of millionths of a unit, rendered exactly as a decimal of units
/// (`switchyard_cost_usd_total` counts micro-dollars).
#[derive(Clone, Default)]
pub struct MicroCounter(Arc<AtomicU64>);

impl std::fmt::Debug for MicroCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("MicroCounter")
            .field(&self.millionths())
            .finish()
    }
}

impl MicroCounter {
    /// Adds `millionths` of a unit.
    pub fn add(&self, millionths: u64) {
        self.0.fetch_add(millionths, Ordering::Relaxed);
    }

    /// The count so far, in millionths.
    fn millionths(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The families of fixed metrics, by name; their series by rendered labels.
#[derive(Default)]
pub(super) struct Fixed {
    families: Mutex<Families>,
}

#[derive(Default)]
struct Families {
    histograms: BTreeMap<&'static str, BTreeMap<String, DurationHistogram>>,
    counters: BTreeMap<&'static str, BTreeMap<String, MicroCounter>>,
    help: BTreeMap<&'static str, &'static str>,
}

impl Fixed {
    fn families(&self) -> std::sync::MutexGuard<'_, Families> {
        self.families.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The histogram `name` with `labels` over `bounds` (seconds,
    /// ascending), made on first use (later bounds are ignored).
    pub(super) fn histogram(
        &self,
        name: &'static str,
        labels: &[(&'static str, &str)],
        bounds: &'static [f64],
    ) -> DurationHistogram {
        self.families()
            .histograms
            .entry(name)
            .or_default()
            .entry(label_text(labels))
            .or_insert_with(|| DurationHistogram::new(bounds))
            .clone()
    }

    /// The counter of millionths `name` with `labels`, made on first use.
    pub(super) fn micro_counter(
        &self,
        name: &'static str,
        labels: &[(&'static str, &str)],
    ) -> MicroCounter {
        self.families()
            .counters
            .entry(name)
            .or_default()
            .entry(label_text(labels))
            .or_default()
            .clone()
    }

    /// Gives `name` its `# HELP` line, should it be one of these families.
    pub(super) fn describe(&self, name: &'static str, help: &'static str) {
        self.families().help.insert(name, help);
    }

    /// Appends every family, in the Prometheus text format, to `out`.
    pub(super) fn render(&self, out: &mut String) {
        let families = self.families();
        for (name, series) in &families.counters {
            header(out, name, families.help.get(name), "counter");
            for (labels, counter) in series {
                let millionths = counter.millionths();
                let _ = writeln!(
                    out,
                    "{name}{} {}.{:06}",
                    braced(labels, ""),
                    millionths / 1_000_000,
                    millionths % 1_000_000
                );
            }
            out.push('\n');
        }
        for (name, series) in &families.histograms {
            header(out, name, families.help.get(name), "histogram");
            for (labels, histogram) in series {
                render_histogram(out, name, labels, histogram);
            }
            out.push('\n');
        }
    }
}

/// `# HELP` (when known) and `# TYPE` of a family.
fn header(out: &mut String, name: &str, help: Option<&&'static str>, kind: &str) {
    if let Some(help) = help {
        let _ = writeln!(out, "# HELP {name} {}", sanitize_description(help));
    }
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The `_bucket` lines (cumulative), `_sum` and `_count` of one series.
fn render_histogram(out: &mut String, name: &str, labels: &str, histogram: &DurationHistogram) {
    let cells = &*histogram.0;
    let mut total = 0;
    for (i, count) in cells.counts.iter().enumerate() {
        total += count.load(Ordering::Relaxed);
        let le = match cells.bounds.get(i) {
            Some(bound) => bound.to_string(),
            None => "+Inf".to_owned(),
        };
        let _ = writeln!(
            out,
            "{name}_bucket{} {total}",
            braced(labels, &format!("le=\"{le}\""))
        );
    }
    let sum = f64::from_bits(cells.sum.load(Ordering::Relaxed));
    let _ = writeln!(out, "{name}_sum{} {sum}", braced(labels, ""));
    let _ = writeln!(out, "{name}_count{} {total}", braced(labels, ""));
}

/// `{labels,extra}`, or nothing when both are empty.
fn braced(labels: &str, extra: &str) -> String {
    match (labels.is_empty(), extra.is_empty()) {
        (true, true) => String::new(),
        (false, true) => format!("{{{labels}}}"),
        (true, false) => format!("{{{extra}}}"),
        (false, false) => format!("{{{labels},{extra}}}"),
    }
}

/// `key="value",…`, each value escaped.
fn label_text(labels: &[(&'static str, &str)]) -> String {
    let mut text = String::new();
    for (key, value) in labels {
        if !text.is_empty() {
            text.push(',');
        }
        let _ = write!(text, "{key}=\"{}\"", sanitize_label_value(value));
    }
    text
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const BOUNDS: [f64; 3] = [0.01, 0.1, 1.0];

    fn rendered(fixed: &Fixed) -> String {
        let mut out = String::new();
        fixed.render(&mut out);
        out
    }

    #[test]
    fn a_histogram_counts_each_value_in_the_first_bucket_that_holds_it() {
        let fixed = Fixed::default();
        fixed.describe("t_seconds", "Times.");
        let h = fixed.histogram("t_seconds", &[("model", "m\"1")], &BOUNDS);
        for ms in [5, 10, 11, 100, 2000] {
            h.record(Duration::from_millis(ms));
        }
        // The same series, registered again, is the same histogram.
        fixed
            .histogram("t_seconds", &[("model", "m\"1")], &BOUNDS)
            .record(Duration::from_millis(500));
        let text = rendered(&fixed);
        let expected = "# HELP t_seconds Times.\n# TYPE t_seconds histogram\n\
            t_seconds_bucket{model=\"m\\\"1\",le=\"0.01\"} 2\n\
            t_seconds_bucket{model=\"m\\\"1\",le=\"0.1\"} 4\n\
            t_seconds_bucket{model=\"m\\\"1\",le=\"1\"} 5\n\
            t_seconds_bucket{model=\"m\\\"1\",le=\"+Inf\"} 6\n";
        assert!(text.starts_with(expected), "{text}");
        let sum: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("t_seconds_sum{model=\"m\\\"1\"} "))
            .unwrap()
            .parse()
            .unwrap();
        assert!((sum - 2.626).abs() < 1e-9, "{sum}");
        assert!(
            text.contains("t_seconds_count{model=\"m\\\"1\"} 6\n"),
            "{text}"
        );
    }

    #[test]
    fn an_unlabelled_histogram_renders_without_braces_but_for_le() {
        let fixed = Fixed::default();
        fixed
            .histogram("o_seconds", &[], &BOUNDS)
            .record(Duration::from_micros(20));
        let text = rendered(&fixed);
        assert!(text.contains("o_seconds_bucket{le=\"0.01\"} 1\n"), "{text}");
        assert!(text.contains("o_seconds_sum 0.00002\n"), "{text}");
        assert!(text.contains("o_seconds_count 1\n"), "{text}");
        assert!(!text.contains("# HELP"), "{text}");
    }

    #[test]
    fn a_micro_counter_renders_its_exact_decimal() {
        let fixed = Fixed::default();
        let cost = fixed.micro_counter("c_usd_total", &[("model", "m"), ("provider", "p")]);
        cost.add(1_234_567);
        cost.add(3);
        fixed.micro_counter("c_usd_total", &[("model", "n"), ("provider", "p")]);
        let text = rendered(&fixed);
        assert!(
            text.contains(
                "# TYPE c_usd_total counter\n\
                 c_usd_total{model=\"m\",provider=\"p\"} 1.234570\n\
                 c_usd_total{model=\"n\",provider=\"p\"} 0.000000\n"
            ),
            "{text}"
        );
    }
}
