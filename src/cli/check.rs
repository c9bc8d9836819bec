//! `ember check`: print every problem of a configuration, one a line.

use crate::config::{self, Severity};
use std::path::Path;

/// Returns the exit code: 0 when ember would run this configuration as is, 1 otherwise.
pub fn run(path: &Path) -> i32 {
    let loaded = config::load(path);
    for problem in &loaded.problems {
        println!("{problem}");
    }
    let failing = loaded
        .problems
        .iter()
        .filter(|p| p.severity >= Severity::Runtime)
        .count();
    match (&loaded.config, failing) {
        (Some(config), 0) => {
            let warnings = loaded.problems.len();
            let note = if warnings > 0 {
                format!(" ({warnings} warnings)")
            } else {
                String::new()
            };
            println!(
                "{}: ok, {} services{note}",
                path.display(),
                config.services.len()
            );
            0
        }
        _ => {
            eprintln!("{}: {failing} problems", path.display());
            1
        }
    }
}
