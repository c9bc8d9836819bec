//! Running the repository's shell scripts from a test (tests/qemu/setup.sh, boot.sh).

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs a script of the repository with `env` added; prints its `== ` step lines; returns
/// how long it took, or why it failed (with the tail of its output).
pub fn run_script(script: &str, args: &[&str], env: &[(&str, String)]) -> Result<f64, String> {
    let started = Instant::now();
    let output = Command::new("bash")
        .arg(repo().join(script))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(repo())
        .output()
        .map_err(|e| format!("cannot run {script}: {e}"))?;
    let seconds = started.elapsed().as_secs_f64();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    for line in text.lines().filter(|l| l.starts_with("== ")) {
        println!("{line}");
    }
    if !output.status.success() {
        return Err(format!(
            "{script} {} failed ({}); its output ends with:\n{}",
            args.join(" "),
            output.status,
            tail(&text, 40)
        ));
    }
    Ok(seconds)
}
