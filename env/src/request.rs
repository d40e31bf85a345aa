//! A request as the simulator draws it: which workload, the true state of the world while it
//! runs (fixed at `reset`, identical for every plan), and the load the monitor reads.

/// One request of an episode.
#[derive(Clone, Debug)]
pub struct Request {
    pub workload: usize,
    pub world: RequestWorld,
    /// The device load as the monitor reads it: runnable tasks of other processes per core (the
    /// true level plus the reading's noise).
    pub observed_load: f64,
    /// The CPU share other processes took, as the monitor reads it, 0..1. It saturates, so it
    /// is a feature beside `observed_load`, not the contention signal.
    pub observed_utilization: f64,
}

/// The true state of the world while one request runs; identical for every plan of the request.
#[derive(Clone, Debug)]
pub struct RequestWorld {
    /// Arrival time on the trace, seconds.
    pub time_s: f64,
    /// Runnable tasks of other processes per core at arrival.
    pub device_load: f64,
    /// Requests of other clients queued at the worker.
    pub worker_queue: f64,
    pub worker_up: bool,
    /// Standard-normal draws for each stage's compute time, on the device and on the worker.
    pub device_noise: Vec<f64>,
    pub worker_noise: Vec<f64>,
}

/// The device's true load over an episode (runnable other tasks per core), piecewise constant:
/// each point holds from its time until the next. Compute that starts after a queue wait runs
/// at the load of its start, not of the request's arrival.
#[derive(Clone, Debug, Default)]
pub struct LoadPath {
    /// (time s, level), sorted by time.
    points: Vec<(f64, f64)>,
}

impl LoadPath {
    /// From points in any order.
    pub fn new(mut points: Vec<(f64, f64)>) -> Self {
        points.retain(|p| p.0.is_finite() && p.1.is_finite());
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        Self { points }
    }

    /// Each request's load holding from its arrival: the path of a staged episode.
    pub fn of_requests(requests: &[Request]) -> Self {
        Self::new(requests.iter().map(|r| (r.world.time_s, r.world.device_load)).collect())
    }

    /// The level at `t`; before the first point, `before` (the request's own arrival load).
    pub fn at(&self, t: f64, before: f64) -> f64 {
        let i = self.points.partition_point(|p| p.0 <= t);
        if i == 0 {
            before
        } else {
            self.points[i - 1].1
        }
    }
}
