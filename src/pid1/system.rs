//! `ember poweroff|reboot|halt [-f]`, also reached as `poweroff`, `reboot`, `halt` and
//! `shutdown -P|-r|-H now` through symlinks (multi-call), so a board needs no other
//! package for them.
//!
//! Ask PID 1 over the control socket; when it does not answer, send it the signal
//! (SIGUSR2, SIGTERM, SIGUSR1); a refusal is final. `-f` skips the services and calls reboot(2) at once.

use super::{shutdown, Power};
use ember_ipc::socket::Client;
use ember_ipc::Reply;
use std::path::Path;

pub const HELP: &str = "\
Usage: poweroff|reboot|halt [-f]
       ember poweroff|reboot|halt [-f] [--socket PATH]

Asks ember (PID 1) to stop every service in reverse dependency order, then power off,
reboot or halt. Falls back to signalling PID 1 (SIGUSR2, SIGTERM, SIGUSR1) when the
control socket does not answer.

  -f, --force         do not stop services: sync and call reboot(2) at once
  -s, --socket PATH   ember's control socket (default /run/ember/control.sock)
";

pub const SHUTDOWN_HELP: &str = "\
Usage: shutdown [-P|-r|-H] now

Asks ember (PID 1) to stop every service in reverse dependency order, then power off
(-P, -h: the default), reboot (-r) or halt (-H), now (`now` or `+0`), as `poweroff`,
`reboot` and `halt` do. ember has no shutdown at a later time, and sends no message to
the terminals first: for a later one, `sleep SECONDS; poweroff`.

  -P, --poweroff, -h   power off
  -r, --reboot         reboot
  -H, --halt           halt
      --no-wall        (the default: no message is sent)
The control socket is $EMBER_SOCKET, else /run/ember/control.sock.
";

pub fn parse_power(word: &str) -> Option<Power> {
    match word {
        "poweroff" => Some(Power::Poweroff),
        "reboot" => Some(Power::Reboot),
        "halt" => Some(Power::Halt),
        _ => None,
    }
}

/// Returns the exit code.
pub fn run(power: Power, force: bool, socket: &Path) -> i32 {
    if force {
        nix::unistd::sync();
        if let Err(e) = force_reboot(power) {
            eprintln!(
                "{}: reboot(2) failed: {e}; {}",
                power.word(),
                refused_advice(e, nix::unistd::geteuid().is_root())
            );
            return 1;
        }
        return 0;
    }
    let command = match power {
        Power::Poweroff => ember_ipc::Command::Poweroff,
        Power::Reboot => ember_ipc::Command::Reboot,
        Power::Halt => ember_ipc::Command::Halt,
    };
    let verb = command.verb();
    let asked = Client::connect(socket).and_then(|mut c| c.call(&command));
    match asked {
        Ok(Reply::Ok { .. }) => {
            crate::cli::out::outln!("{verb}: ember is stopping every service");
            return 0;
        }
        // ember answered: its signal would be refused the same way (a reboot asked while
        // the board powers off), only out of sight of whoever asked.
        Ok(Reply::Error(e)) => {
            eprintln!("{verb}: ember refused: {}", e.message);
            return 1;
        }
        Ok(_) => {}
        Err(e) => eprintln!("{verb}: {e}; signalling PID 1 instead"),
    }
    let signal = match power {
        Power::Poweroff => nix::sys::signal::Signal::SIGUSR2,
        Power::Reboot => nix::sys::signal::Signal::SIGTERM,
        Power::Halt => nix::sys::signal::Signal::SIGUSR1,
    };
    // Only ember understands these signals this way; another init (tini in a container)
    // would take SIGTERM as "stop everything".
    match (
        std::fs::read_link("/proc/1/exe"),
        std::fs::read_link("/proc/self/exe"),
    ) {
        (Ok(init), Ok(me)) if same_binary(&init, &me) => {}
        (Ok(init), _) => {
            eprintln!(
                "{verb}: PID 1 is {}, not ember, so it is not signalled",
                init.display()
            );
            return 1;
        }
        (Err(e), _) => {
            eprintln!("{verb}: cannot tell whether PID 1 is ember ({e}); are you root?");
            return 1;
        }
    }
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(1), signal) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{verb}: cannot signal PID 1: {e}");
            1
        }
    }
}

/// `-f`: like the classic tools, reboot(2) from this very process.
fn force_reboot(power: Power) -> nix::Result<()> {
    if std::process::id() == 1 {
        shutdown::reboot(power);
        return Ok(());
    }
    use nix::sys::reboot::RebootMode;
    let mode = match power {
        Power::Poweroff => RebootMode::RB_POWER_OFF,
        Power::Reboot => RebootMode::RB_AUTOBOOT,
        Power::Halt => RebootMode::RB_HALT_SYSTEM,
    };
    let Err(e) = nix::sys::reboot::reboot(mode);
    Err(e)
}

/// Why reboot(2) was refused, as advice: root without CAP_SYS_BOOT is in a container (or
/// under a seccomp filter), where "are you root?" only puzzles.
fn refused_advice(e: nix::errno::Errno, root: bool) -> &'static str {
    match (e, root) {
        (nix::errno::Errno::EPERM, true) => "root here may not reboot (no CAP_SYS_BOOT: a container, or a seccomp filter); ask PID 1 without -f",
        (nix::errno::Errno::EPERM, false) => "are you root?",
        _ => "ask PID 1 without -f",
    }
}

/// Whether PID 1 runs the binary this process runs, as /proc/PID/exe names them. An
/// update that replaced /sbin/init (without `ember ctl reexec`) leaves PID 1's named
/// "/sbin/init (deleted)": still ember, and until 2026-12-07 `poweroff` then refused to
/// signal it ("PID 1 is /sbin/init (deleted), not ember") when the socket did not answer.
fn same_binary(init: &Path, me: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let bytes = init.as_os_str().as_bytes();
    let init = bytes.strip_suffix(b" (deleted)").unwrap_or(bytes);
    init == me.as_os_str().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_1_whose_binary_was_replaced_is_still_ember() {
        let me = Path::new("/sbin/init");
        assert!(same_binary(Path::new("/sbin/init"), me));
        assert!(same_binary(Path::new("/sbin/init (deleted)"), me));
        assert!(!same_binary(Path::new("/sbin/tini"), me));
        assert!(!same_binary(Path::new("/sbin/tini (deleted)"), me));
    }

    #[test]
    fn a_refused_reboot_f_says_why() {
        use nix::errno::Errno;
        assert_eq!(refused_advice(Errno::EPERM, false), "are you root?");
        assert!(refused_advice(Errno::EPERM, true).contains("CAP_SYS_BOOT"));
    }
}
