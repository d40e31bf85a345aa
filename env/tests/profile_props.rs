//! Profiles: every value the simulator cannot use is refused by `Profile::load`, naming the file
//! and the field path; `Profile::validate` never panics on any profile serde can produce; and a
//! profile that validates gives candidate plans, and outcomes, without a panic or an infinity.

use std::path::PathBuf;

use proptest::prelude::*;
use rlsched_env::candidates::{Conditions, candidates, outcome};
use rlsched_env::request::RequestWorld;
use rlsched_executor::net::trace::Trace;
use rlsched_executor::profile::profiler::{LatencyStats, Profile, StageProfile, VariantProfile};
use serde_json::{json, Value};

fn bundled(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/profiles").join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Each of these used to load silently (or panic later, in a scheduler): now `load` names the
/// file and the field.
#[test]
fn out_of_range_profile_fields_are_named() {
    type Edit = fn(&mut Value);
    let cases: [(&str, Edit, &str); 10] = [
        ("empty-variants", |p| p["variants"] = json!([]), "variants must not be empty"),
        ("empty-stages", |p| p["variants"][1]["stages"] = json!([]), "variants[1].stages"),
        ("negative-latency", |p| p["variants"][0]["stages"][2]["latency_ms"]["mean"] = json!(-1.0), "variants[0].stages[2].latency_ms.mean"),
        ("huge-std", |p| p["variants"][1]["stages"][3]["latency_ms"]["std"] = json!(1e308), "variants[1].stages[3].latency_ms.std"),
        ("p95-over-an-hour", |p| p["variants"][0]["stages"][0]["latency_ms"]["p95"] = json!(4e6), "variants[0].stages[0].latency_ms.p95"),
        ("accuracy-two", |p| p["variants"][2]["accuracy"] = json!(2.0), "variants[2].accuracy"),
        ("empty-shape", |p| p["input_shape"] = json!([]), "input_shape"),
        ("zero-dimension", |p| p["input_shape"] = json!([1, 0, 8]), "input_shape[1]"),
        ("overflowing-shape", |p| p["input_shape"] = json!([u64::MAX, 2]), "input_shape"),
        ("huge-output", |p| p["variants"][0]["stages"][1]["output_bytes"] = json!(u64::MAX), "variants[0].stages[1].output_bytes"),
    ];
    let dir = std::env::temp_dir().join(format!("rlsched-profile-fields-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, mutate, field) in cases {
        let mut profile = bundled("digits-cnn-cpu2.json");
        mutate(&mut profile);
        let path = dir.join(format!("{name}.json"));
        std::fs::write(&path, profile.to_string()).unwrap();
        let err = Profile::load(&path).unwrap_err().to_string();
        assert!(err.contains(&format!("{name}.json")) && err.contains(field), "{name}: {err}");
    }
    std::fs::remove_dir_all(dir).ok();
}

/// Mostly plausible, now and then anything (huge, negative, NaN, infinite): rare enough that
/// many generated profiles validate and reach `candidates`.
fn number() -> impl Strategy<Value = f64> {
    prop_oneof![40 => 0.0..50.0, 10 => 0.0..1.0, 1 => proptest::num::f64::ANY]
}

fn bytes() -> impl Strategy<Value = u64> {
    prop_oneof![40 => 0u64..1_000_000, 1 => any::<u64>()]
}

fn stage() -> impl Strategy<Value = StageProfile> {
    ("s[0-3]", any::<u64>(), bytes(), bytes(), (number(), number(), number(), number())).prop_map(
        |(name, flops, output_bytes, param_bytes, (mean, std, p50, p95))| StageProfile {
            name,
            flops,
            output_bytes,
            param_bytes,
            latency_ms: LatencyStats { mean, std, p50, p95 },
        },
    )
}

fn variant() -> impl Strategy<Value = VariantProfile> {
    let name = prop_oneof![Just("fp32".to_string()), Just("int8".to_string()), "[a-z0-9-]{1,6}"];
    let accuracy = prop_oneof![20 => 0.0..=1.0, 1 => number()];
    let stages = prop_oneof![20 => prop::collection::vec(stage(), 1..6), 1 => Just(Vec::new())];
    (name, accuracy, bytes(), stages).prop_map(|(name, accuracy, param_bytes, stages)| {
        VariantProfile { name, accuracy, accuracy_source: "prop".into(), param_bytes, stages }
    })
}

fn profile() -> impl Strategy<Value = Profile> {
    let dim = prop_oneof![40 => 1usize..300, 1 => any::<usize>()];
    let shape = prop_oneof![20 => prop::collection::vec(dim, 1..5), 1 => Just(Vec::new())];
    let variants = prop_oneof![20 => prop::collection::vec(variant(), 1..4), 1 => Just(Vec::new())];
    // a contention curve: mostly none, else points that may break any of its rules
    let point = prop_oneof![4 => (0.0f64..3.0, 1.0f64..5.0).prop_map(|(r, s)| [r, s]), 1 => (number(), number()).prop_map(|(r, s)| [r, s])];
    let curve = prop_oneof![6 => Just(Vec::new()), 2 => Just(vec![[0.0, 1.0], [1.0, 2.0], [2.0, 3.5]]), 2 => prop::collection::vec(point, 0..10)];
    (shape, bytes(), variants, curve).prop_map(
        |(input_shape, input_bytes, variants, contention)| Profile {
            workload: "digits-cnn".into(),
            device: "prop".into(),
            host: "prop".into(),
            input_shape,
            input_bytes,
            idle_ms: 0.0,
            variants,
            contention,
        },
    )
}

/// Through JSON and back, as `Profile::load` reads it (NaN and infinities become `null` and are
/// refused by the parser; the rest reaches `validate`).
fn through_serde(profile: &Profile) -> Option<Profile> {
    serde_json::from_str(&serde_json::to_string(profile).ok()?).ok()
}

fn check_candidates(device: &Profile, worker: &Profile, split_points: usize, int8: bool) -> Result<(), TestCaseError> {
    let plans = candidates(device, worker, split_points, int8);
    // every variant of a valid profile has a local plan: schedulers always have a choice
    prop_assert!(plans.len() >= device.variants.len());
    let trace = Trace::parse_pensieve("0 0\n1 2\n2 0.5\n", "prop").unwrap();
    let contention = rlsched_env::config::ContentionConfig::default().model_for(device);
    for plan in plans.into_iter().map(|p| p.with_contention(contention)) {
        let plan = &plan;
        // a valid curve never speeds a device up, and stays finite at any reading
        for load in [0.0, 0.3, 1.7, 64.0, f64::NAN, -1.0] {
            prop_assert!(plan.slowdown(load).is_finite() && plan.slowdown(load) >= 1.0, "slowdown {} at {load}", plan.slowdown(load));
        }
        prop_assert!(plan.local_mean_ms().is_finite() && plan.remote_mean_ms().is_finite());
        prop_assert!(plan.bytes_up.is_finite() && plan.bytes_down.is_finite() && plan.memory_bytes.is_finite());
        let world = RequestWorld {
            time_s: 0.7,
            device_load: 0.5,
            worker_queue: 3.0,
            worker_up: true,
            device_noise: vec![3.0; plan.stages],
            worker_noise: vec![-3.0; plan.stages],
        };
        let load = Default::default();
        let conditions = Conditions { trace: &trace, load: &load, rtt_ms: 40.0, service_ms: 15.0 };
        for deadline in [None, Some(1.0)] {
            let (out, _) = outcome(plan, &world, &conditions, &Default::default(), deadline);
            prop_assert!(out.total_ms.is_finite() && out.total_ms >= 0.0, "{:?}: {}", plan.plan, out.total_ms);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn validate_never_panics_and_valid_profiles_give_candidates(
        device in profile(),
        other in profile(),
        worker_is_device in any::<bool>(),
        split_points in 0usize..4,
        int8 in any::<bool>(),
    ) {
        // the same profile on both sides: every variant matches, so split plans appear too
        let worker = if worker_is_device { device.clone() } else { other };
        let direct = (device.validate(), worker.validate());
        let parsed = (through_serde(&device), through_serde(&worker));
        if let (Ok(()), Ok(())) = direct {
            check_candidates(&device, &worker, split_points, int8)?;
        }
        if let (Some(device), Some(worker)) = parsed {
            if device.validate().is_ok() && worker.validate().is_ok() {
                check_candidates(&device, &worker, split_points, int8)?;
            }
        }
    }

    /// A real profile with one number replaced by anything JSON can hold.
    #[test]
    fn a_bundled_profile_with_one_number_changed(
        stage in 0usize..4,
        key in prop::sample::select(vec!["mean", "std", "p50", "p95"]),
        value in number(),
    ) {
        let mut json = bundled("digits-cnn-cpu2.json");
        json["variants"][0]["stages"][stage]["latency_ms"][key] = json!(value);
        if let Ok(profile) = serde_json::from_value::<Profile>(json) {
            let valid = profile.validate().is_ok();
            prop_assert_eq!(valid, (0.0..=3.6e6).contains(&value), "{} = {}", key, value);
            if valid {
                check_candidates(&profile, &profile, 2, true)?;
            }
        }
    }
}
