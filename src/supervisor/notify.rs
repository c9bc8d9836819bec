//! The sd_notify protocol: a datagram socket per service at $NOTIFY_SOCKET.
//!
//! One socket per service (not one shared socket) means a message is tied to its service
//! by where it came, without mapping the sender's pid to a service. Who sent it is still
//! checked (SCM_CREDENTIALS): one of the service's processes, or one gone before its
//! message is read (as `systemd-notify` may be) of root's, ember's or the service's user.

use super::runtime::Feed;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;
use tokio::io::Interest;
use tokio::net::UnixDatagram;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

/// The directory of this ember's notify sockets.
pub use crate::config::control::notify_dir as dir_for;
/// Where a service's notify socket lives, in the directory of [`dir_for`].
pub use crate::config::control::notify_socket_in as socket_path;

/// The longest message read, as systemd's (PIPE_BUF): a longer one is ignored whole.
const MESSAGE_MOST: usize = 4096;

/// One datagram into `buf`; its whole length, which is more than `buf` holds when it was
/// cut (MSG_TRUNC). Without room for control messages: fds sent with it (SCM_RIGHTS) are
/// closed by the kernel, never installed in ember.
fn receive(socket: &UnixDatagram, buf: &mut [u8]) -> std::io::Result<(usize, Option<(i32, u32)>)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixAddr, UnixCredentials};
    // Room for the sender's credentials only: fds sent with them (SCM_RIGHTS, systemd's
    // FDSTORE=1) find none and are closed by the kernel; any that came are closed here.
    let mut control = nix::cmsg_space!(UnixCredentials);
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let msg = recvmsg::<UnixAddr>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut control),
        MsgFlags::MSG_TRUNC | MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(std::io::Error::from)?;
    let mut sender = None;
    for cmsg in msg.cmsgs().into_iter().flatten() {
        match cmsg {
            ControlMessageOwned::ScmCredentials(creds) => sender = Some((creds.pid(), creds.uid())),
            ControlMessageOwned::ScmRights(fds) => {
                for fd in fds {
                    // SAFETY: installed in ember by this receive, owned by no one else.
                    drop(unsafe {
                        <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd)
                    });
                }
            }
            _ => {}
        }
    }
    Ok((msg.bytes, sender))
}

/// A service's notify socket being read: the task that reads it, and the socket's fd,
/// which a reexec hands to the next binary. Bound again instead, a message sent while the
/// binaries changed was lost (and a service timed out waiting to be ready), and so was
/// every message of a service that connected its socket once (the old socket was gone).
pub struct Listening {
    task: AbortHandle,
    fd: std::os::fd::RawFd,
}

impl Listening {
    pub fn abort(&self) {
        self.task.abort();
    }

    /// The socket's fd, while the task holds it (until aborted).
    pub fn fd(&self) -> std::os::fd::RawFd {
        self.fd
    }
}

/// Binds the service's socket and forwards every message to the runtime, with who sent
/// it, until aborted.
pub fn listen(
    path: &Path,
    owner: Option<(u32, u32)>,
    name: String,
    run: u64,
    feed: mpsc::Sender<Feed>,
) -> std::io::Result<Listening> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
        // ember's, whatever its umask: under umask 000 anyone could have replaced a socket.
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    }
    // sun_path holds 108 bytes with its NUL: say so plainly rather than "invalid argument".
    if path.as_os_str().len() > 107 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "the path is {} bytes, longer than a socket path may be (107); put [control] socket in a shorter directory",
                path.as_os_str().len()
            ),
        ));
    }
    let _ = std::fs::remove_file(path);
    let socket = UnixDatagram::bind(path)?;
    // Anyone may write to it (0666, whatever ember's umask), as to systemd's: a daemon
    // started as root may drop to a user of its own before it says READY=1. Who wrote is
    // checked instead (SCM_CREDENTIALS): see `Runtime::heard_from`.
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o666))?;
    // Who sent each message: only the service's own processes are heard.
    nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::PassCred, &true)?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
    }
    Ok(serve(socket, owner, name, run, feed))
}

/// Reads the socket a previous binary bound (handed over at a reexec, as `fd`), with what
/// was sent to it meanwhile still queued, as [`listen`] reads one it binds.
pub fn adopt(
    fd: std::os::fd::OwnedFd,
    owner: Option<(u32, u32)>,
    name: String,
    run: u64,
    feed: mpsc::Sender<Feed>,
) -> std::io::Result<Listening> {
    let socket = std::os::unix::net::UnixDatagram::from(fd);
    socket.set_nonblocking(true)?;
    let socket = UnixDatagram::from_std(socket)?;
    nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::PassCred, &true)?;
    Ok(serve(socket, owner, name, run, feed))
}

/// Forwards every message on `socket` to the runtime, with who sent it, until aborted.
// Called from two places (a spawn, a takeover): one copy, not one inlined into each.
#[inline(never)]
fn serve(
    socket: UnixDatagram,
    owner: Option<(u32, u32)>,
    name: String,
    run: u64,
    feed: mpsc::Sender<Feed>,
) -> Listening {
    let fd = socket.as_raw_fd();
    let task = tokio::spawn(async move {
        // A sender is trusted when it is root, ember's user or the service's: one of
        // another user is heard only while it is alive and the service's.
        let service_uid = owner.map(|(uid, _)| uid);
        let ember_uid = nix::unistd::geteuid().as_raw();
        let trust = move |uid: u32| uid == 0 || uid == ember_uid || Some(uid) == service_uid;
        let tell = |(sender, trusted): (i32, bool), message| Feed::Notify {
            name: name.clone(),
            run,
            sender,
            trusted,
            message,
        };
        let mut buf = vec![0u8; MESSAGE_MOST];
        let mut told_too_long = false;
        loop {
            let received = socket
                .async_io(Interest::READABLE, || receive(&socket, &mut buf))
                .await;
            let Ok((n, credentials)) = received else {
                return;
            };
            // The kernel always gives them (SO_PASSCRED): none is no one's to trust.
            let sender = credentials.map_or((0, false), |(pid, uid)| (pid, trust(uid)));
            // Cut at the buffer: a value cut in the middle would be taken as said.
            if n > buf.len() {
                if !told_too_long {
                    told_too_long = true;
                    crate::log::warn!(
                        "{name}: ignoring a notify message of {n} bytes (from pid {}), longer than the {MESSAGE_MOST} a message may be (as systemd); later ones are ignored without a word",
                        sender.0
                    );
                }
                continue;
            }
            for message in parse(&buf[..n]) {
                if feed.send(tell(sender, message)).await.is_err() {
                    return;
                }
            }
        }
    });
    Listening {
        task: task.abort_handle(),
        fd,
    }
}

/// One thing a service said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Ready,
    Stopping,
    Watchdog,
    /// WATCHDOG=trigger: the service found itself broken.
    WatchdogTrigger,
    Status(String),
    MainPid(i32),
    /// EXTEND_TIMEOUT_USEC=: the start or stop timeout is at least this from now.
    ExtendTimeout(Duration),
}

/// The most EXTEND_TIMEOUT_USEC= is taken for (a year, the longest duration the
/// configuration takes): a larger one would overflow ember's clock.
const EXTEND_MOST: Duration = Duration::from_secs(365 * 24 * 3600);

/// Parses a datagram of newline-separated KEY=VALUE assignments; unknown keys are ignored.
pub fn parse(datagram: &[u8]) -> Vec<Message> {
    let text = String::from_utf8_lossy(datagram);
    text.lines()
        .filter_map(|line| {
            let (key, value) = line.split_once('=')?;
            match key {
                "READY" if value == "1" => Some(Message::Ready),
                "STOPPING" if value == "1" => Some(Message::Stopping),
                "WATCHDOG" if value == "1" => Some(Message::Watchdog),
                "WATCHDOG" if value == "trigger" => Some(Message::WatchdogTrigger),
                "STATUS" => Some(Message::Status(value.chars().take(256).collect())),
                "MAINPID" => value.parse().ok().filter(|p| *p > 0).map(Message::MainPid),
                "EXTEND_TIMEOUT_USEC" => value.parse().ok().map(|usec| {
                    Message::ExtendTimeout(Duration::from_micros(usec).min(EXTEND_MOST))
                }),
                _ => None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_assignments() {
        let m = parse(
            b"READY=1\nSTATUS=listening on 80\nMAINPID=42\nWATCHDOG=1\nX=1\nMAINPID=-3\nREADY=0\nEXTEND_TIMEOUT_USEC=5000000\nEXTEND_TIMEOUT_USEC=18446744073709551615\nEXTEND_TIMEOUT_USEC=-1\nWATCHDOG=trigger",
        );
        assert_eq!(
            m,
            [
                Message::Ready,
                Message::Status("listening on 80".into()),
                Message::MainPid(42),
                Message::Watchdog,
                Message::ExtendTimeout(Duration::from_secs(5)),
                Message::ExtendTimeout(EXTEND_MOST),
                Message::WatchdogTrigger,
            ]
        );
    }
}
