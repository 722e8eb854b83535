//! Owns signal handling. `Signals::block` runs first in `main`, before any
//! thread exists, so every thread (the HTTP client's runtime included)
//! inherits a mask with all signals blocked. Signals are then consumed
//! synchronously from one signalfd; no handler is ever installed. Also
//! records what the shim inherited, so the child gets it back.

use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::mpsc;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{pthread_sigmask, sigaction, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::{debug, info, warn};

/// Signals raised by a fault in the shim itself. They stay unblocked so a
/// bug crashes the shim instead of hanging it.
const FAULT_SIGNALS: &[Signal] = &[
    Signal::SIGSEGV,
    Signal::SIGBUS,
    Signal::SIGFPE,
    Signal::SIGILL,
    Signal::SIGTRAP,
    Signal::SIGABRT,
    Signal::SIGSYS,
];

/// Signals that abort the start-up when they arrive before the command runs.
pub const STOP_SIGNALS: &[i32] = &[nix::libc::SIGTERM, nix::libc::SIGINT, nix::libc::SIGQUIT, nix::libc::SIGHUP];

/// What the shim inherited and must hand back to the child: the signal mask
/// and the disposition of SIGPIPE, the one signal whose disposition a Rust
/// program's runtime would otherwise change.
#[derive(Clone, Copy)]
pub struct Inherited {
    pub mask: SigSet,
    pub sigpipe: SigAction,
}

/// A signal read from the signalfd.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    pub number: i32,
    /// True when the kernel raised it, as a terminal does for Ctrl-C, rather
    /// than a process calling `kill`.
    pub from_kernel: bool,
}

pub struct Signals {
    fd: Option<SignalFd>,
    pub inherited: Inherited,
}

impl Signals {
    /// Blocks every signal except the fault signals and opens the signalfd
    /// that reads them. Failures are reported by `read`, because at this
    /// point the logger is not configured yet.
    pub fn block() -> Signals {
        let mut blocked = SigSet::all();
        for signal in FAULT_SIGNALS {
            blocked.remove(*signal);
        }
        let mut mask = SigSet::empty();
        let _ = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&blocked), Some(&mut mask));
        let query = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
        // SAFETY: installing SIG_DFL for SIGPIPE installs no handler, so no
        // handler code can run, and the original action is restored at once.
        let sigpipe = unsafe {
            let previous = sigaction(Signal::SIGPIPE, &query);
            if let Ok(previous) = previous {
                let _ = sigaction(Signal::SIGPIPE, &previous);
            }
            previous.unwrap_or(query)
        };
        let fd = SignalFd::with_flags(&blocked, SfdFlags::SFD_CLOEXEC).ok();
        Signals { fd, inherited: Inherited { mask, sigpipe } }
    }

    /// Waits for the next signal; returns its number. Blocks without using
    /// CPU.
    pub fn read(&self) -> Option<i32> {
        self.read_received().map(|received| received.number)
    }

    /// Waits for the next signal; returns it with where it came from.
    pub fn read_received(&self) -> Option<Received> {
        let Some(fd) = &self.fd else {
            warn!("failed to open a signalfd; signals are not handled");
            std::thread::sleep(std::time::Duration::from_secs(1));
            return None;
        };
        match fd.read_signal() {
            Ok(Some(info)) => Some(Received {
                number: i32::try_from(info.ssi_signo).ok()?,
                from_kernel: info.ssi_code == nix::libc::SI_KERNEL,
            }),
            Ok(None) | Err(Errno::EINTR) | Err(Errno::EAGAIN) => None,
            Err(error) => {
                warn!("failed to read a signal: {error}");
                None
            }
        }
    }

    /// Waits up to `timeout` (forever when `None`) for the next signal.
    pub fn read_timeout(&self, timeout: Option<std::time::Duration>) -> Option<Received> {
        let Some(limit) = timeout else {
            return self.read_received();
        };
        let Some(fd) = &self.fd else {
            std::thread::sleep(limit);
            return None;
        };
        // Round up so a wait of 0.4 ms does not turn into a busy loop.
        let millis = limit.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX)) {
            Ok(0) => None,
            Ok(_) => self.read_received(),
            Err(Errno::EINTR) => None,
            Err(error) => {
                debug!("poll failed: {error}");
                std::thread::sleep(limit);
                None
            }
        }
    }

    /// Runs `work` on another thread while this one watches for signals.
    /// A stop signal (TERM, INT, QUIT, HUP) ends the wait at once with
    /// `Err(signal)`; the work is abandoned and the caller exits. Other
    /// signals are logged and discarded because the command does not exist
    /// yet to receive them.
    pub fn wait_during<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T, i32> {
        let (sender, receiver) = mpsc::channel();
        let (mut done_reader, done_writer) = match UnixStream::pair() {
            Ok(pair) => pair,
            Err(error) => {
                warn!("failed to create a socket pair ({error}); start-up cannot be aborted by a signal");
                return Ok(work());
            }
        };
        std::thread::spawn(move || {
            let result = work();
            let _ = sender.send(result);
            // Dropping the writer makes the reader readable (end of stream).
            drop(done_writer);
        });
        loop {
            if let Some(signal) = self.poll_signal(&done_reader) {
                if STOP_SIGNALS.contains(&signal) {
                    info!("received {} before the command started; not starting it", name(signal));
                    return Err(signal);
                }
                if signal != nix::libc::SIGCHLD {
                    info!("ignored {} received before the command started", name(signal));
                }
                continue;
            }
            if let Ok(result) = receiver.try_recv() {
                return Ok(result);
            }
            let mut byte = [0u8; 1];
            if matches!(done_reader.read(&mut byte), Ok(0)) {
                // The worker ended without a result: it panicked.
                if let Ok(result) = receiver.recv() {
                    return Ok(result);
                }
                unreachable!("the start-up thread ended without sending its result");
            }
        }
    }

    /// Waits until a signal is pending or `other` is readable; returns the
    /// signal, if one was read.
    fn poll_signal(&self, other: &UnixStream) -> Option<i32> {
        let Some(fd) = &self.fd else {
            let _ = poll(&mut [PollFd::new(other.as_fd(), PollFlags::POLLIN)], PollTimeout::NONE);
            return None;
        };
        let mut fds = [
            PollFd::new(fd.as_fd(), PollFlags::POLLIN),
            PollFd::new(other.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(Errno::EINTR) => return None,
            Err(error) => {
                debug!("poll failed: {error}");
                return None;
            }
        }
        let signal_ready = fds[0].revents().is_some_and(|events| events.contains(PollFlags::POLLIN));
        if signal_ready {
            self.read()
        } else {
            None
        }
    }
}

/// Returns a signal's name for messages, such as `SIGTERM` or `SIGRTMIN+3`.
pub fn name(signal: i32) -> String {
    if let Some(name) = signal_hook::low_level::signal_name(signal) {
        return name.to_string();
    }
    let rt_min = nix::libc::SIGRTMIN();
    if (rt_min..=nix::libc::SIGRTMAX()).contains(&signal) {
        return format!("SIGRTMIN+{}", signal - rt_min);
    }
    format!("signal {signal}")
}

/// Restores the inherited signal mask and SIGPIPE disposition. Runs in the
/// child between `fork` and `exec`, so it only makes async-signal-safe
/// system calls.
pub fn restore_inherited(inherited: &Inherited) -> std::io::Result<()> {
    // SAFETY: restores a disposition the process had at start-up; sigaction
    // is async-signal-safe and allocates nothing.
    unsafe { sigaction(Signal::SIGPIPE, &inherited.sigpipe) }?;
    pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&inherited.mask), None)?;
    Ok(())
}
