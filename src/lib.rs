//! The `rlsched` binary's library: the command line (`cli`, one module per subcommand) and the
//! training configuration file (`config`). `main.rs` only parses and reports errors.

pub mod cli;
pub mod config;
