//! What a device can know about itself at decision time: CPU utilisation, free memory and load,
//! read from the real system through sysinfo.

use serde::Serialize;

#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct ResourceSample {
    /// Mean CPU utilisation over all cores since the previous sample, 0..1.
    pub cpu_utilization: f64,
    pub free_memory_bytes: u64,
    pub total_memory_bytes: u64,
    pub load_average_1m: f64,
    pub cores: usize,
}

pub struct ResourceMonitor {
    system: sysinfo::System,
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
        Self { system }
    }

    /// Reads the system. CPU utilisation is averaged since the previous call (sysinfo needs two
    /// readings at least `sysinfo::MINIMUM_CPU_UPDATE_INTERVAL` apart for a meaningful figure).
    pub fn sample(&mut self) -> ResourceSample {
        self.system.refresh_cpu_usage();
        self.system.refresh_memory();
        ResourceSample {
            cpu_utilization: (self.system.global_cpu_usage() as f64 / 100.0).clamp(0.0, 1.0),
            free_memory_bytes: self.system.available_memory(),
            total_memory_bytes: self.system.total_memory(),
            load_average_1m: sysinfo::System::load_average().one,
            cores: self.system.cpus().len(),
        }
    }
}
