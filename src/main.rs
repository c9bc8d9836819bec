//! The `ember` binary: supervisor (or init), `ember check`, `ember ctl`, `ember analyze`,
//! and `ember fleet` (which runs ember-fleet).
//!
//! The entry point is our own C `main`, not std's: std's start-up aborts the process when
//! stdin, stdout or stderr is closed and /dev/null cannot be opened, which is exactly the
//! state in which a kernel may start init (no /dev/console in the initramfs). As PID 1
//! that abort would be a kernel panic. So we take argc/argv ourselves, put something on
//! fds 0-2 ([`ember::pid1::console::standard_fds`]), ignore SIGPIPE as std would have, and
//! only then run.
#![no_main]

use ember::cli::{self, Mode};
use std::ffi::{c_char, c_int, CStr, OsString};
use std::os::unix::ffi::OsStringExt;

#[no_mangle]
extern "C" fn main(argc: c_int, argv: *const *const c_char) -> c_int {
    ember::pid1::mark_start();
    let pid1 = std::process::id() == 1;
    if pid1 {
        ember::pid1::block_signals();
    }
    ember::pid1::console::standard_fds(pid1);
    // Writing to a closed socket or pipe must be an error, not death (std does this too).
    // SAFETY: setting a disposition to SIG_IGN installs no handler code.
    unsafe {
        nix::libc::signal(nix::libc::SIGPIPE, nix::libc::SIG_IGN);
    }
    let args: Vec<OsString> = (0..argc.max(0) as usize)
        .filter_map(|i| {
            // SAFETY: the C runtime passes argc valid, NUL-terminated strings in argv.
            let arg = unsafe { *argv.add(i) };
            (!arg.is_null())
                .then(|| OsString::from_vec(unsafe { CStr::from_ptr(arg) }.to_bytes().to_vec()))
        })
        .collect();
    run(args)
}

fn run(mut argv: Vec<OsString>) -> c_int {
    let argv0 = if argv.is_empty() {
        String::new()
    } else {
        argv.remove(0).to_string_lossy().into_owned()
    };
    let pid1 = std::process::id() == 1;
    let parsed = match cli::parse(&argv0, argv.clone()) {
        Ok(mode @ Mode::Daemon { .. }) => Ok(mode),
        // In a container `ember --version` or `ember check` as PID 1 does what it says;
        // `init 0` asks PID 1, and is not PID 1's to make.
        Ok(mode)
            if !pid1 || !(ember::pid1::kernel_init() || matches!(mode, Mode::Power { .. })) =>
        {
            Ok(mode)
        }
        Err(message) if !pid1 => Err(message),
        // As PID 1 an exit is the end of the namespace, or a kernel panic.
        _ => {
            let (mode, ignored) = cli::parse_as_init(argv);
            if !ignored.is_empty() {
                eprintln!(
                    "ember: PID 1: ignoring the arguments {} (the kernel passes init the words of its command line it does not know; ember takes only --config PATH)",
                    ignored.join(" ")
                );
            }
            Ok(mode)
        }
    };
    let code = match parsed {
        Ok(Mode::Help(text)) => {
            ember::cli::out::print(text);
            0
        }
        Ok(Mode::Version) => {
            ember::cli::out::print(&format!("ember {}\n", env!("CARGO_PKG_VERSION")));
            0
        }
        Ok(Mode::Check { config }) => cli::check::run(&config),
        Ok(Mode::Ctl(invocation)) => cli::ctl::run(invocation),
        Ok(Mode::Analyze(invocation)) => cli::analyze::run(invocation),
        Ok(Mode::Fleet(args)) => cli::fleet::run(args),
        Ok(Mode::Daemon { config, handover }) => ember::daemon::run(&config, handover),
        Ok(Mode::HandoverAccepts(format)) => {
            use ember::supervisor::handover;
            let reads = handover::reads(u64::from(format));
            if reads {
                ember::cli::out::print(&handover::accepting(format));
            }
            i32::from(!reads)
        }
        Ok(Mode::Power {
            power,
            force,
            socket,
        }) => ember::pid1::system::run(power, force, &socket),
        Err(message) => {
            eprintln!("ember: {message}");
            2
        }
    };
    // The console's log lines are written by a thread: let them out first.
    ember::log::flush();
    std::process::exit(code);
}
