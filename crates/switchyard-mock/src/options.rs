//! The knobs of the fake provider, shared by `switchyard mock` (as flags) and the
//! in-process `kind: mock` provider (as a struct).

use std::time::Duration;

/// Knobs of the fake provider; also the flags of `switchyard mock` (flattened into its
/// clap command). [`Default`] gives the same values as the flags' defaults.
#[derive(clap::Args, Clone, Debug, PartialEq)]
pub struct MockOptions {
    /// Delay added before the response headers of every `/v1/*` and `/v1beta/*` request
    /// (e.g. `20ms`).
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = humantime::parse_duration)]
    pub latency: Duration,

    /// Delay before the first streamed token (after the headers and the role chunk).
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = humantime::parse_duration)]
    pub ttft: Duration,

    /// Streaming pace after the first token, in tokens per second (0 = no pacing).
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = parse_pace)]
    pub tokens_per_second: f64,

    /// Words in a reply: the echo is padded with filler words up to N (a longer echo is
    /// kept whole), then cut to the request's `max_tokens`.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub completion_tokens: u32,

    /// Fraction of `/v1/*` and `/v1beta/*` requests that fail with `--error-status` before
    /// any body.
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = parse_rate)]
    pub error_rate: f64,

    /// HTTP status of the injected failures.
    #[arg(long, value_name = "CODE", default_value_t = 500, value_parser = clap::value_parser!(u16).range(400..=599))]
    pub error_status: u16,

    /// Seconds sent in the `retry-after` header of injected 429 failures.
    #[arg(long, value_name = "SECS")]
    pub retry_after: Option<u64>,

    /// Fraction of streams whose connection is dropped halfway (no `[DONE]`, no proper end).
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = parse_rate)]
    pub stream_cut_rate: f64,

    /// Fraction of streams that send an in-band error event after the first content chunk
    /// and then end (status 200, no `[DONE]`).
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = parse_rate)]
    pub stream_error_rate: f64,

    /// Content chunks sent before the in-band error of `--stream-error-rate` (0: the
    /// error comes before any content).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub stream_error_after: usize,

    /// The longest prompt of a chat completion, in words (0: no limit); a longer
    /// one gets OpenAI's 400 "maximum context length" error.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub context_window: u64,

    /// The only source of randomness: same seed and same request sequence, same decisions.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,
}

impl Default for MockOptions {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            ttft: Duration::ZERO,
            tokens_per_second: 0.0,
            completion_tokens: 16,
            error_rate: 0.0,
            error_status: 500,
            retry_after: None,
            stream_cut_rate: 0.0,
            context_window: 0,
            stream_error_rate: 0.0,
            stream_error_after: 1,
            seed: 0,
        }
    }
}

impl MockOptions {
    /// The wait between two streamed tokens, if `tokens_per_second` asks for pacing.
    pub(crate) fn token_interval(&self) -> Option<Duration> {
        (self.tokens_per_second > 0.0)
            .then(|| Duration::try_from_secs_f64(1.0 / self.tokens_per_second).ok())
            .flatten()
    }
}

/// Parses a probability in `0..=1`.
fn parse_rate(value: &str) -> Result<f64, String> {
    let rate: f64 = value.parse().map_err(|e| format!("{e}"))?;
    if (0.0..=1.0).contains(&rate) {
        Ok(rate)
    } else {
        Err(format!("{value} is not between 0 and 1"))
    }
}

/// Parses a finite, non-negative rate.
fn parse_pace(value: &str) -> Result<f64, String> {
    let pace: f64 = value.parse().map_err(|e| format!("{e}"))?;
    if pace.is_finite() && pace >= 0.0 {
        Ok(pace)
    } else {
        Err(format!("{value} is not a finite number >= 0"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        options: MockOptions,
    }

    #[test]
    fn default_matches_the_flags_defaults() {
        let cli = Cli::try_parse_from(["mock"]).unwrap();
        assert_eq!(cli.options, MockOptions::default());
    }

    #[test]
    fn flags_parse() {
        let cli = Cli::try_parse_from([
            "mock",
            "--latency",
            "20ms",
            "--ttft",
            "1s",
            "--tokens-per-second",
            "50",
            "--completion-tokens",
            "3",
            "--error-rate",
            "0.5",
            "--error-status",
            "429",
            "--retry-after",
            "7",
            "--stream-cut-rate",
            "1",
            "--stream-error-rate",
            "0.25",
            "--seed",
            "42",
        ])
        .unwrap();
        let o = cli.options;
        assert_eq!(o.latency, Duration::from_millis(20));
        assert_eq!(o.ttft, Duration::from_secs(1));
        assert_eq!(o.token_interval(), Some(Duration::from_millis(20)));
        assert_eq!(o.completion_tokens, 3);
        assert_eq!(o.error_rate, 0.5);
        assert_eq!(o.error_status, 429);
        assert_eq!(o.retry_after, Some(7));
        assert_eq!(o.stream_cut_rate, 1.0);
        assert_eq!(o.stream_error_rate, 0.25);
        assert_eq!(o.seed, 42);
    }

    #[test]
    fn bad_values_are_refused() {
        for args in [
            ["mock", "--error-rate", "1.5"],
            ["mock", "--stream-cut-rate", "-0.1"],
            ["mock", "--error-status", "200"],
            ["mock", "--tokens-per-second", "-1"],
            ["mock", "--latency", "fast"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?} was accepted");
        }
    }

    #[test]
    fn no_pacing_by_default() {
        assert_eq!(MockOptions::default().token_interval(), None);
    }
}
