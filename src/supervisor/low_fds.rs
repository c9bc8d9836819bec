//! Four file descriptors ember keeps at low numbers, where a child's fds 0-2 (and its
//! cgroup's directory) are put for the clone, so that the child can keep those and drop
//! every other fd of ember's at once.
//!
//! Why: a child that copies ember's fd table pays for every fd in it twice, once when
//! the table is copied and once when execve closes each close-on-exec fd (filp_close per
//! fd). ember holds two pipes' read ends per service, so with 1,000 services each spawn
//! copied and closed ~2,000 fds, and a boot of n services cost time in n² (perf: 9% of
//! ember's CPU in do_close_on_exec alone at 1,000). Instead the child shares ember's
//! table (`CLONE_FILES`: nothing copied) and its first step is
//! `close_range(keep_below, ~0, CLOSE_RANGE_UNSHARE)`, for which the kernel copies only
//! the fds below `keep_below` into the child's own table: 0-2, these slots and the few
//! of ember's that are lower. Everything the child needs is in a slot, below the line.
//!
//! The slots hold /dev/null between launches (a slot must stay open, or a later open
//! would take its number); a launch copies its fds onto them and puts /dev/null back
//! once the child has exec'd, so that no pipe end stays open in ember past the launch.
//!
//! Where the child cannot have a table of its own (a seccomp filter that refuses both
//! close_range and unshare, as older container profiles do) the launch says so, and
//! from then on children copy ember's table as after a fork ([`refused`]). Under
//! valgrind too: it supports `CLONE_VM | CLONE_VFORK` only without `CLONE_FILES`, and
//! ends the whole process at any other flags.

use nix::libc::{self, c_int};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};

/// stdin, stdout, stderr, and the cgroup's directory.
pub const COUNT: usize = 4;

struct Slots {
    /// /dev/null, what each slot holds between launches.
    null: RawFd,
    slots: [RawFd; COUNT],
}

/// `None` until the first launch (or [`reserve`]), and while they cannot be had (no
/// /dev/null yet, no fds left): children then copy ember's table, as after a fork.
static SLOTS: Mutex<Option<Slots>> = Mutex::new(None);

/// Set when a child could not have a table of its own: no more slots.
static REFUSED: AtomicBool = AtomicBool::new(false);

/// Takes the slots now, while ember's lowest fds are free (the daemon calls this once
/// /dev is there; a launch takes them itself otherwise).
pub fn reserve() {
    drop(lock());
}

/// A child could not leave ember's table (see the module's comment): children copy it
/// from now on, and launch says why once.
pub fn refused() {
    if !REFUSED.swap(true, Relaxed) {
        crate::log::info!(
            "a child cannot have an fd table of its own here (close_range and unshare refused, a seccomp filter?): children copy ember's from now on"
        );
    }
}

/// Marks every fd from 3 up close-on-exec, as systemd does at start: an fd that ember
/// inherited without the flag would otherwise reach every service wherever a child
/// copies ember's table (see [`refused`]), and every binary a reexec starts. What a
/// reexec hands over is cleared again just before that exec.
pub fn close_inherited_on_exec() {
    // SAFETY: with CLOSE_RANGE_CLOEXEC it changes flags only.
    if unsafe { close_range_from(3, libc::CLOSE_RANGE_CLOEXEC) } {
        return;
    }
    let Ok(open) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    for entry in open.flatten() {
        let fd = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<RawFd>().ok());
        if let Some(fd) = fd.filter(|&fd| fd > 2) {
            // SAFETY: sets the only fd flag of an fd number; one that is not open fails.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
    }
}

/// valgrind's preload library is in LD_PRELOAD of the program it runs.
fn under_valgrind() -> bool {
    std::env::var_os("LD_PRELOAD").is_some_and(|v| {
        v.as_encoded_bytes()
            .windows(b"vgpreload".len())
            .any(|w| w == b"vgpreload")
    })
}

fn lock() -> MutexGuard<'static, Option<Slots>> {
    // A panic while it was held left nothing that matters: each launch copies its own
    // fds onto the slots again.
    let mut guard = SLOTS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if guard.is_none() {
        *guard = open_slots();
    }
    guard
}

fn open_slots() -> Option<Slots> {
    if under_valgrind() {
        return None;
    }
    // SAFETY: open and fcntl with valid arguments; every result is checked, and what was
    // opened is closed again on failure.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        if null < 0 {
            return None;
        }
        let mut slots = [-1; COUNT];
        for i in 0..COUNT {
            // The lowest free number ≥ 3: fds 0-2 are the child's to take.
            let fd = libc::fcntl(null, libc::F_DUPFD_CLOEXEC, 3);
            if fd < 0 {
                for &taken in &slots[..i] {
                    libc::close(taken);
                }
                libc::close(null);
                return None;
            }
            slots[i] = fd;
        }
        Some(Slots { null, slots })
    }
}

/// A launch's fds, copied onto the slots; the slots go back to /dev/null when this is
/// dropped, and no other launch can use them until then (it holds the lock).
pub struct Staged {
    _held: MutexGuard<'static, Option<Slots>>,
    null: RawFd,
    slots: [RawFd; COUNT],
    used: [bool; COUNT],
}

/// What [`stage`] could not do: which of the fds given, and the errno.
pub struct Failed {
    pub index: usize,
    pub errno: c_int,
}

/// Copies each `Some` fd onto its slot. `Ok(None)` when there are no slots (the child
/// then copies ember's table and uses the fds as given).
pub fn stage(fds: [Option<RawFd>; COUNT]) -> Result<Option<Staged>, Failed> {
    if REFUSED.load(Relaxed) {
        return Ok(None);
    }
    let held = lock();
    let Some(&Slots { null, slots }) = held.as_ref() else {
        return Ok(None);
    };
    let mut staged = Staged {
        _held: held,
        null,
        slots,
        used: [false; COUNT],
    };
    for (index, (fd, slot)) in fds.into_iter().zip(slots).enumerate() {
        let Some(fd) = fd else { continue };
        // SAFETY: dup3 onto a slot this module owns (held open, so its number cannot
        // belong to anything else); a bad `fd` is an error, returned.
        if unsafe { libc::dup3(fd, slot, libc::O_CLOEXEC) } < 0 {
            return Err(Failed {
                index,
                errno: nix::errno::Errno::last_raw(),
            });
        }
        staged.used[index] = true;
    }
    Ok(Some(staged))
}

impl Staged {
    /// Where each `Some` fd given to [`stage`] now is.
    pub fn fds(&self) -> [Option<RawFd>; COUNT] {
        std::array::from_fn(|i| self.used[i].then_some(self.slots[i]))
    }

    /// The first fd number the child need not keep: above every slot, rounded up to a
    /// multiple of 64. The kernel copies whole 64-fd words of its table anyway, and a
    /// table of another size met a bug of Linux 5.9-5.17 (fixed by 1c24a186398f, "fd
    /// tables have to be multiples of BITS_PER_LONG").
    pub fn keep_below(&self) -> c_int {
        let above = self.slots.iter().max().map_or(3, |&m| m + 1);
        (above + 63) / 64 * 64
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        for (slot, used) in self.slots.into_iter().zip(self.used) {
            if used {
                // SAFETY: dup3 of /dev/null onto a slot this module owns. If it failed
                // (it cannot: both are open), the slot would keep its copy of a pipe end
                // until the next launch, no worse.
                unsafe { libc::dup3(self.null, slot, libc::O_CLOEXEC) };
            }
        }
    }
}

/// close_range(2) from `first` to the last fd, with `flags`: whether it worked (Linux
/// 5.9; `CLOSE_RANGE_CLOEXEC` 5.11). A raw system call, as a child on ember's memory may
/// make.
///
/// # Safety
/// Without `CLOSE_RANGE_CLOEXEC` it closes fds that other code of this process may own.
pub unsafe fn close_range_from(first: c_int, flags: libc::c_uint) -> bool {
    // SAFETY: the caller's promise; the call itself takes plain numbers.
    unsafe { libc::syscall(libc::SYS_close_range, first, c_int::MAX, flags) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    /// The file an fd of this process is open on.
    fn target(fd: RawFd) -> String {
        std::fs::read_link(format!("/proc/self/fd/{fd}"))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    #[test]
    fn a_staged_fd_sits_in_its_slot_until_the_launch_ends_then_the_slot_holds_dev_null() {
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
        let pipe = target(write.as_raw_fd());
        let slot = {
            let staged = stage([None, Some(write.as_raw_fd()), None, None])
                .ok()
                .flatten()
                .expect("slots");
            let fds = staged.fds();
            assert_eq!(fds[0], None);
            assert_eq!(fds[2], None);
            let slot = fds[1].expect("stdout staged");
            assert!(slot >= 3 && slot < staged.keep_below(), "{slot}");
            assert_eq!(staged.keep_below() % 64, 0);
            assert_eq!(target(slot), pipe);
            slot
        };
        // Looked at with the slots held (staging nothing), so that a launch of another
        // test cannot be using them meanwhile.
        let held = stage([None; COUNT]).ok().flatten().expect("slots");
        assert_eq!(target(slot), "/dev/null");
        drop(held);
        // No copy of the write end is left: closing ours ends the pipe.
        drop(write);
        let mut buf = [0u8; 1];
        assert_eq!(nix::unistd::read(&read, &mut buf), Ok(0));
    }

    #[test]
    fn a_bad_fd_is_refused_with_its_index_and_errno() {
        match stage([None, None, Some(987_654), None]) {
            Err(Failed { index, errno }) => {
                assert_eq!(index, 2);
                assert_eq!(errno, libc::EBADF);
            }
            Ok(_) => panic!("a bad fd was staged"),
        }
    }
}
