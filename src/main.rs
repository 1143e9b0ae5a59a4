//! The `token-broker` binary: the global allocator, then the command line in `token_broker::cli`.

use std::process::ExitCode;

/// mimalloc instead of the system allocator: every request allocates a little (headers, JSON,
/// metric labels), and glibc malloc took a sixth of the hot path's CPU (see bench/README.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    token_broker::cli::run()
}
