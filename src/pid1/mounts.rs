//! Mounts: what /proc/self/mountinfo says, the early mounts, unmounting at shutdown.

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use std::path::{Path, PathBuf};

/// One line of /proc/self/mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub id: u32,
    pub parent: u32,
    /// The directory of the filesystem mounted here (a subtree for a bind mount, or a
    /// cgroup2 mount seen from a cgroup namespace).
    pub root: String,
    pub point: PathBuf,
    pub fstype: String,
    /// Propagation: unmounting a shared mount would reach its peers.
    pub shared: bool,
}

/// Parses mountinfo text; lines it cannot read are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let fields: Vec<&str> = left.split(' ').collect();
            let fstype = right.split(' ').next()?.to_owned();
            Some(MountEntry {
                id: fields.first()?.parse().ok()?,
                parent: fields.get(1)?.parse().ok()?,
                root: unescape(fields.get(3)?),
                point: PathBuf::from(unescape(fields.get(4)?)),
                fstype,
                shared: fields.iter().skip(6).any(|f| f.starts_with("shared:")),
            })
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as \ooo.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let code =
                (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(code);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn current() -> Vec<MountEntry> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|t| parse_mountinfo(&t))
        .unwrap_or_default()
}

pub fn is_mounted(point: &Path) -> bool {
    current().iter().any(|m| m.point == point)
}

/// Mounts `fstype` at `point` unless something is mounted there; says what it did.
pub fn ensure(fstype: &str, point: &str, flags: MsFlags, data: &str) -> Result<bool, String> {
    if is_mounted(Path::new(point)) {
        return Ok(false);
    }
    std::fs::create_dir_all(point).map_err(|e| format!("cannot create {point}: {e}"))?;
    let data = (!data.is_empty()).then_some(data);
    mount(Some(fstype), point, Some(fstype), flags, data)
        .map_err(|e| format!("cannot mount {fstype} on {point}: {e}"))?;
    Ok(true)
}

/// Filesystems the kernel provides that are never unmounted at shutdown.
const API_FILESYSTEMS: &[&str] = &[
    "proc",
    "sysfs",
    "devtmpfs",
    "devpts",
    "cgroup",
    "cgroup2",
    "securityfs",
    "debugfs",
    "tracefs",
    "pstore",
    "bpf",
    "configfs",
    "fusectl",
    "mqueue",
    "hugetlbfs",
    "rootfs",
    "efivarfs",
    "binfmt_misc",
    "autofs",
];

/// What unmounting did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Unmounted {
    pub unmounted: usize,
    pub remounted_read_only: usize,
    pub failed: Vec<String>,
}

/// The order to unmount in: deepest first, later mounts before earlier ones.
pub fn unmount_order(entries: &[MountEntry]) -> Vec<MountEntry> {
    let mut list: Vec<MountEntry> = entries
        .iter()
        .filter(|m| !API_FILESYSTEMS.contains(&m.fstype.as_str()))
        .cloned()
        .collect();
    // Mount ids are unique: unstable is the same order, and a smaller sort.
    list.sort_unstable_by(|a, b| {
        let depth = |m: &MountEntry| m.point.components().count();
        depth(b).cmp(&depth(a)).then(b.id.cmp(&a.id))
    });
    list
}

/// Unmounts every filesystem from mountinfo, deepest first; a busy one (and the root) is
/// remounted read-only instead, so nothing is left half-written.
pub fn unmount_all() -> Unmounted {
    let mut result = Unmounted::default();
    for entry in unmount_order(&current()) {
        let point = entry.point.as_path();
        if point != Path::new("/") && umount2(point, MntFlags::empty()).is_ok() {
            result.unmounted += 1;
            continue;
        }
        match mount(
            None::<&str>,
            point,
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        ) {
            Ok(()) => result.remounted_read_only += 1,
            // rootfs of an initramfs cannot be remounted; it holds nothing to lose.
            Err(_)
                if entry.fstype == "rootfs"
                    || point == Path::new("/") && entry.fstype == "tmpfs" => {}
            Err(e) => result.failed.push(format!("{}: {e}", point.display())),
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda rw
23 22 0:22 / /proc rw,nosuid - proc proc rw
24 22 0:23 / /run rw,nosuid shared:5 - tmpfs tmpfs rw,mode=755
25 24 0:24 / /run/user/1000 rw - tmpfs tmpfs rw
26 22 0:25 / /mnt/with\\040space rw - ext4 /dev/vdb rw
";

    #[test]
    fn parses_mountinfo() {
        let m = parse_mountinfo(SAMPLE);
        assert_eq!(m.len(), 5);
        assert_eq!(m[2].point, PathBuf::from("/run"));
        assert!(m[2].shared && !m[3].shared);
        assert_eq!(m[4].point, PathBuf::from("/mnt/with space"));
        assert_eq!(m[1].fstype, "proc");
    }

    #[test]
    fn unmounts_deepest_first_and_spares_api_filesystems() {
        let order: Vec<PathBuf> = unmount_order(&parse_mountinfo(SAMPLE))
            .into_iter()
            .map(|m| m.point)
            .collect();
        assert_eq!(
            order,
            [
                PathBuf::from("/run/user/1000"),
                PathBuf::from("/mnt/with space"),
                PathBuf::from("/run"),
                PathBuf::from("/")
            ]
        );
    }
}
