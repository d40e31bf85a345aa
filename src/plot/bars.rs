//! Regret-ratio bars: per trace set × bandwidth scale, each scheduler's regret against the
//! clairvoyant lookahead oracle divided by the best deployable baseline's (1 = as good as the best
//! baseline, 0 = as good as the oracle, below 0 = better than it). The axis is linear and
//! capped: `local` reaches ratios in the thousands, and a cut bar carries its value as text.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{color_of, msg, render, text, Figure, PlotError};

/// Bars above this are cut and labelled with their value.
const CAP: f64 = 3.0;

/// One trace set at one scale: (scheduler, regret ratio) in drawing order.
pub struct BarCell {
    pub label: String,
    pub ratios: Vec<(String, f64)>,
}

struct Bars<'a> {
    title: &'a str,
    cells: Vec<(String, Vec<(&'a str, f64)>)>,
    names: Vec<&'a str>,
}

/// Writes `NAME.svg` and `NAME.png`. Non-finite ratios are left out: the ratio is undefined
/// where the best baseline's regret is not above zero (the oracle is a reference, not a
/// proven bound, and on a short run a baseline can match it); such a cell keeps its place,
/// marked "no ratio". Nothing finite in any cell is an error.
pub fn regret_bars(dir: &Path, name: &str, title: &str, cells: &[BarCell]) -> Result<Vec<PathBuf>, PlotError> {
    let mut names: Vec<&str> = Vec::new();
    let mut kept = Vec::new();
    for cell in cells {
        let ratios: Vec<(&str, f64)> =
            cell.ratios.iter().filter(|(_, r)| r.is_finite()).map(|(n, r)| (n.as_str(), *r)).collect();
        for (n, _) in &ratios {
            if !names.contains(n) {
                names.push(n);
            }
        }
        let label = if ratios.is_empty() { format!("{} (no ratio)", cell.label) } else { cell.label.clone() };
        kept.push((label, ratios));
    }
    if names.is_empty() {
        return Err(PlotError::Empty(format!("no finite regret ratio in any of {} trace set × scale cells", cells.len())));
    }
    let width = (240 + 110 * cells.len() as u32 * names.len().max(4) as u32 / 6).clamp(700, 2000);
    render(dir, name, (width, 700), &Bars { title, cells: kept, names })
}

impl Figure for Bars<'_> {
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let lowest = self.cells.iter().flat_map(|c| c.1.iter().map(|r| r.1)).fold(0.0, f64::min).max(-CAP);
        let n = self.cells.len() as f64;
        let labels: Vec<&str> = self.cells.iter().map(|c| c.0.as_str()).collect();
        let mut chart = ChartBuilder::on(area)
            .caption(self.title, text(22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .build_cartesian_2d(0.0..n, (lowest - 0.15)..(CAP + 1.9))
            .map_err(msg)?;
        super::cell_axes(&mut chart, &labels, "regret / best baseline's regret", &|v| format!("{v:.1}"))?;
        let slot = 0.8 / self.names.len() as f64;
        for (k, &name) in self.names.iter().enumerate() {
            let color = color_of(name);
            let mut bars = Vec::new();
            let mut notes = Vec::new();
            for (i, (_, ratios)) in self.cells.iter().enumerate() {
                let Some(&(_, r)) = ratios.iter().find(|(n, _)| *n == name) else { continue };
                let x0 = i as f64 + 0.1 + k as f64 * slot;
                let top = r.clamp(-CAP, CAP);
                bars.push(Rectangle::new([(x0, 0.0), (x0 + slot * 0.9, top)], color.filled()));
                if r.abs() > CAP {
                    notes.push((x0, top, r));
                }
            }
            chart
                .draw_series(bars)
                .map_err(msg)?
                .label(name)
                .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled()));
            // a cut bar's value, written up its inside so neighbours' values never collide
            chart
                .draw_series(notes.into_iter().map(|(x, top, r)| {
                    let style = text(12).transform(FontTransform::Rotate270).color(&WHITE);
                    let y = if top > 0.0 { top - 0.75 } else { top + 0.1 };
                    Text::new(format!("{r:.0}"), (x + slot * 0.15, y), style)
                }))
                .map_err(msg)?;
        }
        for (level, style) in [(1.0, BLACK.stroke_width(1)), (0.5, RGBColor(214, 39, 40).stroke_width(1)), (0.0, BLACK.stroke_width(1))] {
            chart.draw_series(LineSeries::new([(0.0, level), (n, level)], style)).map_err(msg)?;
        }
        super::legend(&mut chart, SeriesLabelPosition::UpperRight, 13)?;
        Ok(())
    }
}
