//! Remote execution over the Open Inference Protocol (KServe V2 REST): the wire types, the
//! worker server that runs a stage range, and the client that calls it.

pub mod client;
pub mod protocol;
pub mod worker;
