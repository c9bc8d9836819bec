//! The `ember` binary: supervisor (or init), `ember check` and `ember ctl`.

use ember::cli::{self, Mode};

fn main() {
    ember::pid1::mark_start();
    if std::process::id() == 1 {
        ember::pid1::block_signals();
    }
    let mut argv = std::env::args_os();
    let argv0 = argv
        .next()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_default();
    let args: Vec<std::ffi::OsString> = argv.collect();
    let code = match cli::parse(&argv0, args) {
        Ok(Mode::Help(text)) => {
            print!("{text}");
            0
        }
        Ok(Mode::Version) => {
            println!("ember {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Ok(Mode::Check { config }) => cli::check::run(&config),
        Ok(Mode::Ctl(invocation)) => cli::ctl::run(invocation),
        Ok(Mode::Daemon { config }) => ember::daemon::run(&config),
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
    std::process::exit(code);
}
