//! What a device can know about itself at decision time: CPU utilisation, free memory and load,
//! read from the real system through sysinfo, and the contention signal: runnable tasks of
//! other processes per core, read from `/proc`.

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
    /// Runnable tasks of other processes per core, now: the kernel's count of runnable tasks
    /// (`procs_running` in `/proc/stat`) less this process's own runnable threads, over the
    /// cores. Unlike utilisation it does not saturate: two CPU-bound co-runners on two cores
    /// read 1, four read 2. It is what the simulator's contention model
    /// (processor sharing) slows local stages by. 0 where `/proc` is not there.
    pub runnable_per_core: f64,
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
            runnable_per_core: runnable_others().unwrap_or(0.0) / cores.max(1) as f64,
            free_memory_bytes: self.system.available_memory(),
            total_memory_bytes: self.system.total_memory(),
            load_average_1m: sysinfo::System::load_average().one,
            cores,
        }
    }
}

/// Runnable tasks of other processes: `procs_running` less this process's runnable threads
/// (the reading thread among them, as it is among the kernel's count). An instant's count: the
/// co-runners that slow a computation are runnable all the time, so an instant shows them.
///
/// The kernel's count and our threads' states cannot be read at one instant, so ours are
/// counted before and after the kernel's and the smaller count is left out: a thread of ours
/// that woke between the readings (another request's stage starting) is not in the kernel's
/// count, and subtracting it would hide another process's task.
pub fn runnable_others() -> Option<f64> {
    let own_before = own_runnable_threads();
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let running: f64 = stat.lines().find_map(|l| l.strip_prefix("procs_running "))?.trim().parse().ok()?;
    let own = own_before.min(own_runnable_threads());
    Some((running - own as f64).max(0.0))
}

/// This process's threads in state R.
fn own_runnable_threads() -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return 0 };
    tasks
        .filter_map(|t| t.ok())
        .filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok())
        // `pid (comm) S ...`: the name may hold spaces and parentheses, the state follows the last `)`
        .filter(|stat| stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next()) == Some("R"))
        .count()
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

    /// This process's own busy threads are not other work: with two of our threads spinning,
    /// the reading is what it is without them (other processes' tasks only), never counting
    /// ours. The kernel's count includes them, so leaving them out is what is tested.
    #[cfg(target_os = "linux")]
    #[test]
    fn our_own_runnable_threads_are_left_out() {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let spinners: Vec<_> = (0..2)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        x = std::hint::black_box(x.wrapping_add(1));
                    }
                })
            })
            .collect();
        // wait until the kernel shows them running (an event, not a delay)
        while own_runnable_threads() < 3 {
            std::thread::yield_now();
        }
        let own = own_runnable_threads();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        spinners.into_iter().for_each(|s| s.join().expect("spinner"));
        assert!(own >= 3, "the reader and two spinners: {own}");
        assert!(runnable_others().is_some_and(|r| r >= 0.0));
    }
}
