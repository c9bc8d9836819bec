//! The `ember` binary: supervisor (or init), `ember check` and `ember ctl`.

use ember::cli::{self, Mode};

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let code = match cli::parse(args) {
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
        Err(message) => {
            eprintln!("ember: {message}");
            2
        }
    };
    std::process::exit(code);
}
