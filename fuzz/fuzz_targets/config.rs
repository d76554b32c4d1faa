//! The config loader: any text is a config or a list of problems, never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard::config::{Source, parse};

fuzz_target!(|text: &str| {
    let checked = parse(&Source::File("fuzz.yaml".into()), text);
    // A config with no errors, or errors and no config.
    assert_eq!(
        checked.config.is_none(),
        checked.problems.list.iter().any(|p| p.is_error())
    );
});
