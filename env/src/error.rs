//! Errors of the environment crate.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum EnvError {
    #[error(transparent)]
    Exec(#[from] rlsched_executor::ExecError),
    #[error("{0}")]
    Config(String),
    #[error("action {action} is not a valid plan for this request ({valid} valid of {total})")]
    InvalidAction { action: usize, valid: usize, total: usize },
    #[error("step called before reset, or after the episode ended")]
    NotRunning,
}
