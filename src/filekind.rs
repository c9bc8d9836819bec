//! Paths from the configuration that PID 1 opens itself (output files, the watchdog
//! device, `[mqtt]`'s password and certificates): what one names, in words, and opening
//! or reading one without waiting. Opening a FIFO
//! that nothing reads waits for a reader, forever: PID 1 stopped answering at a plain
//! `stdout = "/a/fifo"` or a watchdog `device` that was one (found by a hostile review).

use std::fs::{File, FileType, OpenOptions};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// "a FIFO", "a directory", ...: what a file of this type is, for a message.
pub fn kind(file_type: FileType) -> &'static str {
    if file_type.is_file() {
        "a regular file"
    } else if file_type.is_dir() {
        "a directory"
    } else if file_type.is_symlink() {
        "a symbolic link"
    } else if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else if file_type.is_socket() {
        "a socket"
    } else {
        "not a file"
    }
}

/// Why the file `meta` describes cannot be run at all, as what follows its path in a
/// message ("is a directory; ..."); `None` when it may be a program. exec(2) says
/// "permission denied" for a directory, a FIFO and a file without x alike. Said the same
/// by `ember check`, a failed spawn and a refused `reexec`.
pub fn not_a_program(meta: &std::fs::Metadata) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    if meta.is_dir() {
        Some("is a directory; give the path of a program".to_owned())
    } else if !meta.is_file() {
        Some(format!("is {}, not a regular file", kind(meta.file_type())))
    } else if meta.permissions().mode() & 0o111 == 0 {
        Some("is not executable (chmod +x it)".to_owned())
    } else {
        None
    }
}

/// Why ember would not write a file of its own (a rotated output file) where `meta` is,
/// as what follows its path in a message: "is a FIFO, not a regular file", "has 2 names
/// (hard links)"; `None` for a regular file of one name. ember writes as root: a file
/// with another name (a hard link made to /etc/shadow, where links are not protected)
/// would be written, and emptied, under that one.
pub fn not_a_file_of_its_own(meta: &std::fs::Metadata) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    if !meta.is_file() {
        return Some(format!("is {}, not a regular file", kind(meta.file_type())));
    }
    (meta.nlink() > 1).then(|| format!("has {} names (hard links)", meta.nlink()))
}

/// The kernel filesystem (/proc, /sys, ...) that `dir` is on, if it is on one: no place
/// for a file that ember makes and rotates, and what a service prints must not reach the
/// kernel through PID 1 (`/proc/self/comm` renamed ember's main thread after the
/// service's output; `/proc/self/oom_score_adj` or `/proc/sysrq-trigger` would do worse).
pub fn kernel_filesystem(dir: &Path) -> Option<&'static str> {
    // <linux/magic.h>; f_type's width differs between targets: compared as 32 bits.
    const KERNEL: [(u32, &str); 11] = [
        (0x9fa0, "procfs"),
        (0x6265_6572, "sysfs"),
        (0x0027_e0eb, "cgroupfs"),
        (0x6367_7270, "cgroup2"),
        (0x6462_6720, "debugfs"),
        (0x7472_6163, "tracefs"),
        (0x7363_6673, "securityfs"),
        (0xcafe_4a11, "bpf"),
        (0x6265_6570, "configfs"),
        (0xde5e_81e4, "efivarfs"),
        (0x6165_676c, "pstore"),
    ];
    let found = nix::sys::statfs::statfs(dir).ok()?.filesystem_type().0 as u32;
    KERNEL
        .iter()
        .find(|(magic, _)| *magic == found)
        .map(|(_, name)| *name)
}

/// Opens `path` as `options` say, without waiting: a FIFO that nothing reads is an error
/// (ENXIO, said as such) rather than a wait, and a terminal does not become PID 1's
/// controlling terminal. Once open, the file blocks again, as its user expects (a service
/// writing to a FIFO waits for its reader, as it would have with a shell's redirection).
/// `flags`: other open(2) flags (`O_NOFOLLOW`), or 0.
pub fn open_without_waiting(
    options: &mut OpenOptions,
    flags: nix::libc::c_int,
    path: &Path,
) -> std::io::Result<File> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let file = options
        .custom_flags(flags | nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path)
        .map_err(|e| {
            let fifo = std::fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo());
            if fifo && e.raw_os_error() == Some(nix::libc::ENXIO) {
                std::io::Error::other("it is a FIFO that nothing reads")
            } else {
                e
            }
        })?;
    let flags = fcntl(&file, FcntlArg::F_GETFL).map_err(std::io::Error::from)?;
    let flags = OFlag::from_bits_truncate(flags) - OFlag::O_NONBLOCK;
    fcntl(&file, FcntlArg::F_SETFL(flags)).map_err(std::io::Error::from)?;
    Ok(file)
}

/// Opens `path` without waiting (see [`open_without_waiting`]), if it is a file that
/// `refused` does not refuse: looked at before it is opened (opening a device does what
/// that device does when opened: a watchdog is armed) and again once open (it may have
/// been swapped in between). A path with nothing there is opened as `options` say (made,
/// or not found). `Ok(Err(why))`: a file `refused` says why not of; with `O_NOFOLLOW` in
/// `flags`, a symbolic link is looked at as itself.
pub fn open_checked(
    path: &Path,
    options: &mut OpenOptions,
    flags: nix::libc::c_int,
    refused: impl Fn(&std::fs::Metadata) -> Option<String>,
) -> std::io::Result<Result<File, String>> {
    let before = if flags & nix::libc::O_NOFOLLOW != 0 {
        std::fs::symlink_metadata(path)
    } else {
        std::fs::metadata(path)
    };
    match before {
        Ok(meta) => {
            if let Some(why) = refused(&meta) {
                return Ok(Err(why));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let file = open_without_waiting(options, flags, path)?;
    Ok(match refused(&file.metadata()?) {
        Some(why) => Err(why),
        None => Ok(file),
    })
}

/// Why a file is not a regular file ("it is a FIFO, not a regular file"), for
/// [`open_checked`].
pub fn not_regular(meta: &std::fs::Metadata) -> Option<String> {
    (!meta.is_file()).then(|| format!("it is {}, not a regular file", kind(meta.file_type())))
}

/// The most a small file of the configuration (a password, a certificate or a CA bundle,
/// whose largest common one is about 220 KB) may hold.
pub const SMALL_FILE_MOST: u64 = 1 << 20;

/// Reads a small file the configuration names (`[mqtt] password_file`, `ca_file`...)
/// whole, as PID 1 does: a regular file only, of at most [`SMALL_FILE_MOST`] bytes. A FIFO
/// would wait for a writer, and `/dev/zero` never ends: either stopped PID 1. The error
/// says why, as what follows the path in a message ("it is a FIFO, not a regular file").
pub fn read_small_file(path: &Path) -> std::io::Result<String> {
    use std::io::{Error, Read};
    let file =
        open_checked(path, OpenOptions::new().read(true), 0, not_regular)?.map_err(Error::other)?;
    let mut bytes = Vec::new();
    file.take(SMALL_FILE_MOST + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > SMALL_FILE_MOST {
        return Err(Error::other(format!(
            "it is larger than {} KiB, the most ember reads of such a file",
            SMALL_FILE_MOST >> 10
        )));
    }
    String::from_utf8(bytes).map_err(|_| Error::other("it is not UTF-8 text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fifo_nothing_reads_is_an_error_not_a_wait_and_one_read_blocks_again() {
        let dir = std::env::temp_dir().join(format!("ember-filekind-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let e = open_without_waiting(OpenOptions::new().append(true), 0, &fifo).unwrap_err();
        assert_eq!(e.to_string(), "it is a FIFO that nothing reads");
        let kept = std::fs::metadata(&fifo).unwrap();
        assert_eq!(kind(kept.file_type()), "a FIFO");
        // With a reader it opens, and blocks again (O_NONBLOCK cleared).
        let reader = OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(&fifo)
            .unwrap();
        let file = open_without_waiting(OpenOptions::new().append(true), 0, &fifo).unwrap();
        let flags = nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_GETFL).unwrap();
        let flags = nix::fcntl::OFlag::from_bits_truncate(flags);
        assert!(!flags.contains(nix::fcntl::OFlag::O_NONBLOCK));
        assert!(flags.contains(nix::fcntl::OFlag::O_APPEND));
        drop((reader, file));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_small_file_is_a_regular_file_of_bounded_size() {
        let dir = std::env::temp_dir().join(format!("ember-small-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("password");
        std::fs::write(&good, "s3cret\n").unwrap();
        assert_eq!(read_small_file(&good).unwrap(), "s3cret\n");
        let fifo = dir.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let said = |path: &Path| read_small_file(path).unwrap_err().to_string();
        assert_eq!(said(&fifo), "it is a FIFO, not a regular file");
        assert_eq!(
            said(Path::new("/dev/zero")),
            "it is a character device, not a regular file"
        );
        assert_eq!(said(&dir), "it is a directory, not a regular file");
        let big = dir.join("big");
        std::fs::write(&big, vec![b'x'; SMALL_FILE_MOST as usize + 1]).unwrap();
        assert!(said(&big).starts_with("it is larger than 1024 KiB"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
