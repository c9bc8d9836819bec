//! clone3(2) with `CLONE_INTO_CGROUP`: a service's process is created in its cgroup, so
//! nothing has to move it there.
//!
//! Why: moving a process (writing to cgroup.procs, what the child did before) takes the
//! kernel's cgroup_threadgroup_rwsem for writing, and the first such write after a quiet
//! spell waits an RCU grace period (14.5 ms measured, strace; README, Benchmark): at boot
//! that was a constant 15 ms before the first service could run, and every later move was
//! a slower path than a fork. A process created in its cgroup takes that lock for
//! reading only, as every fork does.
//!
//! Why assembly: with `CLONE_VM` the child runs on a stack of its own from the instant
//! the system call returns, and clone3 has no C wrapper (glibc keeps its own private;
//! musl has none) that would call a function there, as clone(3) does. [`spawn`] is that
//! wrapper: a few instructions per architecture. Where ember has none (32-bit ARM,
//! RISC-V...) or the kernel has no clone3 or no `CLONE_INTO_CGROUP` (before 5.7),
//! [`spawn`] fails and the caller clones the old way.

use nix::libc::{c_int, c_void};

/// `CLONE_INTO_CGROUP` (linux/sched.h, 5.7).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// The kernel's `struct clone_args`, as far as its `cgroup` field (CLONE_ARGS_SIZE_VER2).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// The child's entry point: called on `stack` with `arg`; it must not return (it execs
/// or `_exit`s; a return ends the child with the value as its status).
pub type Entry = extern "C" fn(*mut c_void) -> c_int;

/// Creates a process that shares this one's memory until it execs (`CLONE_VM |
/// CLONE_VFORK`: this thread waits until then), and its fd table when `share_files`
/// (`CLONE_FILES`), in the cgroup whose directory `cgroup` is open on, running
/// `entry(arg)` on `stack`. `Ok(pid)`, or the errno: ENOSYS when
/// there is no clone3 or no wrapper for this architecture, EINVAL or E2BIG before 5.7
/// (no `CLONE_INTO_CGROUP`), EOPNOTSUPP for a cgroup that cannot take a process so, or
/// what the old way would meet too (EAGAIN at pids.max, ENOMEM). Whatever it is, the
/// caller clones the old way, which names the step that failed in its own words.
///
/// # Safety
/// `entry` may only make system calls (no allocation, no lock: it shares this memory),
/// `arg` and `stack` must stay valid until this returns, and ember's signals must be
/// blocked (a handler would run on this memory in the child).
pub unsafe fn spawn(
    cgroup: c_int,
    share_files: bool,
    stack: &mut [std::mem::MaybeUninit<u8>],
    entry: Entry,
    arg: *mut c_void,
) -> Result<c_int, c_int> {
    // 16-byte alignment at both ends: the child starts at the top (every ABI ember is
    // built for wants it aligned so), and the kernel takes the bottom and the size.
    let start = stack.as_mut_ptr() as usize;
    let bottom = (start + 15) & !15;
    let size = (start + stack.len()).saturating_sub(bottom) & !15;
    let mut args = CloneArgs {
        flags: (nix::libc::CLONE_VM | nix::libc::CLONE_VFORK) as u64
            | if share_files {
                nix::libc::CLONE_FILES as u64
            } else {
                0
            }
            | CLONE_INTO_CGROUP,
        exit_signal: nix::libc::SIGCHLD as u64,
        stack: bottom as u64,
        stack_size: size as u64,
        // A negative fd is refused by the kernel (EBADF), as it should be.
        cgroup: cgroup as u64,
        ..CloneArgs::default()
    };
    // SAFETY: the caller's promises, and `args` lives across the call.
    let result = unsafe { raw::clone3(&mut args, std::mem::size_of::<CloneArgs>(), entry, arg) };
    if result >= 0 {
        return Ok(result as c_int);
    }
    Err((-result) as c_int)
}

/// The system call and the child's first instructions. Returns the child's pid, or minus
/// the errno, in the parent; the child calls `entry(arg)` on its new stack and, should
/// that return, exits with its value.
#[cfg(target_arch = "x86_64")]
mod raw {
    use super::{CloneArgs, Entry};
    use nix::libc::{c_long, c_void};

    /// # Safety
    /// See [`super::spawn`].
    #[unsafe(naked)]
    pub unsafe extern "C" fn clone3(
        _args: *mut CloneArgs,
        _size: usize,
        _entry: Entry,
        _arg: *mut c_void,
    ) -> c_long {
        // rdi = args, rsi = size, rdx = entry, rcx = arg. `syscall` itself clobbers rcx
        // and r11; r8 and r9 reach the child as they were.
        core::arch::naked_asm!(
            "mov r8, rdx",
            "mov r9, rcx",
            "mov eax, {clone3}",
            "syscall",
            "test rax, rax",
            "jnz 2f",
            // The child, on its new stack: no frame above this one.
            "xor ebp, ebp",
            "mov rdi, r9",
            "call r8",
            "mov edi, eax",
            "mov eax, {exit}",
            "syscall",
            "ud2",
            "2:",
            "ret",
            clone3 = const 435,
            exit = const 60,
        )
    }
}

#[cfg(target_arch = "aarch64")]
mod raw {
    use super::{CloneArgs, Entry};
    use nix::libc::{c_long, c_void};

    /// # Safety
    /// See [`super::spawn`].
    #[unsafe(naked)]
    pub unsafe extern "C" fn clone3(
        _args: *mut CloneArgs,
        _size: usize,
        _entry: Entry,
        _arg: *mut c_void,
    ) -> c_long {
        // x0 = args, x1 = size, x2 = entry, x3 = arg; `svc` changes only x0, in both.
        core::arch::naked_asm!(
            "mov x8, #{clone3}",
            "svc #0",
            "cbnz x0, 2f",
            // The child, on its new stack: no frame above this one.
            "mov x29, xzr",
            "mov x30, xzr",
            "mov x0, x3",
            "blr x2",
            "mov x8, #{exit}",
            "svc #0",
            "brk #0",
            "2:",
            "ret",
            clone3 = const 435,
            exit = const 93,
        )
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
mod raw {
    use super::{CloneArgs, Entry};
    use nix::libc::{c_long, c_void};

    /// No wrapper for this architecture: the kernel's answer for a missing call.
    pub unsafe extern "C" fn clone3(
        _args: *mut CloneArgs,
        _size: usize,
        _entry: Entry,
        _arg: *mut c_void,
    ) -> c_long {
        -(nix::libc::ENOSYS as c_long)
    }
}
