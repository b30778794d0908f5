//! The `simgate` binary: parses the command line and runs it.

use clap::Parser;

fn main() -> std::process::ExitCode {
    simgate::cli::run(simgate::cli::Cli::parse())
}
