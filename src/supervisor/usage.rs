//! What a service's processes are and what they use: CPU, memory, tasks. From its cgroup
//! when it has one (which counts what its dead processes used, and the page cache it
//! caused), else summed over its live processes from /proc.
//!
//! Read only when asked (a status with details) or every `[system] metrics_interval`:
//! nothing here runs on its own.

use super::model::Pid;
use ember_ipc::Process;
use std::fs;
use std::path::Path;

/// One service's figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub cpu_usec: u64,
    pub memory_bytes: u64,
    pub tasks: u32,
}

/// A process as /proc/PID/stat tells it: the one reader of that file (the status, the
/// notify sender checks, the shutdown's list of what is left).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// R, S, D, Z, T...
    pub state: char,
    pub ppid: Pid,
    pub pgrp: Pid,
    pub session: Pid,
    /// The controlling terminal's device number; 0 for none.
    pub tty: i64,
    flags: u64,
    /// utime + stime + cutime + cstime, in clock ticks: its own CPU and its reaped children's.
    cpu_ticks: u64,
    threads: u32,
    rss_pages: u64,
}

impl Stat {
    /// Kernel threads (PF_KTHREAD) are no one's to end; signals do not reach them.
    pub fn kernel_thread(&self) -> bool {
        const PF_KTHREAD: u64 = 0x0020_0000;
        self.flags & PF_KTHREAD != 0
    }

    /// A zombie (its parent may be outside the namespace) or a dead one has ended.
    pub fn alive(&self) -> bool {
        !matches!(self.state, 'Z' | 'X' | 'x')
    }
}

pub fn stat(pid: Pid) -> Option<Stat> {
    Some(parse_stat(&read_stat(pid)?)?.1)
}

/// The process's stat and its command name (comm: at most 15 bytes, as it set it).
pub fn stat_and_name(pid: Pid) -> Option<(Stat, String)> {
    let text = read_stat(pid)?;
    let (name, stat) = parse_stat(&text)?;
    Some((stat, name.to_owned()))
}

fn read_stat(pid: Pid) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/stat")).ok()
}

/// The command name and the fields after it. The name is in parentheses and may itself
/// hold spaces and parentheses: it ends at the last ')'.
fn parse_stat(text: &str) -> Option<(&str, Stat)> {
    let (head, rest) = text.rsplit_once(')')?;
    let (_, name) = head.split_once('(')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let number = |i: usize| -> Option<u64> { fields.get(i)?.parse().ok() };
    let stat = Stat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
        session: fields.get(3)?.parse().ok()?,
        tty: fields.get(4)?.parse().ok()?,
        flags: number(6)?,
        cpu_ticks: number(11)? + number(12)? + number(13)? + number(14)?,
        threads: fields.get(17)?.parse().ok()?,
        rss_pages: number(21)?,
    };
    Some((name, stat))
}

/// The service's processes: its cgroup's members, else the members of its process
/// group; the main process in any case.
pub fn processes(cgroup: Option<&Path>, pgid: Option<Pid>, main: Option<Pid>) -> Vec<Pid> {
    let mut pids: Vec<Pid> = match (cgroup, pgid) {
        (Some(path), _) => super::cgroup::procs(path),
        (None, Some(pgid)) => fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<Pid>().ok())
            .filter(|pid| stat(*pid).is_some_and(|s| s.pgrp == pgid))
            .collect(),
        (None, None) => Vec::new(),
    };
    // Unsorted: /proc lists by pid, cgroup.procs nearly so, and people read the tree.
    if let Some(main) = main {
        if !pids.contains(&main) {
            pids.push(main);
        }
    }
    pids
}

/// The figures of `pids`, from the cgroup's files where it has them. `cpu_base` is the
/// cgroup's usage_usec when the run began: a run is charged its own CPU only.
pub fn measure(cgroup: Option<&Path>, cpu_base: u64, pids: &[Pid]) -> Usage {
    let stats: Vec<Stat> = pids.iter().filter_map(|p| stat(*p)).collect();
    let ticks = clock_ticks();
    let from_proc_cpu = stats.iter().map(|s| s.cpu_ticks).sum::<u64>() * 1_000_000 / ticks;
    let from_proc_memory = stats.iter().map(|s| s.rss_pages).sum::<u64>() * page_size();
    let from_proc_tasks = stats.iter().map(|s| s.threads).sum();
    let file = |name: &str| cgroup.and_then(|path| read_number(&path.join(name)));
    Usage {
        cpu_usec: cgroup
            .and_then(cpu_usage_usec)
            .map(|total| total.saturating_sub(cpu_base))
            .unwrap_or(from_proc_cpu),
        memory_bytes: file("memory.current").unwrap_or(from_proc_memory),
        tasks: file("pids.current")
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(from_proc_tasks),
    }
}

/// usage_usec of the cgroup's cpu.stat (there with or without the cpu controller).
pub fn cpu_usage_usec(cgroup: &Path) -> Option<u64> {
    fs::read_to_string(cgroup.join("cpu.stat"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .and_then(|n| n.trim().parse().ok())
}

/// At most this many processes are described (`tasks` counts them all).
const MAX_DESCRIBED: usize = 512;
/// A command line is cut at this many bytes.
const MAX_COMMAND: usize = 1024;

/// Each process with its parent and command line, the main one first.
pub fn describe(pids: &[Pid], main: Option<Pid>) -> Vec<Process> {
    // The main process first (the tree hangs from it), whatever its place among the pids.
    let main_pid = main.filter(|m| pids.contains(m));
    main_pid
        .iter()
        .chain(pids.iter().filter(|&&p| Some(p) != main_pid))
        .take(MAX_DESCRIBED)
        .filter_map(|&pid| {
            let stat = stat(pid)?;
            Some(Process {
                pid: pid as u32,
                ppid: stat.ppid as u32,
                command: command_line(pid),
            })
        })
        .collect()
}

/// argv joined by spaces; a process without one (a zombie, a kernel thread) by its name.
fn command_line(pid: Pid) -> String {
    use std::io::Read;
    // Its first MAX_COMMAND bytes only: an argv can be megabytes.
    let mut argv = Vec::new();
    let cut = fs::File::open(format!("/proc/{pid}/cmdline"))
        .and_then(|f| f.take(MAX_COMMAND as u64 + 1).read_to_end(&mut argv))
        .is_ok_and(|n| n > MAX_COMMAND);
    argv.truncate(MAX_COMMAND);
    let words: Vec<String> = argv
        .split(|b| *b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect();
    if words.is_empty() {
        let name = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        format!("[{}]", name.trim())
    } else if cut {
        format!("{}…", words.join(" "))
    } else {
        words.join(" ")
    }
}

fn read_number(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf only reads a constant of the C library.
    let ticks = unsafe { nix::libc::sysconf(nix::libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|t| *t > 0).unwrap_or(100)
}

fn page_size() -> u64 {
    // SAFETY: as above.
    let size = unsafe { nix::libc::sysconf(nix::libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|s| *s > 0).unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_stat_line_whose_command_has_parentheses_and_spaces() {
        let line = "4242 (my (odd) app) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 7 3 20 0 3 0 12345 1000000 2560 18446744073709551615";
        let (name, stat) = parse_stat(line).unwrap();
        assert_eq!(name, "my (odd) app");
        assert_eq!(
            stat,
            Stat {
                state: 'S',
                ppid: 1,
                pgrp: 4242,
                session: 4242,
                tty: 0,
                flags: 4194560,
                cpu_ticks: 310,
                threads: 3,
                rss_pages: 2560,
            }
        );
        assert!(!stat.kernel_thread() && stat.alive());
        assert_eq!(parse_stat("4242 (truncated"), None);
        assert_eq!(parse_stat("4242 (short) S 1 4242"), None);
        let with = |head: &str| format!("{head} 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0");
        let (_, shell) = parse_stat(&with("9 (bash) S 1 9 9 34816 9 4194560")).unwrap();
        assert_eq!((shell.tty, shell.flags), (34816, 4194560));
        let (_, kthread) = parse_stat(&with("2 (kthreadd) S 0 0 0 0 -1 2129984")).unwrap();
        assert!(kthread.kernel_thread());
        let (_, zombie) = parse_stat(&with("7 (sh) Z 1 7 7 0 -1 4194564")).unwrap();
        assert!(!zombie.alive());
    }

    /// A service decides how many processes it has and how long their command lines are
    /// (megabytes each, within ARG_MAX): a status with details must not cost PID 1 their
    /// sum. Each line is cut, and so is the list (`tasks` still counts them all).
    #[test]
    fn described_processes_are_bounded_in_number_and_length() {
        let long = "x".repeat(100 * 1024);
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 1000; :", "sh"])
            .args(std::iter::repeat_n(long.as_str(), 8))
            .spawn()
            .expect("sh");
        let pid = child.id() as Pid;
        // (spawn returns once sh is exec'd: its command line is there.)
        let described = describe(&[pid], Some(pid));
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(described.len(), 1);
        assert!(
            described[0].command.len() <= MAX_COMMAND + 8,
            "{} bytes",
            described[0].command.len()
        );
        let me = std::process::id() as Pid;
        let many = vec![me; MAX_DESCRIBED + 100];
        assert_eq!(describe(&many, None).len(), MAX_DESCRIBED);
    }

    #[test]
    fn measures_this_process_from_proc() {
        let me = std::process::id() as Pid;
        let usage = measure(None, 0, &[me]);
        assert!(usage.memory_bytes > 1 << 20, "{usage:?}");
        assert!(usage.tasks >= 1, "{usage:?}");
        let described = describe(&[me], Some(me));
        assert_eq!(described[0].pid, me as u32);
        assert!(!described[0].command.is_empty());
    }
}
