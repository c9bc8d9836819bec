//! The hardware watchdog (`[system] watchdog`): opened at start, petted by the main loop
//! at half its timeout, and at a clean shutdown closed with the magic 'V' or left armed
//! across reboot(2).
//!
//! Only the main loop pets it (`Runtime::run` wakes for it, and for nothing else when
//! idle), so a main loop that stalls stops the petting and the board is reset. Once the
//! main loop has ended for a poweroff, reboot or halt, [`Watchdog::keep_petting`] pets it
//! from a thread through the last steps (SIGTERM/SIGKILL to what is left, sync, unmount),
//! for a bounded time, until [`Petting::finish`] closes it or leaves it armed just before
//! reboot(2).
//!
//! Dropping a [`Watchdog`] without [`Watchdog::disarm`] (a panic unwinding the main
//! loop) closes it without the magic character: the kernel keeps it running, and with
//! nothing to pet it the board is reset. That is the point of it.

use super::Power;
use crate::config::watchdog::{OnShutdown, WatchdogConfig};
use crate::mailbox::Mailbox;
use nix::libc::c_int;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// `struct watchdog_info` of <linux/watchdog.h>.
#[repr(C)]
struct Info {
    options: u32,
    firmware_version: u32,
    identity: [u8; 32],
}

// <linux/watchdog.h>: WDIOC_GETSUPPORT, WDIOC_GETBOOTSTATUS, WDIOC_KEEPALIVE,
// WDIOC_SETTIMEOUT, WDIOC_GETTIMEOUT.
nix::ioctl_read!(get_support, b'W', 0, Info);
nix::ioctl_read!(get_boot_status, b'W', 2, c_int);
nix::ioctl_read!(keep_alive, b'W', 5, c_int);
nix::ioctl_readwrite!(set_timeout, b'W', 6, c_int);
nix::ioctl_read!(get_timeout, b'W', 7, c_int);
/// WDIOF_CARDRESET: the last reboot was caused by the watchdog.
const CARD_RESET: c_int = 0x0020;

pub struct Watchdog {
    file: File,
    pub device: PathBuf,
    identity: Option<String>,
    /// The timeout in force, in seconds.
    timeout: u32,
    pet_every: Duration,
    last_pet: Instant,
    pets: u64,
    on_shutdown: OnShutdown,
    reset_by_watchdog: bool,
    /// A pet failed and it was logged: the next failure is not, until one succeeds.
    failing: bool,
}

impl Watchdog {
    /// Opens the device (which arms it), sets its timeout and pets it once. On an error
    /// nothing is left open, and nothing was written to a device that is not a watchdog.
    pub fn open(config: &WatchdogConfig) -> Result<Watchdog, String> {
        // Only a character device, looked at before it is opened and again once open
        // (filekind::open_checked): opening a FIFO nothing reads waited for a reader, PID
        // 1 with it, and opening some other device does what that device does when opened.
        let device = config.device.display();
        let not_a_device = |meta: &std::fs::Metadata| {
            use std::os::unix::fs::FileTypeExt;
            let file_type = meta.file_type();
            (!file_type.is_char_device()).then(|| {
                format!(
                    "{device} is {}, not a character device",
                    crate::filekind::kind(file_type)
                )
            })
        };
        let file = crate::filekind::open_checked(
            &config.device,
            std::fs::OpenOptions::new().write(true),
            0,
            not_a_device,
        )
        .map_err(|e| format!("cannot open {device}: {e}"))??;
        Watchdog::set_up(file, config)
    }

    /// The device a previous binary held open, handed over at a reexec (opening it again
    /// would fail: a watchdog has one opener), set up as `open` does.
    pub fn adopt(fd: std::os::fd::RawFd, config: &WatchdogConfig) -> Result<Watchdog, String> {
        // SAFETY: the fd was handed to this process for this alone.
        let file = unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        let _ = crate::supervisor::handover::close_on_exec(fd, true);
        Watchdog::set_up(file, config)
    }

    fn set_up(file: File, config: &WatchdogConfig) -> Result<Watchdog, String> {
        let device = config.device.display();
        let fd = file.as_raw_fd();
        let mut info = Info {
            options: 0,
            firmware_version: 0,
            identity: [0; 32],
        };
        // SAFETY: fd is open for the call; info is a valid watchdog_info.
        if let Err(e) = unsafe { get_support(fd, &mut info) } {
            // Not a watchdog (a tty, /dev/null...): closed as it is, nothing written.
            return Err(format!(
                "{device} is not a watchdog device (WDIOC_GETSUPPORT: {e})"
            ));
        }
        let identity = String::from_utf8_lossy(&info.identity)
            .trim_end_matches('\0')
            .trim()
            .to_owned();
        let mut status: c_int = 0;
        // SAFETY: as above.
        let reset_by_watchdog =
            unsafe { get_boot_status(fd, &mut status) }.is_ok() && status & CARD_RESET != 0;
        let wanted = config.timeout.as_secs().min(c_int::MAX as u64) as c_int;
        let mut timeout = wanted;
        // SAFETY: as above. The driver writes back the timeout it set (it may round it).
        let set = unsafe { set_timeout(fd, &mut timeout) };
        let timeout = match set {
            Ok(_) if timeout > 0 => timeout,
            result => {
                let why = match result {
                    Err(e) => e.to_string(),
                    Ok(_) => "it reported no timeout".to_owned(),
                };
                let mut driver: c_int = 0;
                // SAFETY: as above.
                match unsafe { get_timeout(fd, &mut driver) } {
                    Ok(_) if driver > 0 => {
                        crate::log::warn!("watchdog: {device} would not take a timeout of {wanted} s ({why}); using the driver's, {driver} s");
                        driver
                    }
                    _ => {
                        crate::log::warn!("watchdog: {device} would neither take a timeout of {wanted} s ({why}) nor tell its own; petting it as if it were {wanted} s");
                        wanted
                    }
                }
            }
        };
        let timeout = timeout as u32;
        let now = Instant::now();
        let mut watchdog = Watchdog {
            file,
            device: config.device.clone(),
            identity: (!identity.is_empty()).then_some(identity),
            timeout,
            pet_every: Duration::from_millis(u64::from(timeout) * 500),
            last_pet: now,
            pets: 0,
            on_shutdown: config.on_shutdown,
            reset_by_watchdog,
            failing: false,
        };
        watchdog.pet(now);
        Ok(watchdog)
    }

    /// A reload: the same device with other settings. A new timeout is set on the open
    /// device (petting it).
    pub fn reconfigure(&mut self, config: &WatchdogConfig) {
        self.on_shutdown = config.on_shutdown;
        let wanted = config.timeout.as_secs().min(c_int::MAX as u64) as c_int;
        if wanted as u32 == self.timeout {
            return;
        }
        let mut timeout = wanted;
        // SAFETY: the file is open; the driver writes back the timeout it set.
        match unsafe { set_timeout(self.file.as_raw_fd(), &mut timeout) } {
            Ok(_) if timeout > 0 => {
                self.timeout = timeout as u32;
                self.pet_every = Duration::from_millis(u64::from(self.timeout) * 500);
                self.last_pet = Instant::now();
                self.pets += 1;
                crate::log::info!(
                    "watchdog: {} timeout now {} s",
                    self.device.display(),
                    self.timeout
                );
            }
            result => crate::log::warn!(
                "watchdog: {} would not take a timeout of {wanted} s ({}); it stays {} s",
                self.device.display(),
                result.err().map(|e| e.to_string()).unwrap_or_default(),
                self.timeout
            ),
        }
    }

    /// When the next pet is due.
    pub fn due(&self) -> Instant {
        self.last_pet + self.pet_every
    }

    /// Pets it: WDIOC_KEEPALIVE, or a write for drivers without it.
    pub fn pet(&mut self, now: Instant) {
        let fd = self.file.as_raw_fd();
        let mut unused: c_int = 0;
        // SAFETY: the file is open; the argument is ignored.
        let result = unsafe { keep_alive(fd, &mut unused) }
            .map(drop)
            .or_else(|_| self.file.write_all(b"\0").map_err(|e| e.to_string()));
        match result {
            Ok(()) => {
                self.last_pet = now;
                self.pets += 1;
                if std::mem::take(&mut self.failing) {
                    crate::log::info!("watchdog: {} petted again", self.device.display());
                }
            }
            Err(e) if !self.failing => {
                self.failing = true;
                // Try again at the next wakeup, not at once.
                self.last_pet = now;
                crate::log::error!(
                    "watchdog: cannot pet {}: {e}; the board will be reset if this goes on",
                    self.device.display()
                );
            }
            Err(_) => self.last_pet = now,
        }
    }

    /// Stops it (the magic close) and closes it: ember exits, or a reload removed it or
    /// moved it to another device.
    pub fn disarm(mut self) {
        match self.file.write_all(b"V") {
            Ok(()) => crate::log::info!(
                "watchdog: {} closed (magic close): no longer watching",
                self.device.display()
            ),
            Err(e) => crate::log::warn!(
                "watchdog: cannot write the magic close to {}: {e}; it stays armed",
                self.device.display()
            ),
        }
    }

    /// For the status: as of `now`, with the time of the last pet or not (events).
    pub fn status(&self, with_last_pet: bool) -> ember_ipc::WatchdogStatus {
        let last_pet = with_last_pet.then(|| {
            let ago = self.last_pet.elapsed();
            crate::supervisor::status::usec(SystemTime::now() - ago)
        });
        ember_ipc::WatchdogStatus {
            device: self.device.display().to_string(),
            identity: self.identity.clone(),
            armed: true,
            timeout_sec: self.timeout,
            pet_interval_ms: self.pet_every.as_millis() as u64,
            pets: self.pets,
            last_pet_usec: last_pet,
            on_shutdown: self.on_shutdown.word().to_owned(),
            reset_by_watchdog: self.reset_by_watchdog,
            error: None,
        }
    }

    /// What the log says once it is open.
    pub fn describe(&self) -> String {
        let mut text = format!("watchdog: {}", self.device.display());
        if let Some(identity) = &self.identity {
            text.push_str(&format!(" ({identity})"));
        }
        text.push_str(&format!(
            " armed: timeout {} s, petted every {} ms by the main loop; on shutdown: {}",
            self.timeout,
            self.pet_every.as_millis(),
            self.on_shutdown.word()
        ));
        text
    }

    /// The open device's fd, for `reexec`: the next binary keeps it open and pets it.
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        self.file.as_raw_fd()
    }

    pub fn reset_by_watchdog(&self) -> bool {
        self.reset_by_watchdog
    }

    /// After the main loop, for a poweroff, reboot or halt: a thread pets it through the
    /// last steps of the shutdown, for at most `limit`; then it is left to fire (a
    /// shutdown stuck that long is reset).
    pub fn keep_petting(mut self, limit: Duration) -> Petting {
        let asked: Arc<Mailbox<Power>> = Arc::new(Mailbox::new(1));
        let done: Arc<Mailbox<()>> = Arc::new(Mailbox::new(1));
        let (ask, finished) = (asked.clone(), done.clone());
        let spawned = std::thread::Builder::new()
            .name("watchdog".into())
            .spawn(move || {
                let started = Instant::now();
                loop {
                    let wait = self.due().saturating_duration_since(Instant::now());
                    if let Some(power) = asked.recv_timeout(wait) {
                        self.finish(power);
                        let _ = finished.try_send(());
                        return;
                    }
                    if Arc::strong_count(&asked) == 1 {
                        return; // nobody will ask any more: the device is closed as is
                    }
                    if started.elapsed() < limit {
                        self.pet(Instant::now());
                    } else {
                        crate::log::error!("watchdog: the shutdown has taken more than {} s; no longer petting {}: it will reset the board", limit.as_secs(), self.device.display());
                        // Held open, unpetted, until reboot(2) or the reset.
                        std::mem::forget(self);
                        return;
                    }
                }
            });
        if let Err(e) = spawned {
            crate::log::error!("watchdog: cannot start petting it through the shutdown: {e}");
        }
        Petting { ask, done }
    }

    /// Just before reboot(2): the magic close, or a last pet and the device left open.
    fn finish(mut self, power: Power) {
        let keep = match self.on_shutdown {
            OnShutdown::Keep => true,
            OnShutdown::Close => false,
            OnShutdown::Auto => power == Power::Reboot,
        };
        if keep {
            self.pet(Instant::now());
            crate::log::info!(
                "watchdog: {} left armed for the {} (timeout {} s)",
                self.device.display(),
                power.word(),
                self.timeout
            );
            std::mem::forget(self);
        } else {
            self.disarm();
        }
    }
}

/// The watchdog in the hands of the shutdown's petting thread.
pub struct Petting {
    ask: Arc<Mailbox<Power>>,
    done: Arc<Mailbox<()>>,
}

impl Petting {
    /// Closes the watchdog or leaves it armed, as `on_shutdown` says for `power`, and
    /// waits (briefly) until that is done.
    pub fn finish(self, power: Power) {
        if self.ask.try_send(power).is_ok() {
            let _ = self.done.recv_timeout(Duration::from_secs(1));
        }
    }
}
