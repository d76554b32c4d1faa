//! The suite's table: one row per criterion of a scenario, written as
//! Markdown with the commit and the machine it was measured on.

use std::fmt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::Mode;

/// One criterion of a scenario: what must hold, what was measured, and
/// whether it held.
#[derive(Debug, Clone)]
pub struct Row {
    /// What must hold, as the promise states it.
    pub criterion: String,
    /// What was measured.
    pub figure: String,
    /// Whether the figure meets the criterion.
    pub pass: bool,
}

impl Row {
    /// A row whose `figure` meets `criterion` when `pass`.
    pub fn new(criterion: impl Into<String>, figure: impl Into<String>, pass: bool) -> Self {
        Self {
            criterion: criterion.into(),
            figure: figure.into(),
            pass,
        }
    }
}

impl fmt::Display for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.pass { "pass" } else { "FAIL" };
        write!(f, "{verdict}: {} — {}", self.criterion, self.figure)
    }
}

/// The rows of every scenario run.
pub struct Table {
    mode: Mode,
    scenarios: Vec<(&'static str, Vec<Row>, Duration)>,
}

impl Table {
    pub fn new(mode: Mode) -> Self {
        Self {
            mode,
            scenarios: Vec::new(),
        }
    }

    /// The rows of `scenario`, which took `took`.
    pub fn add(&mut self, scenario: &'static str, rows: Vec<Row>, took: Duration) {
        self.scenarios.push((scenario, rows, took));
    }

    /// The rows that failed, with their scenario.
    pub fn failing(&self) -> Vec<String> {
        self.scenarios
            .iter()
            .flat_map(|(name, rows, _)| {
                rows.iter()
                    .filter(|row| !row.pass)
                    .map(move |row| format!("{name}: {row}"))
            })
            .collect()
    }

    /// Writes the table as Markdown to `path`; the suite took `took`.
    pub fn write(&self, path: &Path, took: Duration) {
        let rows: usize = self.scenarios.iter().map(|(_, rows, _)| rows.len()).sum();
        let failing = self.failing().len();
        let mut text = String::from("# Reliability\n\n");
        text.push_str(&format!(
            "What the gateway survives, measured: each scenario drives the release build \
             with real Redis, PostgreSQL and `switchyard mock` on 127.0.0.1 through a failure, \
             and each row is one of its promises, the figure measured and the verdict. \
             Made by `bench/reliability.sh`{}; each scenario is a file of \
             `crates/switchyard/tests/reliability/`.\n\n",
            match self.mode {
                Mode::Full => "",
                Mode::Quick => " --quick (the subset CI runs)",
            }
        ));
        text.push_str(&format!(
            "- commit: {}\n- machine: {}\n- {} scenarios, {rows} rows, {} in {:.0} s\n\n",
            commit(),
            machine(),
            self.scenarios.len(),
            if failing == 0 {
                "every row passing".to_owned()
            } else {
                format!("**{failing} failing**")
            },
            took.as_secs_f64()
        ));
        text.push_str("| scenario | criterion | measured | verdict |\n| --- | --- | --- | --- |\n");
        for (name, rows, took) in &self.scenarios {
            for (i, row) in rows.iter().enumerate() {
                let scenario = if i == 0 {
                    format!("{name} ({:.0} s)", took.as_secs_f64())
                } else {
                    String::new()
                };
                let verdict = if row.pass { "pass" } else { "**FAIL**" };
                text.push_str(&format!(
                    "| {scenario} | {} | {} | {verdict} |\n",
                    cell(&row.criterion),
                    cell(&row.figure)
                ));
            }
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("the table's folder");
        }
        std::fs::write(path, text).expect("write the table");
    }
}

/// `text` fit for a table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// The commit measured (with `-dirty` when the tree had changes).
fn commit() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(crate::harness::repo_root())
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let head = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".to_owned());
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
        .is_some_and(|status| !status.is_empty());
    if dirty { format!("{head}-dirty") } else { head }
}

/// The CPU model, its cores and the memory.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or_else(String::new, |kib| {
            format!(", {} GiB", kib.div_ceil(1 << 20))
        });
    format!("{model}, {cores} cores{memory}")
}
