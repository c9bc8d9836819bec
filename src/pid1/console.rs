//! Standard file descriptors before anything else runs.
//!
//! The kernel starts init with /dev/console on fds 0-2 when the root filesystem has
//! one; when it has not, they are closed. A closed fd 0-2 is dangerous beyond lost
//! output: the next file ember opens (the control socket, say) would become "stdout".

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use std::os::fd::{AsRawFd, BorrowedFd, IntoRawFd};

fn is_open(fd: i32) -> bool {
    // SAFETY: only asks whether the descriptor exists; nothing is read or closed.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    fcntl(fd, FcntlArg::F_GETFD).is_ok()
}

/// Puts something on every closed fd 0-2: the console (as the machine's init, mounting
/// devtmpfs on an empty /dev to find it), else /dev/null, else a read-only handle on "/"
/// that at least keeps the number taken.
pub fn standard_fds(pid1: bool) {
    let closed: Vec<i32> = (0..3).filter(|fd| !is_open(*fd)).collect();
    if closed.is_empty() {
        return;
    }
    // The console is the machine's: PID 1 of a namespace (its /proc says so) leaves it.
    let machine = pid1 && super::kernel_init();
    if machine && !std::path::Path::new("/dev/console").exists() {
        let _ = std::fs::create_dir_all("/dev");
        let _ = nix::mount::mount(
            Some("devtmpfs"),
            "/dev",
            Some("devtmpfs"),
            nix::mount::MsFlags::MS_NOSUID,
            Some("mode=0755"),
        );
    }
    for fd in closed {
        let opened = [
            ("/dev/console", OFlag::O_RDWR | OFlag::O_NOCTTY),
            ("/dev/null", OFlag::O_RDWR),
            ("/", OFlag::O_RDONLY),
        ]
        .into_iter()
        .filter(|(path, _)| machine || *path != "/dev/console")
        .find_map(|(path, flags)| {
            nix::fcntl::open(path, flags, nix::sys::stat::Mode::empty()).ok()
        });
        if let Some(file) = opened {
            let raw = file.as_raw_fd();
            if raw != fd {
                // SAFETY: fd is closed (checked above) and ours to fill.
                unsafe { nix::libc::dup2(raw, fd) };
            } else {
                // It landed on the very number we wanted: keep it open.
                let _ = file.into_raw_fd();
            }
        }
    }
}
