//! `rlsched bench`: throughput benchmarks.

use anyhow::{bail, Result};

use super::ConfigArgs;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// What to measure: `env` (VecEnv steps per second on one core).
    pub target: String,
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Environments stepped together.
    #[arg(long, default_value_t = 64)]
    pub envs: usize,
    /// Seconds to measure for.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
}

pub fn run(args: BenchArgs) -> Result<()> {
    if !(args.seconds > 0.0 && args.seconds.is_finite()) {
        bail!("--seconds must be a positive number of seconds, got {}", args.seconds);
    }
    if args.target != "env" {
        bail!("unknown benchmark `{}` (available: env)", args.target);
    }
    let config = args.config.load()?;
    let scenario = std::sync::Arc::new(rlsched_env::Scenario::load(&config.env, &config.env.traces)?);
    let mut vec = rlsched_env::VecEnv::new(scenario.clone(), args.envs.max(1), 1)?;
    let mut actions = vec![0usize; vec.envs.len()];
    let mut results = Vec::with_capacity(vec.envs.len());
    let (mut steps, mut plans) = (0u64, 0u64);
    let start = std::time::Instant::now();
    while start.elapsed().as_secs_f64() < args.seconds {
        for _ in 0..100 {
            for (action, env) in actions.iter_mut().zip(&vec.envs) {
                let obs = env.observation();
                // the first valid plan: the cheapest possible policy, so the figure is the env's
                *action = obs.mask.iter().position(|m| *m).expect("one valid plan");
                plans += obs.n_plans as u64;
            }
            vec.step(&actions, &mut results)?;
            steps += actions.len() as u64;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "env: {:.0} steps/s on one thread ({} envs, {} steps in {:.2} s, {:.1} plans per request on average, up to {})",
        steps as f64 / seconds,
        vec.envs.len(),
        steps,
        seconds,
        plans as f64 / steps as f64,
        scenario.max_plans
    );
    println!("host: {}", rlsched_executor::profile::profiler::host_description());
    Ok(())
}

