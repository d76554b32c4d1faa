//! Problems found in a configuration, each with its place and, for a misspelt
//! key or value, a suggestion.

use std::fmt;

use super::tree::Place;

/// Whether a problem stops the configuration from being used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The configuration is refused.
    Error,
    /// The configuration works, but probably not as meant.
    Warning,
}

/// One thing wrong (or worth a warning) in a configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// Error or warning.
    pub severity: Severity,
    /// Where it is; `None` when it concerns the file as a whole.
    pub place: Option<Place>,
    /// What is wrong, and what to do about it.
    pub message: String,
}

impl Problem {
    /// An error at `place`.
    pub fn at(place: Option<Place>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            place,
            message: message.into(),
        }
    }

    /// A warning at `place`.
    pub fn warning(place: Option<Place>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            place,
            message: message.into(),
        }
    }

    /// Whether this stops the configuration from being used.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Every problem of one file, printable as `file:line:column: message` lines.
#[derive(Debug, Clone)]
pub struct Problems {
    /// The file name as given, or `<built-in>`.
    pub source: String,
    /// The problems in the order found.
    pub list: Vec<Problem>,
}

impl Problems {
    /// The errors, one `file:line:column: message` line each.
    pub fn errors(&self) -> Vec<String> {
        self.list
            .iter()
            .filter(|p| p.is_error())
            .map(|p| self.line(p))
            .collect()
    }

    /// `problem` as a line: its place, its label (`warning: `), its message.
    fn line(&self, problem: &Problem) -> String {
        let label = match problem.severity {
            Severity::Error => "",
            Severity::Warning => "warning: ",
        };
        match problem.place {
            Some(p) => format!(
                "{}:{}:{}: {label}{}",
                self.source, p.line, p.column, problem.message
            ),
            None => format!("{}: {label}{}", self.source, problem.message),
        }
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for problem in &self.list {
            writeln!(f, "{}", self.line(problem))?;
        }
        Ok(())
    }
}

/// The closest of `candidates` to `word`, when it is close enough to be a likely typo.
pub fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), *c))
        .filter(|(distance, c)| *distance <= (c.len() / 3).max(2) && *distance < c.len())
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

/// "unknown key `x`, did you mean `y`?" or the list of what is allowed.
pub fn unknown(what: &str, word: &str, expected: &[&str]) -> String {
    match suggest(word, expected) {
        Some(s) => format!("unknown {what} `{word}`, did you mean `{s}`?"),
        None if expected.is_empty() => format!("unknown {what} `{word}`"),
        None => format!(
            "unknown {what} `{word}` (expected one of: {})",
            expected.join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_only_close_words() {
        assert_eq!(suggest("retires", &["retries", "routes"]), Some("retries"));
        assert_eq!(suggest("modles", &["models", "keys"]), Some("models"));
        assert_eq!(
            suggest("opnai", &["openai", "anthropic", "mock"]),
            Some("openai")
        );
        assert_eq!(suggest("banana", &["server", "auth"]), None);
        assert_eq!(suggest("x", &["ab"]), None);
    }
}
