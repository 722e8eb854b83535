//! infisical-init: fetches secrets from Infisical and runs a command with
//! them, as a container's first process or in a build step or script.
//!
//! The binary defines the C `main` itself (`no_main`) instead of Rust's
//! runtime start-up, which would set SIGPIPE to ignored before any code here
//! runs. That way the shim observes the dispositions it really inherited and
//! hands them to the child unchanged.
#![cfg_attr(not(test), no_main)]
#![warn(clippy::unwrap_used)]
// Unit tests build without the C entry point, so most items look unused there.
#![cfg_attr(test, allow(dead_code))]

mod api;
mod cli;
mod commands;
mod config;
mod env;
mod error;
mod log;
mod memory;
mod output;
mod secrets;
mod signals;
mod spawn;
mod supervise;

#[cfg(not(test))]
use std::ffi::{c_char, c_int, CStr};

/// The process entry point, called by the C runtime. Unit tests use the
/// test harness's own `main` instead.
#[cfg(not(test))]
#[unsafe(no_mangle)]
// The C runtime is the only caller, and it passes valid pointers.
#[allow(clippy::not_unsafe_ptr_arg_deref)]
pub extern "C" fn main(argc: c_int, argv: *const *const c_char) -> c_int {
    // Signals are blocked before anything else, so that no thread started
    // later can receive them and a stop signal during start-up is not lost.
    let signals = signals::Signals::block();

    // SAFETY: the C runtime passes `argc` valid, NUL-terminated strings in
    // `argv`, which live until the process exits.
    let arguments = unsafe { collect_arguments(argc, argv) };

    c_int::from(commands::dispatch(&arguments, &signals))
}

/// Copies the C arguments into owned strings, replacing invalid UTF-8.
#[cfg(not(test))]
///
/// # Safety
/// `argv` must point to `argc` valid, NUL-terminated C strings.
unsafe fn collect_arguments(argc: c_int, argv: *const *const c_char) -> Vec<String> {
    let count = usize::try_from(argc).unwrap_or(0);
    (0..count)
        .map(|index| {
            // SAFETY: `index < argc`, and the caller guarantees each entry is
            // a valid C string.
            let pointer = unsafe { *argv.add(index) };
            if pointer.is_null() {
                return String::new();
            }
            // SAFETY: non-null entries of argv are NUL-terminated strings.
            unsafe { CStr::from_ptr(pointer) }.to_string_lossy().into_owned()
        })
        .collect()
}
