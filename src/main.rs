//! `edge-idp`: sets the process's file-creation mask, then runs the command line
//! ([`edge_idp::cli::run`]).

use std::process::ExitCode;

#[allow(unsafe_code)] // one FFI call into libc; see SAFETY below.
fn main() -> ExitCode {
    // Every file this process creates (the database, its WAL and shared-memory files, keys it
    // generates) is readable by its owner alone.
    #[cfg(unix)]
    // SAFETY: umask only sets the process's file-creation mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
    edge_idp::cli::run()
}
