//! `ember check`: print every problem of a configuration, one a line.

use crate::config::{self, Config, Problem};
use std::path::Path;

/// Returns the exit code: 0 when ember would run this configuration as is, 1 otherwise.
pub fn run(path: &Path) -> i32 {
    run_with(path, |_| Vec::new())
}

/// `ember check`, with the further warnings `more` finds in a configuration that loaded
/// (`ember analyze verify`). Warnings never change the exit code.
pub fn run_with(path: &Path, more: impl FnOnce(&Config) -> Vec<Problem>) -> i32 {
    let mut loaded = config::load(path);
    if let Some(config) = &loaded.config {
        loaded.problems.extend(more(config));
        config::sort_problems(&mut loaded.problems);
    }
    for problem in &loaded.problems {
        super::out::outln!("{problem}");
    }
    let failing = loaded.failing().count();
    match (&loaded.config, failing) {
        (Some(config), 0) => {
            let warnings = loaded.problems.len();
            let note = if warnings > 0 {
                format!(" ({})", counted(warnings, "warning"))
            } else {
                String::new()
            };
            super::out::outln!(
                "{}: ok, {}{note}",
                path.display(),
                counted(config.services.len(), "service")
            );
            0
        }
        _ => {
            eprintln!("{}: {}", path.display(), counted(failing, "problem"));
            1
        }
    }
}

/// "1 problem", "2 problems".
fn counted(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}
