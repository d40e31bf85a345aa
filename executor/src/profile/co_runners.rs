//! CPU-bound co-runners: processes this program starts to load the CPU, for measuring how
//! contention slows a workload (`rlsched profile --co-runners`) and for the loaded sim-to-real
//! check. Each is a shell busy loop, runnable all the time, as a compute-bound app is.
//!
//! They never outlive what started them: dropping `CoRunners` kills and reaps them (on an
//! error path too, since the drop runs while the error unwinds the stack), and each loop
//! checks that its parent is alive on every turn, so even a parent killed without a chance to
//! clean up (SIGKILL) leaves none behind.

use std::process::{Child, Command, Stdio};

use crate::ExecError;

/// Most co-runners one call may start.
pub const MAX_CO_RUNNERS: usize = 256;

/// The busy loop: `kill -0` is a shell built-in, so each turn is a system call in this process,
/// never a new process; it stops as soon as the parent is gone.
const BUSY_LOOP: &str = "while kill -0 $PPID 2>/dev/null; do :; done";

pub struct CoRunners {
    children: Vec<Child>,
}

impl CoRunners {
    /// Starts `n` co-runners and returns once each has started.
    pub fn start(n: usize) -> Result<Self, ExecError> {
        if n > MAX_CO_RUNNERS {
            return Err(ExecError::Backend(format!("at most {MAX_CO_RUNNERS} co-runners, asked for {n}")));
        }
        let mut runners = Self { children: Vec::with_capacity(n) };
        for _ in 0..n {
            // on an error the ones already started are dropped, and so killed
            let child = Command::new("sh")
                .args(["-c", BUSY_LOOP])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| ExecError::io("sh (a co-runner)", e))?;
            runners.children.push(child);
        }
        Ok(runners)
    }

    pub fn len(&self) -> usize {
        self.children.len()
    }

    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
    }

    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }

    /// Stops (SIGSTOP) or resumes (SIGCONT) every co-runner: a stopped one is not runnable, so
    /// the device is idle again without the cost of starting them anew. Returns once the
    /// kernel shows each in its new state.
    pub fn pause(&mut self, paused: bool) -> Result<(), ExecError> {
        if self.children.is_empty() {
            return Ok(());
        }
        let signal = if paused { "-STOP" } else { "-CONT" };
        let pids: Vec<String> = self.pids().iter().map(u32::to_string).collect();
        let status = Command::new("kill").arg(signal).args(&pids).status().map_err(|e| ExecError::io("kill", e))?;
        if !status.success() {
            return Err(ExecError::Backend(format!("kill {signal} {} failed: {status}", pids.join(" "))));
        }
        // a signal is delivered asynchronously; wait for its effect, which comes at once
        for pid in self.pids() {
            for _ in 0..100_000 {
                match (state(pid), paused) {
                    (Some('T'), true) | (None, _) => break,
                    (Some(s), false) if s != 'T' => break,
                    _ => std::thread::yield_now(),
                }
            }
        }
        Ok(())
    }
}

/// A process's scheduler state (`R`, `S`, `T`, ...), if it exists.
pub fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next()).and_then(|s| s.chars().next())
}

impl Drop for CoRunners {
    fn drop(&mut self) {
        for child in &mut self.children {
            // a stopped process still dies of SIGKILL; errors mean it is gone already
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// Co-runners run, stop and resume on request, show in the contention signal as other
    /// processes' runnable tasks, and are gone once dropped.
    #[test]
    fn co_runners_load_stop_and_die_with_their_owner() {
        let mut runners = CoRunners::start(2).expect("start");
        let pids = runners.pids();
        assert_eq!(pids.len(), 2);
        // each is runnable as soon as the shell runs its loop
        for &pid in &pids {
            while state(pid) != Some('R') {
                std::thread::yield_now();
            }
        }
        // the kernel counts them among the runnable tasks, and they are not ours. One reading
        // can still come short while other tests' threads in this process start and stop
        // between its two counts, so the claim is that some reading of a bounded number shows
        // both; a signal that missed co-runners would show none of them on an idle machine.
        let readings: Vec<f64> =
            (0..1000).map(|_| crate::monitor::runnable_others().expect("/proc/stat")).take_while(|&r| r < 2.0).collect();
        assert!(readings.len() < 1000, "two co-runners running, at most {} runnable others read in 1000 readings", readings.iter().cloned().fold(0.0, f64::max));
        runners.pause(true).expect("stop");
        assert!(pids.iter().all(|&p| state(p) == Some('T')), "{:?}", pids.iter().map(|&p| state(p)).collect::<Vec<_>>());
        runners.pause(false).expect("resume");
        assert!(pids.iter().all(|&p| state(p) != Some('T')));
        drop(runners);
        // reaped: no process (not even a zombie) is left under those ids
        assert!(pids.iter().all(|&p| state(p).is_none()), "{:?}", pids.iter().map(|&p| state(p)).collect::<Vec<_>>());
    }
}
