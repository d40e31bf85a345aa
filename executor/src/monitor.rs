//! What a device can know about itself at decision time: CPU utilisation, free memory and load,
//! read from the real system through sysinfo.

use serde::Serialize;

#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct ResourceSample {
    /// Mean CPU utilisation over all cores since the previous sample, 0..1.
    pub cpu_utilization: f64,
    /// The share of all cores that *other* processes took: `cpu_utilization` less this
    /// process's own. This is the simulator's device load (what other work takes from the
    /// device); counting our own inference in it would make every local plan look slower
    /// right after one ran.
    pub other_utilization: f64,
    pub free_memory_bytes: u64,
    pub total_memory_bytes: u64,
    pub load_average_1m: f64,
    pub cores: usize,
}

pub struct ResourceMonitor {
    system: sysinfo::System,
    pid: Option<sysinfo::Pid>,
}

impl Default for ResourceMonitor {
    fn default() -> Self {
        Self::new()
    }
}

impl ResourceMonitor {
    pub fn new() -> Self {
        let mut system = sysinfo::System::new();
        system.refresh_cpu_usage();
        system.refresh_memory();
        let mut monitor = Self { system, pid: sysinfo::get_current_pid().ok() };
        monitor.own_share(1);
        monitor
    }

    /// This process's share of all `cores` since the previous refresh, 0..1.
    fn own_share(&mut self, cores: usize) -> f64 {
        use sysinfo::{ProcessRefreshKind, ProcessesToUpdate};
        let Some(pid) = self.pid else { return 0.0 };
        self.system.refresh_processes_specifics(ProcessesToUpdate::Some(&[pid]), false, ProcessRefreshKind::nothing().with_cpu());
        self.system.process(pid).map_or(0.0, |p| (p.cpu_usage() as f64 / 100.0 / cores.max(1) as f64).clamp(0.0, 1.0))
    }

    /// Reads the system. CPU utilisation is averaged since the previous call (sysinfo needs two
    /// readings at least `sysinfo::MINIMUM_CPU_UPDATE_INTERVAL` apart for a meaningful figure).
    pub fn sample(&mut self) -> ResourceSample {
        self.system.refresh_cpu_usage();
        self.system.refresh_memory();
        let cores = self.system.cpus().len();
        let cpu_utilization = (self.system.global_cpu_usage() as f64 / 100.0).clamp(0.0, 1.0);
        let own = self.own_share(cores);
        ResourceSample {
            cpu_utilization,
            other_utilization: (cpu_utilization - own).clamp(0.0, 1.0),
            free_memory_bytes: self.system.available_memory(),
            total_memory_bytes: self.system.total_memory(),
            load_average_1m: sysinfo::System::load_average().one,
            cores,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Work this process does between two readings is its own, not other work's: it shows in
    /// the whole machine's utilisation and is left out of the other processes' share.
    #[test]
    fn our_own_work_is_not_other_work() {
        let busy = |duration: std::time::Duration| {
            let start = std::time::Instant::now();
            let mut x = 0u64;
            while start.elapsed() < duration {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(1));
            }
        };
        let interval = 2 * sysinfo::MINIMUM_CPU_UPDATE_INTERVAL.max(std::time::Duration::from_millis(100));
        // sysinfo takes a process's first reading as a baseline only if its CPU time is not
        // zero yet (in clock ticks), so the process has worked before the monitor starts
        busy(interval);
        let mut monitor = ResourceMonitor::new();
        busy(interval);
        let sample = monitor.sample();
        assert!((0.0..=1.0).contains(&sample.cpu_utilization), "{sample:?}");
        assert!(sample.cpu_utilization > 0.0, "a busy thread shows in the machine's utilisation: {sample:?}");
        assert!(sample.other_utilization < sample.cpu_utilization, "our own busy thread counted as other work: {sample:?}");
        assert!(sample.cores >= 1 && sample.total_memory_bytes >= sample.free_memory_bytes);
    }
}
