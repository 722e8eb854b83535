//! Owns signal handling. `Signals::block` runs first in `main`, before any
//! thread exists, so every thread (the HTTP client's runtime included)
//! inherits a mask with all signals blocked. Signals are then consumed
//! synchronously from one signalfd; no handler is ever installed. Also
//! records what the shim inherited, so the child gets it back.

use std::io::Read;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::mpsc;

use nix::errno::Errno;
use nix::libc;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

use crate::{debug, info, warn};

/// Signals raised by a fault in the shim itself. They stay unblocked so a
/// bug crashes the shim instead of hanging it, and so they are never read
/// from the signalfd or forwarded.
const FAULT_SIGNALS: &[i32] = &[
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGFPE,
    libc::SIGILL,
    libc::SIGTRAP,
    libc::SIGABRT,
    libc::SIGSYS,
];

/// Signals that abort the start-up when they arrive before the command runs.
pub const STOP_SIGNALS: &[i32] = &[libc::SIGTERM, libc::SIGINT, libc::SIGQUIT, libc::SIGHUP];

/// A signal mask in the kernel's own form: bit N - 1 stands for signal N,
/// for signals 1 to 64.
///
/// The shim passes masks to the kernel directly because the C libraries
/// hide the signals they reserve for themselves: musl's `sigfillset` and
/// `sigaddset` leave out 32 to 34, and glibc's `pthread_sigmask` drops 32
/// and 33. Signal 34 is SIGRTMIN for glibc programs (`podman kill -s RTMIN`),
/// so left unblocked it would kill the shim instead of reaching the child.
/// The shim uses none of the features those signals serve (thread
/// cancellation, set*id across threads, timer threads).
pub type KernelMask = u64;

fn bit(signal: i32) -> KernelMask {
    1 << (signal - 1)
}

/// The signal state the shim inherited and hands back to the child: the
/// signal mask and the disposition of SIGCHLD, which the shim sets to the
/// default so that it can wait for its children.
#[derive(Clone, Copy)]
pub struct Inherited {
    pub mask: KernelMask,
    pub sigchld: SigAction,
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
    fd: Option<OwnedFd>,
    pub inherited: Inherited,
}

/// Sets the calling thread's signal mask with the `rt_sigprocmask` system
/// call; `how` is `SIG_BLOCK`, `SIG_UNBLOCK` or `SIG_SETMASK`. Makes one
/// system call and allocates nothing, so it is safe between fork and exec.
pub fn set_kernel_mask(how: libc::c_int, mask: KernelMask) -> Result<KernelMask, Errno> {
    let mut previous: KernelMask = 0;
    // SAFETY: both pointers are to live u64 values, and 8 bytes is the size
    // of the kernel's signal set on Linux.
    let result = unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            how,
            &mask as *const KernelMask,
            &mut previous as *mut KernelMask,
            std::mem::size_of::<KernelMask>(),
        )
    };
    Errno::result(result).map(|_| previous)
}

/// Blocks signals 32 to 34 again in the calling thread. musl's
/// `pthread_create` unblocks them in the thread that first creates a thread,
/// for its own use, and a process-directed signal 34 (SIGRTMIN for glibc
/// programs) would then kill the shim instead of waiting in the signalfd.
fn block_reserved_signals() {
    let reserved = bit(32) | bit(33) | bit(34);
    let _ = set_kernel_mask(libc::SIG_BLOCK, reserved);
}

/// Opens a close-on-exec signalfd for `mask` with the `signalfd4` system
/// call, for the same reason as `set_kernel_mask`.
fn open_signalfd(mask: KernelMask) -> Option<OwnedFd> {
    // SAFETY: the mask pointer is to a live u64 of the kernel's set size.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_signalfd4,
            -1,
            &mask as *const KernelMask,
            std::mem::size_of::<KernelMask>(),
            libc::SFD_CLOEXEC,
        )
    };
    let fd = i32::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: the system call returned a new descriptor that nothing else
    // owns.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl Signals {
    /// Blocks every signal except the fault signals and opens the signalfd
    /// that reads them. Failures are reported by `read`, because at this
    /// point the logger is not configured yet.
    pub fn block() -> Signals {
        let mut blocked = KernelMask::MAX;
        for signal in FAULT_SIGNALS {
            blocked &= !bit(*signal);
        }
        let mask = set_kernel_mask(libc::SIG_BLOCK, blocked).unwrap_or(0);
        let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
        // SAFETY: SIG_DFL installs no handler, so no handler code can run.
        // An ignored SIGCHLD (or SA_NOCLDWAIT) would make the kernel reap
        // the child itself and its exit status would be lost.
        let sigchld = unsafe { sigaction(Signal::SIGCHLD, &default) }.unwrap_or(default);
        Signals { fd: open_signalfd(blocked), inherited: Inherited { mask, sigchld } }
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
        let mut buffer = [0u8; std::mem::size_of::<libc::signalfd_siginfo>()];
        match nix::unistd::read(fd, &mut buffer) {
            Ok(length) if length == buffer.len() => {
                // SAFETY: the kernel wrote one whole signalfd_siginfo, a
                // plain C struct for which any bytes are valid.
                let info: libc::signalfd_siginfo = unsafe { std::ptr::read_unaligned(buffer.as_ptr().cast()) };
                Some(Received {
                    number: i32::try_from(info.ssi_signo).ok()?,
                    from_kernel: info.ssi_code == libc::SI_KERNEL,
                })
            }
            Ok(_) | Err(Errno::EINTR) | Err(Errno::EAGAIN) => None,
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
            block_reserved_signals();
            let result = work();
            let _ = sender.send(result);
            // Dropping the writer makes the reader readable (end of stream).
            drop(done_writer);
        });
        block_reserved_signals();
        loop {
            if let Some(signal) = self.poll_signal(&done_reader) {
                if STOP_SIGNALS.contains(&signal) {
                    info!("received {} during start-up; stopping before anything is started", name(signal));
                    return Err(signal);
                }
                if signal != libc::SIGCHLD {
                    info!("ignored {} received during start-up", name(signal));
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

/// The first real-time signal as glibc programs, `kill -l`, Docker and
/// podman number them. glibc reserves 32 and 33; musl, which the static
/// binary is built with, also reserves 34 and would call 35 SIGRTMIN, so the
/// C library's own value would disagree with every tool a user compares.
pub const RTMIN: i32 = 34;
/// The last real-time signal on Linux.
pub const RTMAX: i32 = 64;

/// Returns a signal's name for messages, such as `SIGTERM` or `SIGRTMIN+3`.
pub fn name(signal: i32) -> String {
    if let Some(name) = signal_hook::low_level::signal_name(signal) {
        return name.to_string();
    }
    match signal {
        RTMIN => "SIGRTMIN".to_string(),
        RTMAX => "SIGRTMAX".to_string(),
        _ if (RTMIN..RTMAX).contains(&signal) => format!("SIGRTMIN+{}", signal - RTMIN),
        _ => format!("signal {signal}"),
    }
}

/// Restores the inherited signal mask and SIGCHLD disposition. Runs in the
/// child between `fork` and `exec`, so it only makes async-signal-safe
/// system calls.
pub fn restore_inherited(inherited: &Inherited) -> Result<(), Errno> {
    // SAFETY: restores a disposition the process had at start-up, which is
    // SIG_DFL or SIG_IGN since handlers do not survive exec; sigaction is
    // async-signal-safe and allocates nothing.
    unsafe { sigaction(Signal::SIGCHLD, &inherited.sigchld) }?;
    set_kernel_mask(libc::SIG_SETMASK, inherited.mask)?;
    Ok(())
}
