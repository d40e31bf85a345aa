//! Margin bars: per trace set × bandwidth scale, a scheduler's mean reward per request minus
//! the best deployable baseline's, paired request by request, with its 95% bootstrap interval
//! over episodes as a whisker. Unlike the regret ratio it is defined in every cell, including
//! those where the best baseline matches the oracle.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{color_of, msg, render, text, Figure, PlotError};

/// One scheduler's paired difference: mean, 95% low, 95% high.
pub type Margin = (f64, f64, f64);

/// One trace set at one scale: (scheduler, margin) in drawing order.
pub struct MarginCell {
    pub label: String,
    pub margins: Vec<(String, Margin)>,
}

struct Margins<'a> {
    title: &'a str,
    cells: Vec<(&'a str, Vec<(&'a str, Margin)>)>,
    names: Vec<&'a str>,
}

/// Writes `NAME.svg` and `NAME.png`; margins with a non-finite part are left out, and nothing
/// finite at all is an error.
pub fn margin_bars(dir: &Path, name: &str, title: &str, cells: &[MarginCell]) -> Result<Vec<PathBuf>, PlotError> {
    let mut names: Vec<&str> = Vec::new();
    let mut kept = Vec::new();
    for cell in cells {
        let margins: Vec<(&str, Margin)> = cell
            .margins
            .iter()
            .filter(|(_, (m, lo, hi))| m.is_finite() && lo.is_finite() && hi.is_finite())
            .map(|(n, m)| (n.as_str(), *m))
            .collect();
        for (n, _) in &margins {
            if !names.contains(n) {
                names.push(n);
            }
        }
        kept.push((cell.label.as_str(), margins));
    }
    if names.is_empty() {
        return Err(PlotError::Empty(format!("no finite margin over the best baseline in any of {} cells", cells.len())));
    }
    let width = (300 + 45 * cells.len() as u32 * names.len() as u32).clamp(700, 2000);
    render(dir, name, (width, 520), &Margins { title, cells: kept, names })
}

impl Figure for Margins<'_> {
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let all = self.cells.iter().flat_map(|c| c.1.iter().map(|e| e.1));
        let (lo, hi) = all.fold((0.0f64, 0.0f64), |(lo, hi), (_, l, h)| (lo.min(l), hi.max(h)));
        let pad = ((hi - lo) * 0.08).max(0.005);
        let n = self.cells.len() as f64;
        let labels: Vec<&str> = self.cells.iter().map(|c| c.0).collect();
        let mut chart = ChartBuilder::on(area)
            .caption(self.title, text(20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(65)
            .build_cartesian_2d(0.0..n, (lo - pad)..(hi + pad * 3.0))
            .map_err(msg)?;
        super::cell_axes(&mut chart, &labels, "reward per request − best baseline's", &|v| format!("{v:+.2}"))?;
        let slot = 0.8 / self.names.len() as f64;
        for (k, &name) in self.names.iter().enumerate() {
            let color = color_of(name);
            let mut bars = Vec::new();
            let mut whiskers = Vec::new();
            for (i, (_, margins)) in self.cells.iter().enumerate() {
                let Some(&(_, (mean, low, high))) = margins.iter().find(|(n, _)| *n == name) else { continue };
                let x0 = i as f64 + 0.1 + k as f64 * slot;
                let mid = x0 + slot * 0.45;
                bars.push(Rectangle::new([(x0, 0.0), (x0 + slot * 0.9, mean)], color.mix(0.75).filled()));
                whiskers.push(PathElement::new(vec![(mid, low), (mid, high)], BLACK.stroke_width(2)));
                for y in [low, high] {
                    whiskers.push(PathElement::new(vec![(mid - slot * 0.2, y), (mid + slot * 0.2, y)], BLACK.stroke_width(2)));
                }
            }
            chart
                .draw_series(bars)
                .map_err(msg)?
                .label(name)
                .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled()));
            chart.draw_series(whiskers).map_err(msg)?;
        }
        chart.draw_series(LineSeries::new([(0.0, 0.0), (n, 0.0)], BLACK.stroke_width(1))).map_err(msg)?;
        super::legend(&mut chart, SeriesLabelPosition::UpperRight, 13)?;
        Ok(())
    }
}
