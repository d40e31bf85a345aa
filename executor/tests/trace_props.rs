//! Property tests of the trace parsers: any text, and any numeric lines, give `Ok` or `Err` and
//! never a panic or a hang; a trace that parses (or scales) has a finite, positive duration,
//! and carrying any finite byte count over it takes a finite time.

use proptest::prelude::*;
use rlsched_executor::net::trace::{Trace, MAX_TRACE_S};

/// Any f64 that is not NaN or infinite.
fn finite() -> impl Strategy<Value = f64> {
    use proptest::num::f64::{NEGATIVE, NORMAL, POSITIVE, SUBNORMAL, ZERO};
    POSITIVE | NEGATIVE | NORMAL | SUBNORMAL | ZERO
}

/// Any finite f64 ≥ 0: a byte count.
fn size() -> impl Strategy<Value = f64> {
    use proptest::num::f64::{NORMAL, POSITIVE, SUBNORMAL, ZERO};
    prop_oneof![0.0..1e9, POSITIVE | NORMAL | SUBNORMAL | ZERO]
}

/// Numbers as people (and broken tools) write them: mostly plausible, sometimes huge,
/// negative, subnormal, NaN or infinite.
fn number() -> impl Strategy<Value = f64> {
    prop_oneof![4 => 0.0..100.0, 1 => 0.0..1e5, 2 => proptest::num::f64::ANY]
}

/// What every trace `parse_*` or `scaled` returns must satisfy, for the `probes` given.
fn check(trace: &Trace, probes: &[(f64, f64)]) -> Result<(), TestCaseError> {
    prop_assert!(trace.duration_s.is_finite() && trace.duration_s > 0.0 && trace.duration_s <= MAX_TRACE_S);
    let mean = trace.mean_mbps();
    prop_assert!(mean.is_finite() && mean > 0.0, "mean {mean}");
    for &(start, bytes) in probes {
        let t = trace.transfer_time(start, bytes);
        prop_assert!(t.is_finite() && t >= 0.0, "transfer_time({start}, {bytes}) = {t}");
        let bits = trace.bits_between(start, start + t);
        // past f64::MAX / 8 bytes the bit count itself is infinite: only its sign can be checked
        let representable = (bytes * 8.0).is_finite();
        prop_assert!(bits >= 0.0 && (bits.is_finite() || !representable), "bits_between({start}, {}) = {bits}", start + t);
    }
    Ok(())
}

fn both_formats(text: &str, probes: &[(f64, f64)], scale: f64) -> Result<(), TestCaseError> {
    for trace in [Trace::parse_pensieve(text, "prop"), Trace::parse_mahimahi(text, "prop")].into_iter().flatten() {
        check(&trace, probes)?;
        if let Ok(scaled) = trace.scaled(scale) {
            check(&scaled, probes)?;
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_text_never_panics(
        text in "([0-9eE.+\\- \t]|inf|NaN|\n|[a-z]){0,300}",
        probes in prop::collection::vec((finite(), size()), 1..4),
        scale in number(),
    ) {
        both_formats(&text, &probes, scale)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic(text in any::<String>(), probes in prop::collection::vec((finite(), size()), 1..3)) {
        both_formats(&text, &probes, 1.0)?;
    }

    #[test]
    fn pensieve_numeric_lines_never_panic(
        lines in prop::collection::vec((0.0f64..2e3, 0.0f64..100.0), 0..48),
        sorted in any::<bool>(),
        corrupt in prop::option::of((any::<prop::sample::Index>(), any::<bool>(), number())),
        probes in prop::collection::vec((finite(), size()), 1..4),
        scale in number(),
    ) {
        let mut lines = lines;
        if sorted {
            // real traces are in order: sorted lines reach the checks past the parser
            lines.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        // at most one number anywhere on the scale (huge, negative, NaN, infinite)
        if let (Some((at, time, value)), false) = (corrupt, lines.is_empty()) {
            let i = at.index(lines.len());
            let line = &mut lines[i];
            if time { line.0 = value } else { line.1 = value }
        }
        let text: String = lines.iter().map(|(t, r)| format!("{t}\t{r}\n")).collect();
        both_formats(&text, &probes, scale)?;
    }

    #[test]
    fn mahimahi_numeric_lines_never_panic(
        lines in prop::collection::vec(0u64..20_000, 0..48),
        sorted in any::<bool>(),
        corrupt in prop::option::of((any::<prop::sample::Index>(), prop_oneof![0u64..100_000_000, any::<u64>()])),
        probes in prop::collection::vec((finite(), size()), 1..4),
        scale in number(),
    ) {
        let mut lines = lines;
        if sorted {
            lines.sort_unstable();
        }
        if let (Some((at, value)), false) = (corrupt, lines.is_empty()) {
            let i = at.index(lines.len());
            lines[i] = value;
        }
        let text: String = lines.iter().map(|ms| format!("{ms}\n")).collect();
        both_formats(&text, &probes, scale)?;
    }
}

/// The integral of the rate, walked segment by segment (the first implementation, kept here as
/// the reference): bits carried from `t0` for `span` seconds.
fn walked_bits(trace: &Trace, t0: f64, span: f64) -> f64 {
    let end = |i: usize| trace.starts.get(i + 1).copied().unwrap_or(trace.duration_s).min(trace.duration_s);
    let (mut t, mut left, mut bits) = (t0.rem_euclid(trace.duration_s), span, 0.0);
    while left > 1e-12 {
        let i = trace.starts.partition_point(|&s| s <= t).saturating_sub(1);
        let step = (end(i) - t).max(0.0).min(left);
        bits += trace.rates_bps[i] * step;
        left -= step;
        t += step;
        if t >= trace.duration_s - 1e-12 {
            t = 0.0;
        }
        if step == 0.0 && t != 0.0 {
            t = end(i);
        }
    }
    bits
}

/// A valid trace of up to 40 segments, some silent (outages), looping after its last.
fn segments() -> impl Strategy<Value = Trace> {
    prop::collection::vec((0.001f64..5.0, prop_oneof![1 => Just(0.0), 4 => 0.01f64..50.0]), 1..40).prop_filter_map("no capacity", |parts| {
        let (mut starts, mut rates, mut t) = (Vec::new(), Vec::new(), 0.0);
        for (length, mbps) in parts {
            starts.push(t);
            rates.push(mbps * 1e6);
            t += length;
        }
        let trace = Trace::new("segments".into(), starts, rates, t);
        trace.validate().ok().map(|_| trace)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The prefix-sum arithmetic carries what the walk carries: a window's bits, and a
    /// transfer's time (whose window then holds exactly its bits), from any start, across
    /// loops and outages.
    #[test]
    fn prefix_sums_agree_with_the_walk(trace in segments(), start in 0.0f64..500.0, span in 0.0f64..200.0, bytes in 1.0f64..5e7) {
        let bits = trace.bits_between(start, start + span);
        let walked = walked_bits(&trace, start, span);
        prop_assert!((bits - walked).abs() <= 1e-6 * walked.max(1.0), "bits_between {bits} vs walked {walked}");
        let t = trace.transfer_time(start, bytes);
        prop_assert!(t.is_finite() && t >= 0.0);
        let carried = walked_bits(&trace, start, t);
        prop_assert!((carried - bytes * 8.0).abs() <= 1e-6 * bytes * 8.0 + 1.0, "{bytes} B took {t} s, which carries {carried} bits");
        // and no sooner: a little less time carries less
        if t > 1e-6 {
            prop_assert!(walked_bits(&trace, start, t * (1.0 - 1e-6)) < bytes * 8.0 + 1.0);
        }
    }
}
