//! Service output that ember writes to files for the services, rotated by size
//! (`stdout = { file = "out.log", max_size = "1M", keep = 3 }`), as svlogd and s6-log do
//! for runit and s6.
//!
//! One writer thread for every file: PID 1's event loop never waits on a slow flash or
//! a full disk. The thread runs only while there are lines to write (see
//! [`Served`]): a thread for good made every spawn cost more. Lines reach it through a
//! bounded queue; when it is full, lines are dropped (and counted, and the count written
//! once there is room again) rather than slowing the service or ember, but for the
//! newest, which waits for room: the last line of a flood reaches the file. The service's
//! lines stay in `ember ctl logs` either way.

use crate::config::service::RotatedFile;
use crate::config::Output;
use crate::mailbox::Served;
use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Lines waiting for the writer, over all files.
const QUEUE: usize = 16 * 1024;

/// The most files the writer keeps open; the one written least recently is closed to
/// open another. Without a bound every file ever written stayed open in PID 1: an
/// instance's own file (`file = "worker-{instance}.log"`) for each instance ever made,
/// until ember ran out of file descriptors (found by a hostile review).
pub const MAX_OPEN: usize = 64;

/// A line for a file.
type Line = (Arc<RotatedFile>, String);

/// The queue of every file's lines, and its writer.
static WRITER: Served<Line> = Served::new(QUEUE, "ember-logfiles", write_all);

/// Waits, at most `limit`, until the lines queued are in their files: before an exit, an
/// exec or the shutdown's sync, which would lose them.
pub fn flush(limit: Duration) {
    WRITER.flush(limit);
}

/// Where one stream's lines go.
#[derive(Clone)]
pub struct Sink {
    tx: &'static Served<Line>,
    file: Arc<RotatedFile>,
    /// Lines not written because the queue was full, not yet said.
    dropped: u64,
    /// The newest line that found the queue full: it waits for room (see [`Sink::flush`])
    /// rather than being dropped, so that the last line of a flood, often the one that
    /// matters, reaches the file; a line that waited is dropped (and counted) only when a
    /// newer one takes its place.
    pending: Option<String>,
}

impl Sink {
    /// Where the lines of a stream with this output go, when ember writes them to a file.
    pub fn of(output: &Output) -> Option<Sink> {
        match output {
            Output::Rotated(file) => Some(Sink::onto(&WRITER, file)),
            _ => None,
        }
    }

    fn onto(tx: &'static Served<Line>, file: &Arc<RotatedFile>) -> Sink {
        Sink {
            tx,
            file: file.clone(),
            dropped: 0,
            pending: None,
        }
    }

    /// Queues a line without waiting.
    pub fn write(&mut self, line: String) {
        if !self.flush() {
            if self.pending.replace(line).is_some() {
                self.dropped = self.dropped.saturating_add(1);
            }
            return;
        }
        if let Err((_, line)) = self.send(line) {
            self.pending = Some(line);
        }
    }

    fn send(&self, line: String) -> Result<(), Line> {
        self.tx.send((self.file.clone(), line), |_| false)
    }

    /// Queues what waits, as far as there is room: the count of the lines dropped, then
    /// the line kept. Whether nothing waits any more. The reader calls it again while
    /// something waits, also once its service has gone quiet or has ended.
    pub fn flush(&mut self) -> bool {
        if self.dropped > 0 {
            let note = format!(
                "ember: {} lines were not written here: the disk was too slow",
                self.dropped
            );
            if self.send(note).is_err() {
                return false;
            }
            self.dropped = 0;
        }
        if let Some(line) = self.pending.take() {
            if let Err((_, line)) = self.send(line) {
                self.pending = Some(line);
                return false;
            }
        }
        true
    }

    /// Whether something waits for room (see [`Sink::flush`]).
    pub fn waiting(&self) -> bool {
        self.dropped > 0 || self.pending.is_some()
    }
}

/// How often an open file is looked at by its path: whether it is still the file there.
const RECHECK: Duration = Duration::from_secs(1);

/// An open file, how much is in it, when it was last written (a count of lines), and when
/// it was last seen to be the file its path names.
struct Open {
    file: File,
    size: u64,
    used: u64,
    checked: Instant,
}

impl Open {
    fn new(path: &Path, tick: u64) -> std::io::Result<Open> {
        let file = open_file(path)?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(Open {
            file,
            size,
            used: tick,
            checked: Instant::now(),
        })
    }
}

/// Whether `path` still names `file`: not when it was deleted or renamed away (`rm` or
/// `mv` of a log to make room), else ember wrote on into what no one could see, its room
/// on the disk held, until it reached max_size. When it cannot be told, it is taken to.
fn still_at(path: &Path, file: &File) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::symlink_metadata(path), file.metadata()) {
        (Ok(there), Ok(open)) => there.dev() == open.dev() && there.ino() == open.ino(),
        (Err(e), _) => e.kind() != std::io::ErrorKind::NotFound,
        (_, Err(_)) => true,
    }
}

/// What the writer keeps from one batch to the next, whichever thread it runs on: the
/// files open, and the failure last said for each file.
#[derive(Default)]
struct Files {
    open: HashMap<PathBuf, Open>,
    failing: HashMap<PathBuf, String>,
    tick: u64,
}

/// Each line takes 5 ms to write, as on a slow flash: for the tests (set by a status
/// request for `__slow_files`).
#[cfg(feature = "test-hooks")]
pub static SLOW: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The writer: appends each line to its file, rotating before a line would take the file
/// past its max_size.
fn write_all(lines: VecDeque<Line>) {
    static FILES: Mutex<Option<Files>> = Mutex::new(None);
    let mut files = FILES.lock().unwrap_or_else(|e| e.into_inner());
    let files = files.get_or_insert_with(Files::default);
    for (target, line) in lines {
        files.write(&target, line);
    }
}

impl Files {
    fn write(&mut self, target: &RotatedFile, line: String) {
        #[cfg(feature = "test-hooks")]
        if SLOW.load(std::sync::atomic::Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(5));
        }
        let bytes = fitted(line, target.max_size);
        self.tick += 1;
        match append(&mut self.open, target, &bytes, self.tick) {
            Ok(()) => {
                self.failing.remove(&target.path);
            }
            Err(e) => {
                // Said once per file until it works again: a full disk must not flood
                // the log with one line per line.
                let why = e.to_string();
                if self.failing.get(&target.path) != Some(&why) {
                    crate::log::warn!("cannot write {}: {why}", target.path.display());
                    // Bounded as `open` is: at worst a file's failure is said again.
                    if self.failing.len() >= MAX_OPEN {
                        self.failing.clear();
                    }
                    self.failing.insert(target.path.clone(), why);
                }
                self.open.remove(&target.path);
            }
        }
    }
}

/// A line and its newline, cut to fit a file of `max_size` when it alone would not (at a
/// character's boundary): a line is rotated into a file of its own when the one written
/// to is too full for it, and a line longer than the file would have taken it past its
/// bound (a 4096-byte line, the longest ember reads, went into a file of "4K" whole; one
/// of bytes that are not UTF-8, each written as the 3 bytes of U+FFFD, made it 12K).
fn fitted(mut line: String, max_size: u64) -> Vec<u8> {
    let room = usize::try_from(max_size.saturating_sub(1)).unwrap_or(usize::MAX);
    if line.len() > room {
        let mut end = room;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
    }
    let mut bytes = line.into_bytes();
    bytes.push(b'\n');
    bytes
}

fn append(
    open: &mut HashMap<PathBuf, Open>,
    target: &RotatedFile,
    bytes: &[u8],
    tick: u64,
) -> std::io::Result<()> {
    if !open.contains_key(&target.path) {
        if open.len() >= MAX_OPEN {
            let oldest = open
                .iter()
                .min_by_key(|(_, o)| o.used)
                .map(|(path, _)| path.clone());
            if let Some(oldest) = oldest {
                open.remove(&oldest);
            }
        }
        open.insert(target.path.clone(), Open::new(&target.path, tick)?);
    }
    let Some(current) = open.get_mut(&target.path) else {
        return Ok(());
    };
    current.used = tick;
    if current.checked.elapsed() >= RECHECK {
        current.checked = Instant::now();
        if !still_at(&target.path, &current.file) {
            *current = Open::new(&target.path, tick)?;
        } else if let Ok(meta) = current.file.metadata() {
            // Emptied in place (`: > app.log`) or written by another: counted afresh.
            current.size = meta.len();
        }
    }
    if current.size > 0 && current.size + bytes.len() as u64 > target.max_size {
        if target.keep <= 1 {
            // Emptied through the file open here, not by its path: whatever the path
            // names now is not emptied.
            current.file.set_len(0)?;
            current.size = 0;
        } else {
            rotate(&target.path, target.keep)?;
            *current = Open::new(&target.path, tick)?;
        }
    }
    if let Err((written, e)) = write_counted(&mut current.file, bytes) {
        // A full disk: the newest lines matter more than the oldest, so the oldest of
        // this file's own rotated files makes room (as svlogd does), once per line.
        // Without it every new line was lost while the old ones held the disk.
        if e.raw_os_error() != Some(nix::libc::ENOSPC) || !remove_oldest(target) {
            return Err(e);
        }
        // What the failed write left of the line goes; then the line, whole.
        if written > 0 {
            let end = current.file.metadata()?.len();
            current.file.set_len(end.saturating_sub(written as u64))?;
        }
        current.file.write_all(bytes)?;
    }
    current.size += bytes.len() as u64;
    Ok(())
}

/// Writes all of `bytes`; on an error, with how many of them went in before it.
fn write_counted(file: &mut File, bytes: &[u8]) -> Result<(), (usize, std::io::Error)> {
    let mut written = 0;
    while written < bytes.len() {
        match file.write(&bytes[written..]) {
            Ok(0) => return Err((written, std::io::ErrorKind::WriteZero.into())),
            Ok(n) => written += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err((written, e)),
        }
    }
    Ok(())
}

/// Removes the oldest rotated file of `target` (`path.<keep-1>`, else the next older
/// one...); whether there was one.
fn remove_oldest(target: &RotatedFile) -> bool {
    (1..target.keep).rev().any(|n| {
        let mut p = target.path.as_os_str().to_owned();
        p.push(format!(".{n}"));
        std::fs::remove_file(PathBuf::from(p)).is_ok()
    })
}

/// Opens a file to append to, creating it: a regular file, and only that. ember writes it
/// as root and rotates it by renaming it, so a device (rotating `/dev/null` renamed the
/// node away and put a plain file in its place), a FIFO (opening one that nothing read
/// waited forever, in the thread that writes every file) or a link, symbolic or hard
/// (written through, and with keep = 1 emptied, whatever it named) is refused, before it
/// is opened, and again once open (in case it was swapped in between).
fn open_file(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
        if let Some(fs) = crate::filekind::kernel_filesystem(dir) {
            return Err(std::io::Error::other(format!(
                "it is on a kernel filesystem ({fs}), not on a disk: ember neither writes nor rotates a file there"
            )));
        }
    }
    let refused = |meta: &std::fs::Metadata| {
        crate::filekind::not_a_file_of_its_own(meta).map(|why| {
            format!(
                "it {why}: ember writes only files it can rotate (for a device or a FIFO, write stdout = \"{}\", which the service writes itself)",
                path.display()
            )
        })
    };
    crate::filekind::open_checked(
        path,
        OpenOptions::new().create(true).append(true).mode(0o640),
        nix::libc::O_NOFOLLOW,
        refused,
    )?
    .map_err(std::io::Error::other)
}

/// `path.<keep-2>` → `path.<keep-1>` ... `path` → `path.1` (keep ≥ 2).
fn rotate(path: &Path, keep: u32) -> std::io::Result<()> {
    let numbered = |n: u32| {
        let mut p = path.as_os_str().to_owned();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    };
    for n in (1..keep - 1).rev() {
        let from = numbered(n);
        if from.exists() {
            std::fs::rename(&from, numbered(n + 1))?;
        }
    }
    std::fs::rename(path, numbered(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The last line of a flood that found the queue full reaches the file once there is
    /// room, after the count of the lines dropped before it (it used to be dropped: a
    /// flood that ended in silence lost its last line, the one that said how it ended).
    #[test]
    fn the_last_line_waits_for_room_and_the_dropped_are_counted_before_it() {
        let queue = Served::unserved(1);
        let file = Arc::new(RotatedFile {
            path: "/tmp/out.log".into(),
            max_size: 1024,
            keep: 2,
        });
        let mut sink = Sink::onto(queue, &file);
        for line in ["a", "b", "c"] {
            sink.write(line.to_owned());
        }
        assert!(sink.waiting());
        assert!(!sink.flush(), "no room yet");
        let mut written = Vec::new();
        while let Some((_, line)) = queue.take() {
            written.push(line);
            sink.flush();
        }
        assert_eq!(
            written,
            [
                "a",
                "ember: 1 lines were not written here: the disk was too slow",
                "c"
            ]
        );
        assert!(!sink.waiting());
    }

    #[test]
    fn files_rotate_and_stay_within_keep_times_max_size() {
        let dir = std::env::temp_dir().join(format!("ember-logfiles-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let target = RotatedFile {
            path: dir.join("sub/out.log"),
            max_size: 4096,
            keep: 3,
        };
        let mut open = HashMap::new();
        let line = [b'x'; 99];
        for tick in 0..1000 {
            append(&mut open, &target, &[&line[..], b"\n"].concat(), tick).unwrap();
        }
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let files = [
            target.path.clone(),
            dir.join("sub/out.log.1"),
            dir.join("sub/out.log.2"),
        ];
        for f in &files {
            assert!(
                size(f) > 0 && size(f) <= 4096,
                "{}: {}",
                f.display(),
                size(f)
            );
        }
        assert!(!dir.join("sub/out.log.3").exists());
        // keep = 1: one file, emptied when full.
        let one = RotatedFile {
            path: dir.join("one.log"),
            max_size: 4096,
            keep: 1,
        };
        for tick in 1000..1100 {
            append(&mut open, &one, &[&line[..], b"\n"].concat(), tick).unwrap();
        }
        assert!(size(&one.path) <= 4096);
        assert!(!dir.join("one.log.1").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Every file written stays open no longer than it is among the MAX_OPEN written
    /// last: a file per instance ever made no longer fills PID 1's fd table. A file
    /// closed and opened again is appended to, and still rotates at its max_size.
    #[test]
    fn the_files_kept_open_are_bounded() {
        let dir = std::env::temp_dir().join(format!("ember-logfiles-open-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let target = |n: usize| RotatedFile {
            path: dir.join(format!("out-{n}.log")),
            max_size: 1000,
            keep: 2,
        };
        let mut open = HashMap::new();
        let mut tick = 0;
        for round in 0..3 {
            for n in 0..MAX_OPEN * 3 {
                tick += 1;
                append(
                    &mut open,
                    &target(n),
                    format!("{round}:{n}\n").as_bytes(),
                    tick,
                )
                .unwrap();
                assert!(open.len() <= MAX_OPEN, "{} files open", open.len());
            }
        }
        let text = std::fs::read_to_string(target(7).path).unwrap();
        assert_eq!(text, "0:7\n1:7\n2:7\n");
        // Its size is read again when it is opened again: rotation still happens.
        let line = [b'y'; 99];
        for _ in 0..30 {
            for n in [1, 2] {
                tick += 1;
                append(&mut open, &target(n), &[&line[..], b"\n"].concat(), tick).unwrap();
            }
            for n in 100..100 + MAX_OPEN {
                tick += 1;
                append(&mut open, &target(n), b"z\n", tick).unwrap();
            }
        }
        let size = std::fs::metadata(target(1).path).unwrap().len();
        assert!(size <= 1000, "{size}");
        assert!(dir.join("out-1.log.1").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
