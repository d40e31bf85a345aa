//! Latency CDF: for each scheduler, the share of requests served within x ms (log x axis:
//! latencies run from tens of ms to tens of seconds when a queue builds up).

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{color_of, msg, render, text, Figure, PlotError};

/// One scheduler's latencies, ms (any order).
pub struct LatencySeries {
    pub name: String,
    pub latencies_ms: Vec<f64>,
}

struct Cdf<'a> {
    title: &'a str,
    series: Vec<(&'a str, Vec<f64>)>,
}

/// Writes `NAME.svg` and `NAME.png`: one CDF line per scheduler.
pub fn latency_cdf(dir: &Path, name: &str, title: &str, series: &[LatencySeries]) -> Result<Vec<PathBuf>, PlotError> {
    let series: Vec<(&str, Vec<f64>)> = series
        .iter()
        .map(|s| {
            let mut v: Vec<f64> = s.latencies_ms.iter().copied().filter(|x| x.is_finite() && *x > 0.0).collect();
            v.sort_by(f64::total_cmp);
            (s.name.as_str(), v)
        })
        .filter(|(_, v)| !v.is_empty())
        .collect();
    if series.is_empty() {
        return Err(PlotError::Empty(format!("no scheduler has a latency for `{title}`")));
    }
    render(dir, name, (900, 560), &Cdf { title, series })
}

/// At most this many points per line: the curve is the same, the SVG stays small.
const POINTS: usize = 400;

impl Figure for Cdf<'_> {
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let lo = self.series.iter().map(|s| s.1[0]).fold(f64::INFINITY, f64::min);
        let hi = self.series.iter().map(|s| s.1[s.1.len() - 1]).fold(0.0, f64::max);
        let (lo, hi) = (lo * 0.8, (hi * 1.25).max(lo * 2.0));
        let mut chart = ChartBuilder::on(area)
            .caption(self.title, text(22))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(55)
            .build_cartesian_2d((lo..hi).log_scale(), 0.0..1.0)
            .map_err(msg)?;
        chart
            .configure_mesh()
            .x_desc("latency, ms (log scale)")
            .y_desc("share of requests")
            .label_style(text(14))
            .axis_desc_style(text(15))
            .x_label_formatter(&|v| format!("{v:.0}"))
            .draw()
            .map_err(msg)?;
        for (name, v) in &self.series {
            let n = v.len();
            let stride = n.div_ceil(POINTS).max(1);
            let points = (0..n).step_by(stride).chain(std::iter::once(n - 1)).map(|i| (v[i], (i + 1) as f64 / n as f64));
            let color = color_of(name);
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))
                .map_err(msg)?
                .label(*name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        }
        super::legend(&mut chart, SeriesLabelPosition::LowerRight, 14)?;
        Ok(())
    }
}
