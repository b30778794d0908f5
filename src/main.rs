//! The `simgate` binary: parses the command line and runs it.

use clap::Parser;

/// mimalloc instead of glibc's malloc: a request allocates and frees many
/// small short-lived blocks on one worker thread, which glibc's per-thread
/// arenas serve at about three times the cost (docs/PERFORMANCE.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    simgate::cli::run(simgate::cli::Cli::parse())
}
