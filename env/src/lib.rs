//! rlsched-env will own the observation, candidate plans, reward, the trace-driven ReplayEnv,
//! LiveEnv, baselines and the oracle (issue 4). Nothing is built here yet.
