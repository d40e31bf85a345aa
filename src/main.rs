//! `rlsched`: the command line. It parses arguments, loads configuration and calls the library
//! crates; everything else lives in `executor/`, `env/` and `agent/`.

mod cli;
mod config;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
