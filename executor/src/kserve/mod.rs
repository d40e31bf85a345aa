//! Remote execution over the Open Inference Protocol (KServe V2 REST): the wire types, the
//! HTTP pieces every rlsched server shares (errors, token, body limits, infer encoding, the
//! request memory budget, the bounded connection loop), the worker server that runs a stage
//! range (and forwards the rest along a chain of named peers), and the client that calls it.

pub mod budget;
pub mod chain;
pub mod client;
pub mod http;
pub mod protocol;
pub mod server;
pub mod worker;
