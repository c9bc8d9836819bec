//! Standard output of the command-line tools (`ember ctl`, `check`, `analyze`, `--help`).
//!
//! ember ignores SIGPIPE (a socket or pipe whose reader is gone must be an error, never
//! the death of PID 1), so a write to a closed pipe returns EPIPE, on which Rust's
//! `print!` panics. Here a reader that went away (`ember ctl logs -f | head`) ends the
//! tool the way it ends every Unix tool: by SIGPIPE, quietly (exit status 141 in a
//! shell). Any other write error (a full disk) is reported and exits 1.

use std::io::Write;

/// Writes `text` to standard output, all of it, and flushes.
pub fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => die_of_sigpipe(),
        Err(e) => {
            eprintln!("ember: cannot write the output: {e}");
            std::process::exit(1);
        }
    }
}

/// `print!` for the tools: see [`print`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::out::print(&format!($($arg)*))
    };
}

/// `println!` for the tools: see [`print`].
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::out::print(&format!("{}\n", format_args!($($arg)*)))
    };
}

pub(crate) use {out, outln};

fn die_of_sigpipe() -> ! {
    // SAFETY: restoring the default disposition and raising a signal run no handler code;
    // the default action of SIGPIPE ends the process.
    unsafe {
        nix::libc::signal(nix::libc::SIGPIPE, nix::libc::SIG_DFL);
        nix::libc::raise(nix::libc::SIGPIPE);
    }
    std::process::exit(141)
}
