//! Bandwidth traces: Pensieve's `time_s Mbit/s` lines and Mahimahi's packet-delivery
//! opportunities (one line per 1500-byte packet, in ms). Both become a looping, piecewise-constant
//! rate over time, which the link emulator replays and the simulator integrates.

use std::path::Path;

use serde::Serialize;

use crate::error::Num;
use crate::ExecError;

/// Bytes one Mahimahi delivery opportunity carries.
pub const MAHIMAHI_PACKET_BYTES: f64 = 1500.0;
/// Mahimahi opportunities are counted in bins of this many milliseconds.
pub const MAHIMAHI_BIN_MS: u64 = 10;
/// Longest trace accepted: a day. A longer one is almost surely a unit mistake, and the bound
/// keeps every time derived from a trace small enough that adding a request gap still moves it.
pub const MAX_TRACE_S: f64 = 86_400.0;
/// Shortest trace accepted (Mahimahi's resolution): a shorter loop is no longer a trace.
pub const MIN_TRACE_S: f64 = 1e-3;
/// Largest Pensieve timestamp: Unix time fits, and differences still resolve microseconds.
pub const MAX_PENSIEVE_TIME_S: f64 = 1e10;
/// Lowest mean rate of a trace, after scaling (1 kbit/s): below it one request's transfer
/// takes hours and rewards stop meaning anything. It also keeps the transfer time of any finite
/// size finite.
pub const MIN_MEAN_BPS: f64 = 1e3;
/// Highest rate of any segment (1 Pbit/s, beyond any link): keeps a loop's capacity finite.
pub const MAX_RATE_BPS: f64 = 1e15;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TraceFormat {
    Pensieve,
    Mahimahi,
}

impl std::str::FromStr for TraceFormat {
    type Err = ExecError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pensieve" => Ok(TraceFormat::Pensieve),
            "mahimahi" => Ok(TraceFormat::Mahimahi),
            other => Err(ExecError::Data {
                path: "--trace-format".into(),
                message: format!("unknown trace format `{other}` (expected pensieve or mahimahi)"),
            }),
        }
    }
}

/// A looping, piecewise-constant link rate.
#[derive(Clone, Debug, Serialize)]
pub struct Trace {
    pub name: String,
    /// Start of each segment, seconds from the trace's start (first is 0).
    pub starts: Vec<f64>,
    /// Rate of each segment, bits per second.
    pub rates_bps: Vec<f64>,
    /// The trace loops after this many seconds.
    pub duration_s: f64,
    /// Bits carried from the loop's start to each segment's start, then to the loop's end:
    /// built on first use, so a transfer or a window costs a binary search rather than a walk
    /// over every segment (a Mahimahi trace has one per 1 ms bin, and the oracle asks
    /// thousands of times a request). Left out of equality and serialisation; a trace whose
    /// fields change after use must be built anew (`Trace::new`), as `scaled` does.
    #[serde(skip)]
    pub cumulative: std::sync::OnceLock<std::sync::Arc<[f64]>>,
}

impl Trace {
    pub fn new(name: String, starts: Vec<f64>, rates_bps: Vec<f64>, duration_s: f64) -> Self {
        Trace { name, starts, rates_bps, duration_s, cumulative: Default::default() }
    }
}

/// Loop counts up to here are exact in an f64.
const MAX_EXACT_LOOPS: f64 = 9_007_199_254_740_992.0;

fn parse_error(path: &str, line: usize, message: impl Into<String>) -> ExecError {
    ExecError::Data {
        path: format!("{path}:{line}"),
        message: message.into(),
    }
}

impl Trace {
    /// Reads a trace file; the format is detected unless given.
    pub fn load(path: &Path, format: Option<TraceFormat>) -> Result<Self, ExecError> {
        let text = std::fs::read_to_string(path).map_err(|e| ExecError::io(path, e))?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let shown = path.display().to_string();
        let format = match format {
            Some(f) => f,
            None => Self::detect(&text),
        };
        let mut trace = match format {
            TraceFormat::Pensieve => Self::parse_pensieve(&text, &shown)?,
            TraceFormat::Mahimahi => Self::parse_mahimahi(&text, &shown)?,
        };
        trace.name = name;
        Ok(trace)
    }

    /// Pensieve lines have two fields; Mahimahi lines have one.
    pub fn detect(text: &str) -> TraceFormat {
        let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        if first.split_whitespace().count() >= 2 {
            TraceFormat::Pensieve
        } else {
            TraceFormat::Mahimahi
        }
    }

    pub fn parse_pensieve(text: &str, path: &str) -> Result<Self, ExecError> {
        let mut times = Vec::new();
        let mut rates = Vec::new();
        let mut last_line = 1;
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            if line.trim().is_empty() {
                continue;
            }
            last_line = number;
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() != 2 {
                return Err(parse_error(path, number, format!("expected `time_s<TAB>Mbit/s`, found {} fields", fields.len())));
            }
            let time: f64 = fields[0]
                .parse()
                .map_err(|_| parse_error(path, number, format!("field time_s: `{}` is not a number", fields[0])))?;
            let mbps: f64 = fields[1]
                .parse()
                .map_err(|_| parse_error(path, number, format!("field Mbit/s: `{}` is not a number", fields[1])))?;
            if !(0.0..=MAX_PENSIEVE_TIME_S).contains(&time) {
                return Err(parse_error(path, number, format!("field time_s: {} is not a number in 0..={MAX_PENSIEVE_TIME_S:e}", Num(time))));
            }
            if let Some(&previous) = times.last() {
                if time < previous {
                    return Err(parse_error(path, number, format!("field time_s: {} goes backwards (previous {})", Num(time), Num(previous))));
                }
            }
            // Checked per line so that the error points at the first line past the bound.
            if let Some(&first) = times.first() {
                if time - first > MAX_TRACE_S {
                    return Err(parse_error(
                        path,
                        number,
                        format!("field time_s: {} is more than {MAX_TRACE_S} s (24 h, the longest trace) after the first timestamp {}", Num(time), Num(first)),
                    ));
                }
            }
            if !(0.0..=MAX_RATE_BPS / 1e6).contains(&mbps) {
                return Err(parse_error(path, number, format!("field Mbit/s: {} is not a number in 0..={:e}", Num(mbps), MAX_RATE_BPS / 1e6)));
            }
            times.push(time);
            rates.push(mbps * 1e6);
        }
        if times.is_empty() {
            return Err(parse_error(path, 1, "trace is empty"));
        }
        let origin = times[0];
        let starts: Vec<f64> = times.iter().map(|t| t - origin).collect();
        let span = starts.last().copied().unwrap_or(0.0);
        if span <= 0.0 {
            return Err(parse_error(
                path,
                last_line,
                "field time_s: every timestamp is the same, so the trace has no duration (it needs two distinct times)",
            ));
        }
        // The last sample lasts as long as the mean interval.
        let duration = span + span / (starts.len() - 1) as f64;
        Self::from_segments(path, last_line, starts, rates, duration)
    }

    pub fn parse_mahimahi(text: &str, path: &str) -> Result<Self, ExecError> {
        let max_ms = (MAX_TRACE_S * 1e3) as u64;
        // Only the bins that hold packets, so memory follows the file's length and never a
        // timestamp's value: one line far in the future costs one entry, not a billion bins.
        let mut bins: Vec<(u64, u64)> = Vec::new();
        let mut last = 0u64;
        let mut last_line = 1;
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            let field = line.trim();
            if field.is_empty() {
                continue;
            }
            last_line = number;
            let ms: u64 = field
                .parse()
                .map_err(|_| parse_error(path, number, format!("expected a millisecond timestamp, found `{field}`")))?;
            if ms > max_ms {
                return Err(parse_error(
                    path,
                    number,
                    format!("timestamp {ms} ms is past {max_ms} ms (24 h, the longest trace)"),
                ));
            }
            if ms < last {
                return Err(parse_error(path, number, format!("timestamp {ms} ms goes backwards (previous {last} ms)")));
            }
            last = ms;
            let bin = ms / MAHIMAHI_BIN_MS;
            match bins.last_mut() {
                Some((b, count)) if *b == bin => *count += 1,
                _ => bins.push((bin, 1)),
            }
        }
        if bins.is_empty() {
            return Err(parse_error(path, 1, "trace is empty"));
        }
        // Mahimahi loops at the last timestamp.
        let duration = (last.max(1) as f64) / 1e3;
        let bin_s = MAHIMAHI_BIN_MS as f64 / 1e3;
        let mut starts = Vec::with_capacity(2 * bins.len() + 1);
        let mut rates = Vec::with_capacity(2 * bins.len() + 1);
        let mut next_bin = 0;
        for &(bin, count) in &bins {
            if bin > next_bin {
                // a run of bins without a delivery opportunity: one silent segment
                starts.push(next_bin as f64 * bin_s);
                rates.push(0.0);
            }
            starts.push(bin as f64 * bin_s);
            rates.push(count as f64 * MAHIMAHI_PACKET_BYTES * 8.0 / bin_s);
            next_bin = bin + 1;
        }
        Self::from_segments(path, last_line, starts, rates, duration)
    }

    fn from_segments(path: &str, line: usize, starts: Vec<f64>, rates: Vec<f64>, duration_s: f64) -> Result<Self, ExecError> {
        let trace = Trace::new(String::new(), starts, rates, duration_s);
        trace.check().map_err(|message| parse_error(path, line, message))?;
        Ok(trace)
    }

    /// What every loaded or scaled trace satisfies, and what makes `transfer_time` finite.
    fn check(&self) -> Result<(), String> {
        if self.starts.is_empty() || self.starts.len() != self.rates_bps.len() {
            return Err(format!("{} segment starts but {} rates", self.starts.len(), self.rates_bps.len()));
        }
        if !(MIN_TRACE_S..=MAX_TRACE_S).contains(&self.duration_s) {
            return Err(format!("duration {} s is outside {MIN_TRACE_S}..={MAX_TRACE_S} s", Num(self.duration_s)));
        }
        if self.starts[0] != 0.0 || self.starts.iter().any(|s| !s.is_finite()) || self.starts.windows(2).any(|w| w[0] > w[1]) {
            return Err("segment starts must be finite, begin at 0 and never decrease".into());
        }
        if let Some(rate) = self.rates_bps.iter().find(|r| !(0.0..=MAX_RATE_BPS).contains(*r)) {
            return Err(format!("rate {} bit/s is outside 0..={MAX_RATE_BPS:e} bit/s", Num(*rate)));
        }
        let bits = self.loop_bits();
        if bits.is_nan() || bits <= 0.0 {
            return Err("trace has no capacity (every rate is zero)".into());
        }
        let mean = bits / self.duration_s;
        if mean < MIN_MEAN_BPS {
            let shown = if mean >= 1.0 { format!("{mean:.0}") } else { format!("{mean:.3e}") };
            return Err(format!("mean rate {shown} bit/s is below the floor of {MIN_MEAN_BPS} bit/s (1 kbit/s)"));
        }
        Ok(())
    }

    /// Checks a trace built in code (e.g. a [`LinkConfig`](crate::net::link::LinkConfig)'s)
    /// the way `load` checks a file.
    pub fn validate(&self) -> Result<(), ExecError> {
        self.check().map_err(|message| ExecError::Data {
            path: format!("trace `{}`", self.name),
            message,
        })
    }

    /// A constant-rate trace, for tests and synthetic links.
    pub fn constant(mbps: f64, duration_s: f64) -> Self {
        Trace::new(format!("constant-{mbps}Mbps"), vec![0.0], vec![mbps * 1e6], duration_s)
    }

    /// The same trace with every rate multiplied by `factor`, which must be finite and above
    /// zero; the result must still have a mean rate of at least [`MIN_MEAN_BPS`].
    pub fn scaled(&self, factor: f64) -> Result<Self, ExecError> {
        if !(factor.is_finite() && factor > 0.0) {
            return Err(ExecError::Invalid {
                name: "scale factor".into(),
                message: format!("must be a finite number above 0, got {}", Num(factor)),
            });
        }
        let rates = self.rates_bps.iter().map(|r| r * factor).collect();
        let t = Trace::new(self.name.clone(), self.starts.clone(), rates, self.duration_s);
        t.check().map_err(|message| ExecError::Data {
            path: format!("trace `{}` scaled by {}", self.name, Num(factor)),
            message,
        })?;
        Ok(t)
    }

    fn segment_end(&self, i: usize) -> f64 {
        self.starts.get(i + 1).copied().unwrap_or(self.duration_s).min(self.duration_s)
    }

    fn segment_at(&self, t: f64) -> usize {
        self.starts.partition_point(|&s| s <= t).saturating_sub(1)
    }

    /// Whether the loop arithmetic below is meaningful: a trace built in code (the fields are
    /// public) may not be, and then transfers never finish rather than loop forever.
    fn usable(&self) -> bool {
        !self.starts.is_empty()
            && self.starts.len() == self.rates_bps.len()
            && self.duration_s.is_finite()
            && self.duration_s > 0.0
    }

    /// Bits the link carries in one pass over the trace.
    pub fn loop_bits(&self) -> f64 {
        self.cumulative().last().copied().unwrap_or(0.0)
    }

    fn cumulative(&self) -> &[f64] {
        self.cumulative.get_or_init(|| {
            let mut bits = 0.0;
            let mut cumulative = Vec::with_capacity(self.starts.len() + 1);
            cumulative.push(0.0);
            for (i, (&start, &rate)) in self.starts.iter().zip(&self.rates_bps).enumerate() {
                bits += rate * (self.segment_end(i) - start).max(0.0);
                cumulative.push(bits);
            }
            cumulative.into()
        })
    }

    /// Bits carried from the loop's start to `t` (0 ≤ t ≤ duration).
    fn carried_by(&self, t: f64) -> f64 {
        let cumulative = self.cumulative();
        let i = self.segment_at(t).min(self.rates_bps.len() - 1);
        let within = (t.min(self.segment_end(i)) - self.starts[i]).max(0.0);
        cumulative[i] + self.rates_bps[i] * within
    }

    /// When the bits carried from the loop's start reach `bits` (0 < bits ≤ one loop's).
    fn time_carrying(&self, bits: f64) -> f64 {
        let cumulative = self.cumulative();
        // the first segment whose end has carried `bits`: its rate is above zero
        let end = cumulative.partition_point(|&c| c < bits);
        if end == 0 {
            return 0.0;
        }
        if end >= cumulative.len() {
            return self.duration_s;
        }
        let i = end - 1;
        let rate = self.rates_bps[i];
        if rate <= 0.0 {
            return self.segment_end(i);
        }
        (self.starts[i] + (bits - cumulative[i]) / rate).min(self.segment_end(i))
    }

    pub fn mean_mbps(&self) -> f64 {
        self.loop_bits() / self.duration_s / 1e6
    }

    /// Rate at time `t` (seconds, looping), bits per second.
    pub fn rate_bps_at(&self, t: f64) -> f64 {
        self.rates_bps.get(self.segment_at(t.rem_euclid(self.duration_s))).copied().unwrap_or(0.0)
    }

    /// Where `t` (seconds, looping) falls: the segment and the time within the loop. Working
    /// within one loop keeps the arithmetic below exact however large `t` is.
    fn locate(&self, t: f64) -> (usize, f64) {
        let local = if t.is_finite() { t.rem_euclid(self.duration_s) } else { 0.0 };
        // rem_euclid may round up to the loop's length itself
        let local = if local < self.duration_s { local } else { 0.0 };
        let i = self.segment_at(local).min(self.rates_bps.len() - 1);
        (i, local)
    }

    /// Bits the link carries between `t0` and `t1` (t0 ≤ t1, looping).
    pub fn bits_between(&self, t0: f64, t1: f64) -> f64 {
        if !self.usable() || t0.is_nan() || t1.is_nan() || t1 <= t0 {
            return 0.0;
        }
        let span = t1 - t0;
        if !span.is_finite() {
            return f64::INFINITY;
        }
        let loops = (span / self.duration_s).floor();
        let left = (span - loops * self.duration_s).clamp(0.0, self.duration_s);
        let (_, from) = self.locate(t0);
        let to = from + left;
        let within = if to <= self.duration_s {
            self.carried_by(to) - self.carried_by(from)
        } else {
            self.loop_bits() - self.carried_by(from) + self.carried_by(to - self.duration_s)
        };
        loops * self.loop_bits() + within.max(0.0)
    }

    /// Seconds needed to carry `bytes` starting at time `start` (seconds, looping): the
    /// integral of the rate from `start` reaches the size, as in Pensieve's simulator. Finite
    /// for a finite size on any trace that `load` or `scaled` returned; infinite, never a hang,
    /// on a hand-built trace without capacity.
    pub fn transfer_time(&self, start: f64, bytes: f64) -> f64 {
        if bytes.is_nan() || bytes <= 0.0 {
            return 0.0;
        }
        // Bytes rather than bits: `bytes * 8` could overflow where `bytes` does not.
        let loop_bytes = self.loop_bits() / 8.0;
        if !self.usable() || !loop_bytes.is_finite() || loop_bytes <= 0.0 {
            return f64::INFINITY;
        }
        let loops = bytes / loop_bytes;
        if loops >= MAX_EXACT_LOOPS {
            // Past 2^53 loops a loop count is no longer exact: the mean rate is as precise.
            return bytes / (loop_bytes / self.duration_s);
        }
        // Whole loops carry `loop_bytes` from any start, so they are skipped by arithmetic. At
        // most one loop's worth is left for the walk, clamped so that rounding cannot leave more.
        let skipped = (loops.ceil() - 1.0).max(0.0);
        let mut elapsed = skipped * self.duration_s;
        let mut bits = (bytes - skipped * loop_bytes).clamp(0.0, loop_bytes) * 8.0;
        let (_, from) = self.locate(start);
        let target = self.carried_by(from) + bits;
        let loop_bits = self.loop_bits();
        if bits <= 0.0 {
            return elapsed;
        }
        if target <= loop_bits {
            return elapsed + (self.time_carrying(target) - from).max(0.0);
        }
        elapsed += self.duration_s - from;
        bits = target - loop_bits;
        if bits <= loop_bits {
            return elapsed + self.time_carrying(bits);
        }
        // Rounding in the loop's sum can leave a sliver: it goes at the mean rate.
        elapsed + bits.max(0.0) * self.duration_s / (loop_bytes * 8.0)
    }
}
