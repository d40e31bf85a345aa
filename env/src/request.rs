//! A request as the simulator draws it: which workload, the true state of the world while it
//! runs (fixed at `reset`, identical for every plan), and the load the monitor reads.

/// One request of an episode.
#[derive(Clone, Debug)]
pub struct Request {
    pub workload: usize,
    pub world: RequestWorld,
    /// The device load as the monitor reads it (the true load plus measurement noise).
    pub observed_load: f64,
}

/// The true state of the world while one request runs; identical for every plan of the request.
#[derive(Clone, Debug)]
pub struct RequestWorld {
    /// Arrival time on the trace, seconds.
    pub time_s: f64,
    /// Share of the device CPU taken by other work, 0..0.95.
    pub device_load: f64,
    /// Requests of other clients queued at the worker.
    pub worker_queue: f64,
    pub worker_up: bool,
    /// Standard-normal draws for each stage's compute time, on the device and on the worker.
    pub device_noise: Vec<f64>,
    pub worker_noise: Vec<f64>,
}

