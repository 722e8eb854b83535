//! Creates the child process: finds the program on PATH, prepares every C
//! array before `fork`, and in the child only makes async-signal-safe system
//! calls before `execve`. Exec failures come back through a close-on-exec
//! pipe, so they are reported as 127 or 126 before supervision starts.
//!
//! `std::process::Command` would copy the whole environment twice, into a
//! map and then into a C array. With 10,000 secrets those copies cost more
//! than the rest of the start-up.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::libc::c_char;
use nix::fcntl::OFlag;
use nix::sys::wait::waitpid;
use nix::unistd::{access, fork, getpgrp, pipe2, tcgetpgrp, AccessFlags, ForkResult, Pid};

use crate::config::RunMode;
use crate::error::{Error, Kind, Result};
use crate::signals::Inherited;
use crate::debug;

/// PATH used when the environment has none, as execvp does.
const DEFAULT_PATH: &str = "/usr/local/bin:/bin:/usr/bin";

/// A started child.
pub struct Started {
    pub pid: Pid,
    /// Whether the child's group was made the terminal's foreground group.
    pub has_terminal: bool,
    /// Whether the child leads a process group of its own.
    pub own_group: bool,
}

/// Everything `execve` needs, built before `fork` because the child of a
/// multi-threaded process must not allocate.
struct ExecImage {
    program: CString,
    /// Owns the strings that `argument_pointers` points into.
    #[allow(dead_code)]
    arguments: Vec<CString>,
    argument_pointers: Vec<*const c_char>,
    environment_pointers: Vec<*const c_char>,
}

impl ExecImage {
    fn new(argv: &[String], environment: &[CString]) -> Result<ExecImage> {
        let path = environment
            .iter()
            .find_map(|entry| entry.as_bytes().strip_prefix(b"PATH="))
            .map(|path| String::from_utf8_lossy(path).into_owned())
            .unwrap_or_else(|| DEFAULT_PATH.to_string());
        let program = resolve_program(&argv[0], &path)?;
        let program = CString::new(program.as_os_str().as_bytes()).map_err(|_| nul_in_argument(&argv[0]))?;
        let arguments = argv
            .iter()
            .map(|argument| CString::new(argument.as_bytes()).map_err(|_| nul_in_argument(argument)))
            .collect::<Result<Vec<_>>>()?;
        let argument_pointers = null_terminated(arguments.iter().map(|argument| argument.as_ptr()));
        let environment_pointers = null_terminated(environment.iter().map(|entry| entry.as_ptr()));
        Ok(ExecImage { program, arguments, argument_pointers, environment_pointers })
    }

    /// Replaces the current process image; returns the error on failure.
    /// Makes one system call and allocates nothing.
    fn execute(&self) -> Errno {
        // SAFETY: the three pointers come from CStrings and pointer arrays
        // owned by `self`, each array ends with a null pointer, and they
        // outlive the call.
        unsafe {
            nix::libc::execve(
                self.program.as_ptr(),
                self.argument_pointers.as_ptr(),
                self.environment_pointers.as_ptr(),
            );
        }
        Errno::last()
    }
}

fn null_terminated(pointers: impl Iterator<Item = *const c_char>) -> Vec<*const c_char> {
    let mut array: Vec<*const c_char> = pointers.collect();
    array.push(std::ptr::null());
    array
}

fn nul_in_argument(argument: &str) -> Error {
    Error::usage(format!("the argument {argument:?} contains a NUL byte, which a command line cannot hold"))
}

/// Finds the program as execvp would: a name with a slash is used as it is,
/// anything else is looked up in each PATH directory in order.
fn resolve_program(name: &str, path: &str) -> Result<PathBuf> {
    if name.is_empty() {
        return Err(Error::usage("the command name is empty: give a command after --"));
    }
    if name.contains('/') {
        return Ok(PathBuf::from(name));
    }
    let mut not_executable: Option<PathBuf> = None;
    for directory in path.split(':') {
        let directory = if directory.is_empty() { "." } else { directory };
        let candidate = Path::new(directory).join(name);
        if !candidate.is_file() {
            continue;
        }
        if access(&candidate, AccessFlags::X_OK).is_ok() {
            return Ok(candidate);
        }
        not_executable.get_or_insert(candidate);
    }
    match not_executable {
        Some(candidate) => Err(exec_error(&candidate.to_string_lossy(), Errno::EACCES)),
        None => Err(Error::new(
            Kind::CommandNotFound,
            format!("failed to run '{name}': command not found in PATH ({path}); check the name or give a full path"),
        )),
    }
}

/// Maps an exec failure to 127 (not found) or 126 (found but not runnable).
fn exec_error(program: &str, errno: Errno) -> Error {
    match errno {
        Errno::ENOENT => Error::new(
            Kind::CommandNotFound,
            format!("failed to run '{program}': no such file; check the path"),
        ),
        Errno::EACCES | Errno::EPERM => Error::new(
            Kind::NotExecutable,
            format!("failed to run '{program}': permission denied; make it an executable file (chmod +x)"),
        ),
        Errno::ENOEXEC => Error::new(
            Kind::NotExecutable,
            format!("failed to run '{program}': exec format error; a script needs a #! line, a binary the right architecture"),
        ),
        Errno::E2BIG => Error::new(
            Kind::Config,
            format!("failed to run '{program}': the command line and environment are too large (E2BIG); store large secrets as files"),
        ),
        other => Error::new(Kind::NotExecutable, format!("failed to run '{program}': {}", other.desc())),
    }
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

/// The child's set-up between `fork` and `execve`.
#[derive(Clone, Copy)]
struct ChildSetup {
    own_group: bool,
    take_terminal: bool,
    inherited: Inherited,
}

/// Starts the command as a child with exactly the given environment.
pub fn spawn(argv: &[String], environment: &[CString], inherited: Inherited, mode: RunMode) -> Result<Started> {
    let image = ExecImage::new(argv, environment)?;
    let own_group = mode == RunMode::Supervise;
    let setup = ChildSetup { own_group, take_terminal: own_group && owns_foreground_terminal(), inherited };
    let (error_reader, error_writer) =
        pipe2(OFlag::O_CLOEXEC).map_err(|error| Error::new(Kind::NotExecutable, format!("failed to create a pipe: {error}")))?;

    // SAFETY: the child runs only `run_child`, which makes async-signal-safe
    // system calls on data prepared before the fork and then execs or exits,
    // so the other threads' state (locks, allocator) is never touched.
    let child = match unsafe { fork() } {
        Ok(ForkResult::Child) => run_child(&image, setup, &error_writer),
        Ok(ForkResult::Parent { child }) => child,
        Err(error) => return Err(Error::new(Kind::NotExecutable, format!("failed to fork: {error}"))),
    };
    drop(error_writer);

    if let Some(errno) = read_exec_error(&error_reader) {
        // The child exits at once after reporting; reap it here so the
        // supervisor never receives its status.
        let _ = waitpid(child, None);
        return Err(exec_error(&argv[0], errno));
    }
    debug!("started {} as pid {child}", argv[0]);
    Ok(Started { pid: child, has_terminal: setup.take_terminal, own_group })
}

/// Replaces this process with the command; returns only on failure.
pub fn exec(argv: &[String], environment: &[CString], inherited: Inherited) -> Error {
    let image = match ExecImage::new(argv, environment) {
        Ok(image) => image,
        Err(error) => return error,
    };
    if let Err(error) = crate::signals::restore_inherited(&inherited) {
        debug!("failed to restore the inherited signal mask: {error}");
    }
    let errno = image.execute();
    exec_error(&argv[0], errno)
}

/// Runs in the forked child: joins a new process group, takes the terminal,
/// restores the inherited signal mask and execs. On failure it writes the
/// errno to the pipe and exits 127.
fn run_child(image: &ExecImage, setup: ChildSetup, error_writer: &OwnedFd) -> ! {
    let errno = match prepare_child(setup) {
        Ok(()) => image.execute(),
        Err(errno) => errno,
    };
    let code = (errno as i32).to_ne_bytes();
    // SAFETY: write and _exit are async-signal-safe; the buffer lives on this
    // stack frame. A failed write leaves the parent to see exit status 127.
    unsafe {
        nix::libc::write(error_writer.as_raw_fd(), code.as_ptr().cast(), code.len());
        nix::libc::_exit(127)
    }
}

fn prepare_child(setup: ChildSetup) -> std::result::Result<(), Errno> {
    // SAFETY: these are plain system calls on integers and on values
    // prepared before the fork; none allocates or takes a lock.
    unsafe {
        if setup.own_group && nix::libc::setpgid(0, 0) != 0 {
            return Err(Errno::last());
        }
        if setup.take_terminal {
            // A background group calling tcsetpgrp gets SIGTTOU unless it is
            // blocked, and the mask is restored right after.
            crate::signals::set_kernel_mask(nix::libc::SIG_BLOCK, 1 << (nix::libc::SIGTTOU - 1))?;
            if nix::libc::tcsetpgrp(0, nix::libc::getpid()) != 0 {
                return Err(Errno::last());
            }
        }
    }
    crate::signals::restore_inherited(&setup.inherited)
}

/// Reads the errno a failed child wrote; `None` when the pipe closed empty
/// because the exec succeeded.
fn read_exec_error(reader: &OwnedFd) -> Option<Errno> {
    let mut buffer = [0u8; 4];
    loop {
        match nix::unistd::read(reader, &mut buffer) {
            Ok(4) => return Some(Errno::from_raw(i32::from_ne_bytes(buffer))),
            Ok(_) => return None,
            Err(Errno::EINTR) => continue,
            Err(_) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_finds_in_path_order() {
        let found = resolve_program("sh", "/nonexistent:/bin:/usr/bin").unwrap();
        assert!(found.ends_with("sh"), "{}", found.display());
    }

    #[test]
    fn resolve_missing_is_127() {
        let error = resolve_program("no-such-command-xyz", "/bin").unwrap_err();
        assert_eq!(error.exit_code(), 127);
        assert!(error.message.contains("no-such-command-xyz"));
    }

    #[test]
    fn resolve_keeps_slash_names() {
        assert_eq!(resolve_program("./x", "/bin").unwrap(), PathBuf::from("./x"));
    }

    #[test]
    fn exec_errors_map_to_codes() {
        assert_eq!(exec_error("x", Errno::ENOENT).exit_code(), 127);
        assert_eq!(exec_error("x", Errno::EACCES).exit_code(), 126);
        assert_eq!(exec_error("x", Errno::ENOEXEC).exit_code(), 126);
    }
}
