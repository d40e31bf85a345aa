//! The contention model: measured points interpolated, the linear fallback without them, bad
//! curves refused by name, and the scenario's plans carrying the configured model.

use std::path::PathBuf;
use std::sync::Arc;

use rlsched_env::config::{ContentionConfig, EnvConfig};
use rlsched_env::Scenario;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn measured() -> ContentionConfig {
    ContentionConfig { curve: vec![[0.0, 1.0], [0.5, 1.2], [1.0, 2.4], [2.0, 3.3]], ..ContentionConfig::default() }
}

#[test]
fn a_curve_is_interpolated_between_its_points_and_extended_past_the_last() {
    let c = measured();
    for (r, expected) in [(0.0, 1.0), (0.25, 1.1), (0.5, 1.2), (0.75, 1.8), (1.0, 2.4), (2.0, 3.3), (3.0, 4.2)] {
        assert!((c.slowdown(r) - expected).abs() < 1e-9, "r = {r}: {} against {expected}", c.slowdown(r));
    }
    assert_eq!(c.slowdown(f64::NAN), 1.0, "a NaN reading is an idle device");
    assert_eq!(c.slowdown(-1.0), 1.0);
    let linear = ContentionConfig::default();
    assert!((linear.slowdown(2.0) - (1.0 + 2.0 * linear.per_task)).abs() < 1e-12, "no curve: 1 + per_task · r");
}

#[test]
fn bad_curves_are_refused_by_field() {
    let base = EnvConfig::in_repo(&repo());
    for (curve, field) in [
        (vec![[0.0, 1.0]], "env.contention.curve"),
        (vec![[0.1, 1.0], [1.0, 2.0]], "env.contention.curve[0]"),
        (vec![[0.0, 1.0], [1.0, 2.0], [0.5, 2.5]], "env.contention.curve[2]"),
        (vec![[0.0, 1.0], [1.0, 2.0], [2.0, 1.5]], "env.contention.curve[2]"),
        (vec![[0.0, 1.0], [1.0, f64::NAN]], "env.contention.curve[1]"),
        ((0..9).map(|i| [i as f64, 1.0 + i as f64]).collect(), "env.contention.curve"),
    ] {
        let mut config = base.clone();
        config.contention.curve = curve.clone();
        let err = config.validate().expect_err(&format!("{curve:?} accepted"));
        assert!(err.contains(field), "{curve:?}: `{err}` does not name {field}");
    }
}

#[test]
fn the_scenario_plans_carry_the_configured_curve() {
    let config = EnvConfig { contention: measured(), ..EnvConfig::in_repo(&repo()) };
    let scenario = Arc::new(Scenario::load(&config, &config.validation_traces).unwrap());
    for workload in &scenario.workloads {
        for candidate in &workload.candidates {
            assert!((candidate.slowdown(0.75) - 1.8).abs() < 1e-9, "{:?}: {}", candidate.plan, candidate.slowdown(0.75));
        }
    }
}
