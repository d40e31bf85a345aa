//! One episode's timeline, the same requests for every scheduler: the trace's true bandwidth
//! (and each scheduler's link estimate at its decisions), the local work queued on the device,
//! and the plan each scheduler chose for each request.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;
use rlsched_env::episode::EpisodeRecord;

use super::{color_of, msg, render, text, Figure, PlotError};

pub struct Timeline<'a> {
    pub title: String,
    /// (trace time s, Mbit/s) of the true rate.
    pub bandwidth: Vec<(f64, f64)>,
    pub episodes: &'a [EpisodeRecord],
}

/// Writes `NAME.svg` and `NAME.png`.
pub fn timeline(dir: &Path, name: &str, timeline: &Timeline) -> Result<Vec<PathBuf>, PlotError> {
    let steps: usize = timeline.episodes.iter().map(|e| e.steps.len()).sum();
    if steps == 0 {
        return Err(PlotError::Empty("the timeline has no scheduler with a recorded request".into()));
    }
    let height = 560 + 40 * timeline.episodes.len() as u32;
    render(dir, name, (1100, height), timeline)
}

const KINDS: [(&str, RGBColor); 3] =
    [("local", RGBColor(31, 119, 180)), ("split", RGBColor(44, 160, 44)), ("offload", RGBColor(214, 39, 40))];

fn kind_color(kind: &str) -> RGBColor {
    KINDS.iter().find(|k| k.0 == kind).map_or(BLACK, |k| k.1)
}

impl Figure for Timeline<'_> {
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let episodes: Vec<&EpisodeRecord> = self.episodes.iter().filter(|e| !e.steps.is_empty()).collect();
        let t0 = episodes.iter().map(|e| e.steps[0].time_s).fold(f64::INFINITY, f64::min);
        let t1 = episodes.iter().map(|e| e.steps[e.steps.len() - 1].time_s).fold(t0 + 1e-3, f64::max);
        let span = t1 - t0;
        let area = area.titled(&self.title, text(22)).map_err(msg)?;
        let (top, rest) = area.split_vertically(area.dim_in_pixel().1 as i32 * 30 / 100);
        let (middle, bottom) = rest.split_vertically(rest.dim_in_pixel().1 as i32 * 45 / 100);

        // bandwidth: the truth, and each scheduler's estimate where it decided
        let estimates = episodes
            .iter()
            .flat_map(|e| e.steps.iter().filter_map(|s| s.estimated_mbps))
            .fold(0.0, f64::max);
        let rate_max = self.bandwidth.iter().map(|b| b.1).fold(estimates, f64::max).max(0.1) * 1.1;
        let mut chart = ChartBuilder::on(&top)
            .margin(8)
            .x_label_area_size(25)
            .y_label_area_size(65)
            .build_cartesian_2d(0.0..span, 0.0..rate_max)
            .map_err(msg)?;
        chart.configure_mesh().y_desc("Mbit/s").x_label_formatter(&|v| format!("{v:.0}")).label_style(text(13)).axis_desc_style(text(14)).draw().map_err(msg)?;
        let truth = self.bandwidth.iter().map(|&(t, r)| (t - t0, r)).filter(|p| p.0 >= 0.0 && p.0 <= span);
        chart
            .draw_series(LineSeries::new(truth, BLACK.stroke_width(2)))
            .map_err(msg)?
            .label("true rate (1 s windows)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(2)));
        for e in &episodes {
            let color = color_of(&e.scheduler);
            let points = e.steps.iter().filter_map(|s| s.estimated_mbps.map(|m| (s.time_s - t0, m)));
            chart
                .draw_series(points.map(|p| Circle::new(p, 2, color.filled())))
                .map_err(msg)?
                .label(format!("{} estimate", e.scheduler))
                .legend(move |(x, y)| Circle::new((x + 10, y), 3, color.filled()));
        }
        super::legend(&mut chart, SeriesLabelPosition::UpperLeft, 12)?;

        // the device's queue as it stood at each decision
        let queue_max = episodes
            .iter()
            .flat_map(|e| e.steps.iter().map(|s| s.device_ahead_ms))
            .fold(0.0, f64::max)
            .max(10.0)
            * 1.1;
        let mut chart = ChartBuilder::on(&middle)
            .margin(8)
            .x_label_area_size(25)
            .y_label_area_size(65)
            .build_cartesian_2d(0.0..span, 0.0..queue_max)
            .map_err(msg)?;
        chart
            .configure_mesh()
            .y_desc("device queue, ms")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .label_style(text(13))
            .axis_desc_style(text(14))
            .draw()
            .map_err(msg)?;
        for e in &episodes {
            let color = color_of(&e.scheduler);
            let points = e.steps.iter().map(|s| (s.time_s - t0, s.device_ahead_ms));
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))
                .map_err(msg)?
                .label(e.scheduler.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        }
        super::legend(&mut chart, SeriesLabelPosition::UpperRight, 12)?;

        // the plan each scheduler chose: one row per scheduler, colour by kind, hollow when
        // the variant is compressed
        let rows = episodes.len();
        let names: Vec<&str> = episodes.iter().map(|e| e.scheduler.as_str()).collect();
        let row_label = |y: &f64| {
            let i = y.round();
            if (y - i).abs() < 1e-6 && i >= 0.0 { names.get(i as usize).map_or(String::new(), |n| n.to_string()) } else { String::new() }
        };
        let mut chart = ChartBuilder::on(&bottom)
            .margin(8)
            .x_label_area_size(40)
            .y_label_area_size(110)
            .build_cartesian_2d(0.0..span, -0.6..(rows as f64 + 1.3))
            .map_err(msg)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(rows * 2 + 3)
            .y_label_formatter(&row_label)
            .x_desc("time since the episode's first request, s")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .label_style(text(13))
            .axis_desc_style(text(14))
            .draw()
            .map_err(msg)?;
        for (row, e) in episodes.iter().enumerate() {
            let y = row as f64;
            chart
                .draw_series(e.steps.iter().map(|s| {
                    let color = kind_color(&s.kind);
                    let style = if s.compressed { color.stroke_width(2) } else { color.filled() };
                    Rectangle::new([(s.time_s - t0 - span * 0.0015, y - 0.3), (s.time_s - t0 + span * 0.0015, y + 0.3)], style)
                }))
                .map_err(msg)?;
        }
        for (kind, color) in KINDS {
            chart
                .draw_series(std::iter::empty::<Rectangle<(f64, f64)>>())
                .map_err(msg)?
                .label(kind)
                .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 12, y + 6)], color.filled()));
        }
        chart
            .draw_series(std::iter::empty::<Rectangle<(f64, f64)>>())
            .map_err(msg)?
            .label("compressed (outline)")
            .legend(|(x, y)| Rectangle::new([(x, y - 6), (x + 12, y + 6)], BLACK.stroke_width(2)));
        super::legend(&mut chart, SeriesLabelPosition::UpperRight, 12)?;
        Ok(())
    }
}
