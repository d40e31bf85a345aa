//! `rlsched`: parse the command line and run it; everything else lives in the library crates.

use clap::Parser;

fn main() -> std::process::ExitCode {
    match rlsched::cli::run(rlsched::cli::Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
