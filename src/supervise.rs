//! Starts the command and stays with it: puts it in its own process group
//! (and the terminal's foreground), forwards signals, reaps every zombie with
//! the one `waitpid(-1)` loop, and turns the child's end into an exit code.
//! No HTTP, and no aborting once the child runs.

use std::time::Instant;

use nix::errno::Errno;
use nix::unistd::{getpid, tcsetpgrp, Pid};

use crate::config::Supervision;
use crate::error::signal_exit_code;
use crate::signals::{self, Signals};
use crate::spawn::Started;
use crate::{debug, warn};

/// Makes this process the reaper of orphaned descendants when it is not PID
/// 1, so zombies do not pile up under a parent that never waits.
pub fn become_subreaper() {
    if getpid().as_raw() == 1 {
        return;
    }
    if let Err(error) = nix::sys::prctl::set_child_subreaper(true) {
        warn!("failed to register as child subreaper ({error}); orphaned processes will not be reaped");
    }
}

/// Moves the shim out of the caller's working directory so it does not keep
/// a mounted directory busy; the child keeps the directory it started in.
pub fn leave_working_directory() {
    if let Err(error) = std::env::set_current_dir("/") {
        debug!("failed to change directory to /: {error}");
    }
}

/// Signals that stop a process for job control. The shim forwards them and
/// stops itself once the child stops, so a shell above it finds the job
/// stopped.
const JOB_CONTROL_SIGNALS: &[i32] = &[nix::libc::SIGTSTP, nix::libc::SIGTTIN, nix::libc::SIGTTOU];

/// The supervisor's state while the child runs.
struct Supervisor<'a> {
    child: Pid,
    options: &'a Supervision,
    signals: &'a Signals,
    /// Whether the shim handed the terminal to the child, and so must hand
    /// it back after a stop.
    terminal: bool,
    /// When the child gets SIGKILL, set by `--stop-timeout`.
    kill_deadline: Option<Instant>,
    /// Whether the child is in the shim's own process group (build mode).
    shares_group: bool,
    /// Whether a job-control signal was forwarded and the child's stop is
    /// expected, so the shim stops with it.
    job_stop_requested: bool,
    /// Whether the main child's status has been collected.
    child_reaped: bool,
}

/// Forwards signals to the child and reaps zombies until the child ends;
/// returns the exit code: the child's own, or 128 + N for a death by signal
/// N, after `--remap-exit`.
///
/// From here on nothing aborts: every failure is logged and supervision
/// goes on, because the child must never be left without its init.
pub fn supervise(child: &Started, signals: &Signals, options: &Supervision) -> u8 {
    let mut supervisor = Supervisor {
        child: child.pid,
        options,
        signals,
        terminal: child.has_terminal,
        kill_deadline: None,
        shares_group: !child.own_group,
        job_stop_requested: false,
        child_reaped: false,
    };
    let code = supervisor.run();
    if options.kill_group {
        supervisor.drain_group();
    }
    options.exit_code(code)
}

impl Supervisor<'_> {
    fn run(&mut self) -> u8 {
        loop {
            let wait = self.kill_deadline.map(|deadline| deadline.saturating_duration_since(Instant::now()));
            // A SIGCHLD that arrived before this loop is still pending, so
            // an early exit is never missed.
            match self.signals.read_timeout(wait) {
                None => {}
                Some(received) if received.number == nix::libc::SIGCHLD => {}
                // A terminal signals its whole foreground group, and in build
                // mode the child is in the shim's group, so it already has it.
                Some(received) if received.from_kernel && self.shares_group => {
                    debug!("not forwarding {}: the child got it from the terminal", signals::name(received.number));
                }
                Some(received) => self.handle(received.number),
            }
            if self.kill_deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                warn!("the command is still running after --stop-timeout; sending SIGKILL");
                self.send(nix::libc::SIGKILL);
                self.kill_deadline = None;
            }
            if let Some(code) = self.reap() {
                return code;
            }
        }
    }

    fn handle(&mut self, received: i32) {
        debug!("received {}", signals::name(received));
        let Some(signal) = self.options.rewrite(received) else {
            debug!("dropped {} (--rewrite)", signals::name(received));
            return;
        };
        if signal == nix::libc::SIGCONT {
            self.resume_terminal();
        }
        self.send(signal);
        if JOB_CONTROL_SIGNALS.contains(&signal) {
            // The shim stops once the child reports its stop, in `reap`;
            // stopping here too would need a second SIGCONT.
            self.job_stop_requested = true;
        }
        let stopping = signal == nix::libc::SIGTERM || signal == nix::libc::SIGINT;
        if let (true, Some(timeout), None) = (stopping, self.options.stop_timeout, self.kill_deadline) {
            self.kill_deadline = Some(Instant::now() + timeout);
        }
    }

    /// Sends a signal to the child, or to its process group with
    /// `--kill-group`. A failure is logged, never fatal: the child may be
    /// exiting already, and its SIGCHLD is on the way.
    fn send(&self, signal: i32) {
        let target = if self.options.kill_group { Pid::from_raw(-self.child.as_raw()) } else { self.child };
        debug!("forwarding {} to {}", signals::name(signal), describe_target(target));
        if let Err(error) = send_signal(target, signal) {
            warn!("failed to forward {} to {}: {error}", signals::name(signal), describe_target(target));
        }
    }

    /// Gives the terminal back to the child's group when the shim resumes
    /// after a job-control stop.
    fn resume_terminal(&self) {
        if !self.terminal {
            return;
        }
        let stdin = std::io::stdin();
        if let Err(error) = tcsetpgrp(&stdin, self.child) {
            debug!("failed to give the terminal back to the command: {error}");
        }
    }

    /// Reaps every exited child; returns the main child's exit code once it
    /// has ended. When the child stops (Ctrl-Z at a terminal), the shim stops
    /// too, so the shell above regains control.
    fn reap(&mut self) -> Option<u8> {
        let mut child_code = None;
        loop {
            let (pid, event) = match wait_any() {
                Ok(Some(reaped)) => reaped,
                Ok(None) => return child_code,
                Err(Errno::EINTR) => continue,
                Err(Errno::ECHILD) => {
                    if child_code.is_none() && !self.child_reaped && !process_exists(self.child) {
                        // Cannot happen while SIGCHLD has its default action,
                        // which `Signals::block` sets; kept so a lost status
                        // ends the shim instead of hanging it.
                        warn!("the command has exited but its status was lost; exiting with 255");
                        return Some(255);
                    }
                    return child_code;
                }
                Err(error) => {
                    warn!("waitpid failed: {error}");
                    return child_code;
                }
            };
            match event {
                ChildEvent::Exited(code) if pid == self.child => {
                    debug!("command exited with status {code}");
                    self.child_reaped = true;
                    child_code = Some(u8::try_from(code).unwrap_or(255));
                }
                ChildEvent::Killed(signal) if pid == self.child => {
                    debug!("command was killed by {}", signals::name(signal));
                    self.child_reaped = true;
                    child_code = Some(signal_exit_code(signal));
                }
                ChildEvent::Stopped(signal) if pid == self.child => {
                    debug!("command stopped by {}", signals::name(signal));
                    // At a terminal (Ctrl-Z) or after a forwarded TSTP, the
                    // shell above waits on the shim, so the shim stops too. A
                    // plain SIGSTOP to the child alone leaves the shim running.
                    if self.terminal || self.job_stop_requested {
                        self.job_stop_requested = false;
                        stop_self();
                    }
                }
                ChildEvent::Exited(code) => debug!("reaped pid {pid} (exit status {code})"),
                ChildEvent::Killed(signal) => debug!("reaped pid {pid} (killed by {})", signals::name(signal)),
                ChildEvent::Stopped(_) | ChildEvent::Other => {}
            }
        }
    }

    /// After the main child has exited in `--kill-group` mode: SIGTERM to
    /// what is left of its group, up to `--drain` for it to exit, then
    /// SIGKILL.
    fn drain_group(&mut self) {
        let group = Pid::from_raw(-self.child.as_raw());
        if !group_alive(group) {
            return;
        }
        debug!("sending SIGTERM to the rest of process group {}", self.child);
        let _ = send_signal(group, nix::libc::SIGTERM);
        let deadline = Instant::now() + self.options.drain;
        while group_alive(group) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                warn!("process group {} still running after --drain; sending SIGKILL", self.child);
                let _ = send_signal(group, nix::libc::SIGKILL);
                break;
            }
            // Signals other than SIGCHLD are dropped: the command is gone.
            let _ = self.signals.read_timeout(Some(left));
            let _ = self.reap();
        }
        // SIGKILL cannot be caught, so the group's processes end at once;
        // reap them so none is left as a zombie.
        let until = Instant::now() + std::time::Duration::from_secs(1);
        while group_alive(group) && Instant::now() < until {
            let _ = self.signals.read_timeout(Some(std::time::Duration::from_millis(50)));
            let _ = self.reap();
        }
    }
}

/// One child's change of state, as `waitpid` reported it.
enum ChildEvent {
    Exited(i32),
    Killed(i32),
    Stopped(i32),
    Other,
}

/// Collects one child's status without blocking; `Ok(None)` when children
/// exist but none has changed. Calls `waitpid` directly and decodes the raw
/// status, because nix's `WaitStatus` cannot represent a death by a
/// real-time signal: it returns EINVAL after the kernel has already
/// consumed the status, which would lose the child's exit.
fn wait_any() -> Result<Option<(Pid, ChildEvent)>, Errno> {
    let mut status: nix::libc::c_int = 0;
    // SAFETY: waitpid writes one int through a pointer to a live local.
    let pid = unsafe { nix::libc::waitpid(-1, &mut status, nix::libc::WNOHANG | nix::libc::WUNTRACED) };
    if pid < 0 {
        return Err(Errno::last());
    }
    if pid == 0 {
        return Ok(None);
    }
    let event = if nix::libc::WIFEXITED(status) {
        ChildEvent::Exited(nix::libc::WEXITSTATUS(status))
    } else if nix::libc::WIFSIGNALED(status) {
        ChildEvent::Killed(nix::libc::WTERMSIG(status))
    } else if nix::libc::WIFSTOPPED(status) {
        ChildEvent::Stopped(nix::libc::WSTOPSIG(status))
    } else {
        ChildEvent::Other
    };
    Ok(Some((Pid::from_raw(pid), event)))
}

fn describe_target(target: Pid) -> String {
    if target.as_raw() < 0 {
        format!("process group {}", -target.as_raw())
    } else {
        format!("pid {target}")
    }
}

/// Sends any signal number, real-time ones included, which nix's `Signal`
/// enum does not cover.
fn send_signal(target: Pid, signal: i32) -> nix::Result<()> {
    // SAFETY: kill takes plain integers and has no memory-safety
    // preconditions.
    let result = unsafe { nix::libc::kill(target.as_raw(), signal) };
    Errno::result(result).map(drop)
}

/// Returns true while the process exists, zombies included.
fn process_exists(pid: Pid) -> bool {
    !matches!(send_signal(pid, 0), Err(Errno::ESRCH))
}

/// Returns true while any process, zombies included, is in the group.
fn group_alive(group: Pid) -> bool {
    !matches!(send_signal(group, 0), Err(Errno::ESRCH))
}

/// Stops the shim as a job-control stop would. As PID 1 of a namespace the
/// kernel ignores SIGSTOP sent from inside it, so this does nothing there.
fn stop_self() {
    if getpid().as_raw() == 1 {
        return;
    }
    let _ = send_signal(getpid(), nix::libc::SIGSTOP);
}
