//! Starts the command and stays with it: puts it in its own process group
//! (and the terminal's foreground), forwards signals, reaps every zombie with
//! the one `waitpid(-1)` loop, and turns the child's end into an exit code.
//! No HTTP, and no aborting once the child runs.

use std::ffi::OsString;
use std::io::ErrorKind;
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::errno::Errno;
use nix::sys::signal::{kill, pthread_sigmask, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{getpgrp, getpid, tcgetpgrp, tcsetpgrp, Pid};

use crate::config::RunMode;
use crate::error::{signal_exit_code, Error, Kind, Result};
use crate::signals::{self, Inherited, Signals};
use crate::{debug, warn};

/// Prepares the command with its environment and, for `Supervise`, its own
/// process group.
fn command(argv: &[String], environment: &[(OsString, OsString)], inherited: Inherited, mode: RunMode) -> Command {
    let mut command = Command::new(&argv[0]);
    command.args(&argv[1..]).env_clear().envs(environment.iter().map(|(k, v)| (k, v)));
    let take_terminal = mode == RunMode::Supervise && owns_foreground_terminal();
    if mode == RunMode::Supervise {
        command.process_group(0);
    }
    // SAFETY: the closure runs between fork and exec and only makes
    // async-signal-safe system calls (sigprocmask, tcsetpgrp, sigaction) on
    // values prepared before the fork; it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            if take_terminal {
                give_terminal_to_self()?;
            }
            signals::restore_inherited(&inherited)
        });
    }
    command
}

/// Returns true when standard input is a terminal whose foreground process
/// group is the shim's, so handing it to the child steals it from nobody.
fn owns_foreground_terminal() -> bool {
    let stdin = std::io::stdin();
    match tcgetpgrp(&stdin) {
        Ok(foreground) => foreground == getpgrp(),
        Err(_) => false,
    }
}

/// Makes the calling process's group the terminal's foreground group. A
/// background group calling tcsetpgrp gets SIGTTOU unless it is blocked, so
/// it is blocked first; the caller restores the inherited mask afterwards.
fn give_terminal_to_self() -> std::io::Result<()> {
    let mut ttou = SigSet::empty();
    ttou.add(Signal::SIGTTOU);
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&ttou), None)?;
    let stdin = std::io::stdin();
    tcsetpgrp(&stdin, getpid())?;
    Ok(())
}

/// Maps a failed spawn or exec to 127 (not found) or 126 (not executable).
fn exec_error(program: &str, error: &std::io::Error) -> Error {
    match error.kind() {
        ErrorKind::NotFound => Error::new(
            Kind::CommandNotFound,
            format!("failed to run '{program}': command not found; check the name and PATH"),
        ),
        ErrorKind::PermissionDenied => Error::new(
            Kind::NotExecutable,
            format!("failed to run '{program}': permission denied; make the file executable (chmod +x)"),
        ),
        _ => Error::new(Kind::NotExecutable, format!("failed to run '{program}': {error}")),
    }
}

/// Starts the command as a child and returns its pid.
pub fn spawn(argv: &[String], environment: &[(OsString, OsString)], inherited: Inherited, mode: RunMode) -> Result<Pid> {
    let child = command(argv, environment, inherited, mode)
        .spawn()
        .map_err(|error| exec_error(&argv[0], &error))?;
    let pid = Pid::from_raw(child.id() as i32);
    debug!("started {} as pid {pid}", argv[0]);
    Ok(pid)
}

/// Replaces this process with the command; returns only on failure.
pub fn exec(argv: &[String], environment: &[(OsString, OsString)], inherited: Inherited) -> Error {
    let error = command(argv, environment, inherited, RunMode::Exec).exec();
    exec_error(&argv[0], &error)
}

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

/// Forwards signals to the child and reaps zombies until the child ends;
/// returns the exit code: the child's own, or 128 + N for a death by signal N.
///
/// From here on nothing aborts: every failure is logged and supervision
/// goes on, because the child must never be left without its init.
pub fn supervise(child: Pid, signals: &Signals) -> u8 {
    loop {
        // A SIGCHLD that arrived before this loop is still pending, so an
        // early exit is never missed.
        let Some(signal) = signals.read() else {
            if let Some(code) = reap_zombies(child) {
                return code;
            }
            continue;
        };
        if signal == nix::libc::SIGCHLD {
            if let Some(code) = reap_zombies(child) {
                return code;
            }
            continue;
        }
        forward(signal, child);
    }
}

fn forward(signal: i32, child: Pid) {
    let Ok(typed) = Signal::try_from(signal) else {
        forward_raw(signal, child);
        return;
    };
    debug!("forwarding {} to pid {child}", signals::name(signal));
    if let Err(error) = kill(child, typed) {
        // ESRCH: the child is exiting and its SIGCHLD is on the way.
        warn!("failed to forward {} to pid {child}: {error}", signals::name(signal));
    }
}

/// Forwards a real-time signal, which nix's `Signal` enum does not cover.
fn forward_raw(signal: i32, child: Pid) {
    debug!("forwarding {} to pid {child}", signals::name(signal));
    // SAFETY: kill takes plain integers and has no memory-safety
    // preconditions.
    let result = unsafe { nix::libc::kill(child.as_raw(), signal) };
    if result != 0 {
        warn!("failed to forward {} to pid {child}: {}", signals::name(signal), Errno::last());
    }
}

/// Reaps every exited child; returns the main child's exit code once it has
/// ended.
fn reap_zombies(child: Pid) -> Option<u8> {
    let mut child_code = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => {
                if pid == child {
                    debug!("command exited with status {code}");
                    child_code = Some(u8::try_from(code).unwrap_or(255));
                } else {
                    debug!("reaped pid {pid} (exit status {code})");
                }
            }
            Ok(WaitStatus::Signaled(pid, signal, _core)) => {
                if pid == child {
                    debug!("command was killed by {}", signals::name(signal as i32));
                    child_code = Some(signal_exit_code(signal as i32));
                } else {
                    debug!("reaped pid {pid} (killed by {})", signals::name(signal as i32));
                }
            }
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return child_code,
            Ok(_) => {}
            Err(Errno::EINTR) => {}
            Err(error) => {
                warn!("waitpid failed: {error}");
                return child_code;
            }
        }
    }
}
