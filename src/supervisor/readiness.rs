//! Readiness probes: the effects behind `ready = { ... }` and forking pid files. Each runs
//! as a task that feeds `Ready` (or `MainPid`) to the runtime once, then ends; the runtime
//! aborts it when the service stops being activating. Polling happens only while a
//! service is starting: an idle ember has no timers.

use super::runtime::Feed;
use crate::config::Readiness;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

const POLL: Duration = Duration::from_millis(50);
const EXEC_RETRY: Duration = Duration::from_millis(250);

/// Starts the probe for a readiness kind that needs a task of its own (delay, tcp, file,
/// exec). Log and notify readiness are driven by the runtime from lines and messages.
pub fn start(
    readiness: &Readiness,
    name: String,
    run: u64,
    feed: mpsc::Sender<Feed>,
) -> Option<AbortHandle> {
    let task = match readiness.clone() {
        Readiness::Delay(d) => tokio::spawn(async move {
            tokio::time::sleep(d).await;
            let _ = feed.send(Feed::Ready { name, run }).await;
        }),
        Readiness::Tcp(addr) => tokio::spawn(async move {
            while tokio::net::TcpStream::connect(&addr).await.is_err() {
                tokio::time::sleep(POLL).await;
            }
            let _ = feed.send(Feed::Ready { name, run }).await;
        }),
        Readiness::File(path) => tokio::spawn(async move {
            while !path.exists() {
                tokio::time::sleep(POLL).await;
            }
            let _ = feed.send(Feed::Ready { name, run }).await;
        }),
        Readiness::Exec(argv) => tokio::spawn(async move {
            loop {
                // The runtime spawns the check so that its exit is reaped in one place.
                let (tx, rx) = oneshot::channel();
                if feed
                    .send(Feed::RunCheck {
                        name: name.clone(),
                        run,
                        argv: argv.clone(),
                        done: tx,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
                if rx.await.unwrap_or(false) {
                    let _ = feed.send(Feed::Ready { name, run }).await;
                    return;
                }
                tokio::time::sleep(EXEC_RETRY).await;
            }
        }),
        Readiness::Spawned
        | Readiness::Exit
        | Readiness::PidFile
        | Readiness::Log(_)
        | Readiness::Notify => return None,
    };
    Some(task.abort_handle())
}

/// Watches a forking daemon's pid file; feeds every pid it names (the runtime decides
/// whether it is the service's), until aborted.
// Called from two places (a spawn, a takeover): one copy, not one inlined into each.
#[inline(never)]
pub fn watch_pid_file(
    path: PathBuf,
    name: String,
    run: u64,
    feed: mpsc::Sender<Feed>,
) -> AbortHandle {
    tokio::spawn(async move {
        let mut last = None;
        loop {
            let pid = read_pid_file(&path);
            if pid.is_some() && pid != last {
                last = pid;
                if let Some(pid) = pid {
                    if feed
                        .send(Feed::MainPid {
                            name: name.clone(),
                            run,
                            pid,
                        })
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
            tokio::time::sleep(POLL).await;
        }
    })
    .abort_handle()
}

/// The pid a pid file names. It may have exited already: its exit status is kept.
///
/// Read in PID 1's main loop, from a file that the service (which often owns its
/// directory) may have made anything: a regular file only, looked at before it is opened
/// and again once open, and only its first bytes. A FIFO waited for a writer (PID 1
/// stopped); a link to /dev/zero would have been read until memory ran out; opening a
/// device does what that device does when opened (a watchdog is armed).
fn read_pid_file(path: &std::path::Path) -> Option<i32> {
    use std::io::Read;
    let mut options = std::fs::OpenOptions::new();
    let file =
        crate::filekind::open_checked(path, options.read(true), 0, crate::filekind::not_regular)
            .ok()?
            .ok()?;
    let mut text = String::new();
    file.take(64).read_to_string(&mut text).ok()?;
    text.trim().parse().ok().filter(|p| *p > 1)
}
