//! Figures for `rlsched eval --plot`, drawn with plotters, each written as SVG and PNG: a
//! latency CDF per scheduler (`cdf.rs`), regret-ratio bars per trace set × scale
//! (`bars.rs`), the paired margin over the best baseline with its interval (`margin.rs`), and
//! one episode's timeline (`timeline.rs`). Text is drawn with DejaVu Sans,
//! compiled into the binary (`data/fonts/`), through plotters' `ab_glyph` feature: no
//! fontconfig or freetype on the machine, and the same pixels everywhere.

mod bars;
mod cdf;
mod margin;
mod timeline;

use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;

pub use bars::{regret_bars, BarCell};
pub use cdf::{latency_cdf, LatencySeries};
pub use margin::{margin_bars, MarginCell};
pub use timeline::{timeline, Timeline};

/// The family every figure's text names; registered once, from the bundled font.
const FONT: &str = "sans-serif";
static FONT_BYTES: &[u8] = include_bytes!("../../data/fonts/DejaVuSans.ttf");

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("nothing to plot: {0}")]
    Empty(String),
    #[error("cannot write plots into {dir}: {source}")]
    Dir { dir: PathBuf, source: std::io::Error },
    #[error("drawing {path}: {message}")]
    Draw { path: PathBuf, message: String },
    #[error("the bundled font could not be read")]
    Font,
}

fn register_font() -> Result<(), PlotError> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        for style in [FontStyle::Normal, FontStyle::Bold] {
            if plotters::style::register_font(FONT, style, FONT_BYTES).is_err() {
                result = Err(PlotError::Font);
            }
        }
    });
    result
}

/// Makes sure `dir` exists and takes files, so a bad `--plot` fails before any drawing.
pub fn prepare_dir(dir: &Path) -> Result<(), PlotError> {
    let err = |source| PlotError::Dir { dir: dir.to_path_buf(), source };
    std::fs::create_dir_all(dir).map_err(err)?;
    // a name of this process's own, created with `create_new`: the probe never truncates or
    // removes a file it did not make
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let probe = dir.join(format!(".rlsched-plot-probe-{}-{n}", std::process::id()));
    std::fs::OpenOptions::new().write(true).create_new(true).open(&probe).map_err(err)?;
    std::fs::remove_file(&probe).map_err(err)
}

/// A figure that can draw itself on any plotters backend.
trait Figure {
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<(), String>;
}

/// plotters' errors carry the backend's type; only their message is kept.
fn msg(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Draws one figure twice, `NAME.svg` and `NAME.png` in `dir`, and returns both paths.
fn render(dir: &Path, name: &str, size: (u32, u32), figure: &impl Figure) -> Result<Vec<PathBuf>, PlotError> {
    register_font()?;
    prepare_dir(dir)?;
    let svg = dir.join(format!("{name}.svg"));
    let png = dir.join(format!("{name}.png"));
    let fail = |path: &Path| {
        let path = path.to_path_buf();
        move |message: String| PlotError::Draw { path, message }
    };
    {
        let root = SVGBackend::new(&svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(msg).map_err(fail(&svg))?;
        figure.draw(&root).map_err(fail(&svg))?;
        root.present().map_err(msg).map_err(fail(&svg))?;
    }
    {
        let root = BitMapBackend::new(&png, size).into_drawing_area();
        root.fill(&WHITE).map_err(msg).map_err(fail(&png))?;
        figure.draw(&root).map_err(fail(&png))?;
        root.present().map_err(msg).map_err(fail(&png))?;
    }
    Ok(vec![svg, png])
}

/// A fixed color per scheduler name, so a scheduler looks the same in every figure.
pub fn color_of(name: &str) -> RGBColor {
    match name {
        "policy" => RGBColor(214, 39, 40),
        "mpc" => RGBColor(31, 119, 180),
        "neurosurgeon" => RGBColor(44, 160, 44),
        "robust-mpc" => RGBColor(148, 103, 189),
        "best-static" => RGBColor(140, 86, 75),
        "oracle-now" => RGBColor(127, 127, 127),
        "oracle" => RGBColor(23, 23, 23),
        "local" => RGBColor(255, 127, 14),
        "offload" => RGBColor(23, 190, 207),
        "random" => RGBColor(188, 189, 34),
        other => {
            let h = other.bytes().fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32));
            RGBColor((h % 200) as u8, (h / 200 % 200) as u8, (h / 40000 % 200) as u8)
        }
    }
}

fn text(size: u32) -> TextStyle<'static> {
    (FONT, size).into_font().into()
}

/// The legend box every figure draws, at `position` with labels of `size` pixels.
fn legend<'a, DB, CT>(chart: &mut ChartContext<'a, DB, CT>, position: SeriesLabelPosition, size: u32) -> Result<(), String>
where
    DB: DrawingBackend + 'a,
    CT: plotters::coord::CoordTranslate,
{
    chart
        .configure_series_labels()
        .position(position)
        .label_font(text(size))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(msg)
}

/// The axes of a figure with one slot per cell on `0..labels.len()`: each cell's name at its
/// centre, no vertical grid, the y axis described and formatted as given.
fn cell_axes<'a, DB: DrawingBackend + 'a>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>>,
    labels: &[&str],
    y_desc: &str,
    y_format: &dyn Fn(&f64) -> String,
) -> Result<(), String> {
    let formatter = |x: &f64| {
        let i = x.floor();
        if (x - i - 0.5).abs() < 1e-6 && i >= 0.0 {
            labels.get(i as usize).map_or(String::new(), |l| l.to_string())
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(labels.len() * 2 + 1)
        .x_label_formatter(&formatter)
        .y_desc(y_desc)
        .y_label_formatter(y_format)
        .label_style(text(14))
        .axis_desc_style(text(15))
        .draw()
        .map_err(msg)
}
