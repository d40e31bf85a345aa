//! The `rlsched` binary's library: the command line (`cli`, one module per subcommand), the
//! training configuration file (`config`), the figures (`plot`) and the serving front end
//! (`serve`). `main.rs` only parses and reports errors.

pub mod cli;
pub mod config;
pub mod plot;
pub mod serve;
