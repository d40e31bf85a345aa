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

/// The points' own line at `r` (a reference written apart from the product's interpolation).
fn on_curve(curve: &[[f64; 2]], r: f64) -> f64 {
    let segment = curve.windows(2).find(|w| r <= w[1][0]).unwrap_or(&curve[curve.len() - 2..]);
    let ([r0, s0], [r1, s1]) = (segment[0], segment[1]);
    s0 + (s1 - s0) / (r1 - r0) * (r - r0)
}

#[test]
fn each_workload_is_slowed_by_its_own_measured_curve_else_the_configured_one() {
    let config = EnvConfig { contention: measured(), ..EnvConfig::in_repo(&repo()) };
    let scenario = Arc::new(Scenario::load(&config, &config.validation_traces).unwrap());
    let mut own = 0;
    for workload in &scenario.workloads {
        let curve = &workload.device.contention;
        own += !curve.is_empty() as usize;
        for r in [0.3, 0.75, 1.5, 2.5] {
            let expected = if curve.is_empty() { on_curve(&config.contention.curve, r) } else { on_curve(curve, r) };
            for candidate in &workload.candidates {
                assert!((candidate.slowdown(r) - expected).abs() < 1e-9, "{} {:?} at {r}: {} against {expected}", workload.mix.name, candidate.plan, candidate.slowdown(r));
            }
        }
    }
    assert!(own >= 2, "the committed cpu2 profiles carry their measured curves");
    // digits-cnn's profile has none: the configured curve applies
    let mut digits = config.clone();
    digits.workloads.retain(|w| w.name == "mobilenetv2");
    digits.workloads[0].name = "digits-cnn".into();
    let scenario = Scenario::load(&digits, &digits.validation_traces).unwrap();
    assert!(scenario.workloads[0].device.contention.is_empty());
    assert!((scenario.workloads[0].candidates[0].slowdown(0.75) - 1.8).abs() < 1e-9);
}
