//! The network: bandwidth traces, the user-space link emulator that replays them, and the
//! estimate of the link built from measured transfers.

pub mod estimator;
pub mod link;
pub mod trace;
