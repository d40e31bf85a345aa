//! Bandwidth traces: Pensieve's `time_s Mbit/s` lines and Mahimahi's packet-delivery
//! opportunities (one line per 1500-byte packet, in ms). Both become a looping, piecewise-constant
//! rate over time, which the link emulator replays and the simulator integrates.

use std::path::Path;

use serde::Serialize;

use crate::ExecError;

/// Bytes one Mahimahi delivery opportunity carries.
pub const MAHIMAHI_PACKET_BYTES: f64 = 1500.0;
/// Mahimahi opportunities are counted in bins of this many milliseconds.
pub const MAHIMAHI_BIN_MS: u64 = 10;

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
}

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
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            if line.trim().is_empty() {
                continue;
            }
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
            if !time.is_finite() || times.last().is_some_and(|&last| time < last) {
                return Err(parse_error(path, number, format!("field time_s: {time} goes backwards or is not finite")));
            }
            if !mbps.is_finite() || mbps < 0.0 {
                return Err(parse_error(path, number, format!("field Mbit/s: {mbps} is negative or not finite")));
            }
            times.push(time);
            rates.push(mbps * 1e6);
        }
        if times.is_empty() {
            return Err(parse_error(path, 1, "trace is empty"));
        }
        let origin = times[0];
        let starts: Vec<f64> = times.iter().map(|t| t - origin).collect();
        // The last sample lasts as long as the mean interval (one second for a single sample).
        let span = starts.last().copied().unwrap_or(0.0);
        let last_len = if starts.len() > 1 { span / (starts.len() - 1) as f64 } else { 1.0 };
        let duration = span + last_len.max(1e-3);
        Self::from_segments(path, starts, rates, duration)
    }

    pub fn parse_mahimahi(text: &str, path: &str) -> Result<Self, ExecError> {
        let mut counts: Vec<u64> = Vec::new();
        let mut last = 0u64;
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            let field = line.trim();
            if field.is_empty() {
                continue;
            }
            let ms: u64 = field
                .parse()
                .map_err(|_| parse_error(path, number, format!("expected a millisecond timestamp, found `{field}`")))?;
            if ms < last {
                return Err(parse_error(path, number, format!("timestamp {ms} ms goes backwards (previous {last} ms)")));
            }
            last = ms;
            let bin = (ms / MAHIMAHI_BIN_MS) as usize;
            if counts.len() <= bin {
                counts.resize(bin + 1, 0);
            }
            counts[bin] += 1;
        }
        if counts.is_empty() {
            return Err(parse_error(path, 1, "trace is empty"));
        }
        // Mahimahi loops at the last timestamp.
        let duration = (last.max(1) as f64) / 1e3;
        let bin_s = MAHIMAHI_BIN_MS as f64 / 1e3;
        let starts: Vec<f64> = (0..counts.len()).map(|i| i as f64 * bin_s).collect();
        let rates: Vec<f64> = counts
            .iter()
            .map(|&c| c as f64 * MAHIMAHI_PACKET_BYTES * 8.0 / bin_s)
            .collect();
        Self::from_segments(path, starts, rates, duration)
    }

    fn from_segments(path: &str, starts: Vec<f64>, rates: Vec<f64>, duration_s: f64) -> Result<Self, ExecError> {
        let trace = Trace {
            name: String::new(),
            starts,
            rates_bps: rates,
            duration_s,
        };
        if !(trace.loop_bits() > 0.0) {
            return Err(parse_error(path, 1, "trace has no capacity (every rate is zero)"));
        }
        Ok(trace)
    }

    /// A constant-rate trace, for tests and synthetic links.
    pub fn constant(mbps: f64, duration_s: f64) -> Self {
        Trace {
            name: format!("constant-{mbps}Mbps"),
            starts: vec![0.0],
            rates_bps: vec![mbps * 1e6],
            duration_s,
        }
    }

    /// The same trace with every rate multiplied by `factor`.
    pub fn scaled(&self, factor: f64) -> Self {
        let mut t = self.clone();
        t.rates_bps.iter_mut().for_each(|r| *r *= factor);
        t
    }

    fn segment_end(&self, i: usize) -> f64 {
        self.starts.get(i + 1).copied().unwrap_or(self.duration_s).min(self.duration_s)
    }

    fn segment_at(&self, t: f64) -> usize {
        self.starts.partition_point(|&s| s <= t).saturating_sub(1)
    }

    /// Bits the link carries in one pass over the trace.
    pub fn loop_bits(&self) -> f64 {
        (0..self.starts.len())
            .map(|i| self.rates_bps[i] * (self.segment_end(i) - self.starts[i]).max(0.0))
            .sum()
    }

    pub fn mean_mbps(&self) -> f64 {
        self.loop_bits() / self.duration_s / 1e6
    }

    /// Rate at time `t` (seconds, looping), bits per second.
    pub fn rate_bps_at(&self, t: f64) -> f64 {
        self.rates_bps[self.segment_at(t.rem_euclid(self.duration_s))]
    }

    /// Bits the link carries between `t0` and `t1` (t0 ≤ t1, looping).
    pub fn bits_between(&self, t0: f64, t1: f64) -> f64 {
        let loops = ((t1 - t0) / self.duration_s).floor();
        let mut bits = loops * self.loop_bits();
        let mut t = t0 + loops * self.duration_s;
        while t < t1 - 1e-12 {
            let local = t.rem_euclid(self.duration_s);
            let i = self.segment_at(local);
            let step = (self.segment_end(i) - local).max(1e-9).min(t1 - t);
            bits += self.rates_bps[i] * step;
            t += step;
        }
        bits
    }

    /// Seconds needed to carry `bytes` starting at time `start` (seconds, looping): the
    /// integral of the rate from `start` reaches the size, as in Pensieve's simulator.
    pub fn transfer_time(&self, start: f64, bytes: f64) -> f64 {
        let mut bits = bytes * 8.0;
        if bits <= 0.0 {
            return 0.0;
        }
        let per_loop = self.loop_bits();
        // whole loops first, so huge transfers on slow traces cost no more than one pass
        let loops = (bits / per_loop).floor();
        let mut elapsed = 0.0;
        if loops >= 1.0 {
            let skipped = loops - 1.0;
            bits -= skipped * per_loop;
            elapsed += skipped * self.duration_s;
        }
        let mut t = (start + elapsed).rem_euclid(self.duration_s);
        loop {
            let i = self.segment_at(t);
            let end = self.segment_end(i);
            let span = (end - t).max(0.0);
            let capacity = self.rates_bps[i] * span;
            if capacity >= bits && self.rates_bps[i] > 0.0 {
                return elapsed + bits / self.rates_bps[i];
            }
            bits -= capacity;
            elapsed += span;
            t = if end >= self.duration_s { 0.0 } else { end };
            if span == 0.0 && end >= self.duration_s {
                t = 0.0;
            }
        }
    }
}
