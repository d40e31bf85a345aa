//! The experiments' curves: request index against measured latency and plan, one series per
//! run, written as CSV and as an SVG plot (SVG text is drawn by the viewer, so no font is
//! needed here).

use std::fmt::Write;
use std::path::Path;

/// One served request of one run.
#[derive(Clone, Debug)]
pub struct Point {
    pub run: String,
    pub index: usize,
    pub plan: String,
    pub latency_ms: f64,
    pub reward: f64,
    /// The response's `decision_inputs` (link estimates, predicted rewards, vetoes), so that a
    /// failing assertion shows what each choice read.
    pub inputs: String,
}

pub fn write_csv(path: &Path, points: &[Point]) {
    let mut text = String::from("run,index,plan,latency_ms,reward\n");
    for p in points {
        writeln!(text, "{},{},{},{:.3},{:.5}", p.run, p.index, p.plan, p.latency_ms, p.reward).unwrap();
    }
    std::fs::write(path, text).unwrap();
}

/// Latency (log scale) against request index; a marker per request, filled for plans that
/// use the worker, hollow for local ones; one colour per run.
pub fn write_svg(path: &Path, title: &str, points: &[Point]) {
    let (w, h, left, bottom, top, right) = (900.0, 420.0, 70.0, 50.0, 40.0, 160.0);
    let max_index = points.iter().map(|p| p.index).max().unwrap_or(1).max(1) as f64;
    let lat = |p: &Point| p.latency_ms.max(0.1).log10();
    let (lo, hi) = points.iter().map(lat).fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    let (lo, hi) = (lo.floor(), hi.ceil().max(lo.floor() + 1.0));
    let x = |i: usize| left + (w - left - right) * i as f64 / max_index;
    let y = |v: f64| h - bottom - (h - bottom - top) * (v - lo) / (hi - lo);
    let mut svg = format!(r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#);
    write!(svg, r#"<rect width="{w}" height="{h}" fill="white"/><text x="{}" y="22" font-size="15">{title}</text>"#, left).unwrap();
    write!(svg, r#"<line x1="{left}" y1="{}" x2="{}" y2="{}" stroke="black"/>"#, h - bottom, w - right, h - bottom).unwrap();
    write!(svg, r#"<line x1="{left}" y1="{top}" x2="{left}" y2="{}" stroke="black"/>"#, h - bottom).unwrap();
    let mut decade = lo;
    while decade <= hi {
        write!(svg, r#"<text x="{}" y="{}" text-anchor="end">{} ms</text>"#, left - 6.0, y(decade) + 4.0, 10f64.powf(decade)).unwrap();
        write!(svg, r##"<line x1="{left}" y1="{0}" x2="{1}" y2="{0}" stroke="#ddd"/>"##, y(decade), w - right).unwrap();
        decade += 1.0;
    }
    write!(svg, r#"<text x="{}" y="{}" text-anchor="middle">request index (latency log scale; filled: uses the worker, hollow: local)</text>"#, (left + w - right) / 2.0, h - 12.0).unwrap();
    let colours = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd"];
    let mut runs: Vec<&str> = points.iter().map(|p| p.run.as_str()).collect();
    runs.dedup();
    for (k, run) in runs.iter().enumerate() {
        let colour = colours[k % colours.len()];
        for p in points.iter().filter(|p| p.run == *run) {
            let fill = if p.plan.starts_with("local") { "none" } else { colour };
            write!(svg, r#"<circle cx="{:.1}" cy="{:.1}" r="3" stroke="{colour}" fill="{fill}"/>"#, x(p.index), y(lat(p))).unwrap();
        }
        write!(svg, r#"<circle cx="{}" cy="{}" r="4" fill="{colour}"/><text x="{}" y="{}">{run}</text>"#, w - right + 15.0, top + 20.0 * k as f64, w - right + 25.0, top + 4.0 + 20.0 * k as f64).unwrap();
    }
    svg.push_str("</svg>\n");
    std::fs::write(path, svg).unwrap();
}

/// Mean and a 95% normal interval half-width of the difference of two samples' means (Welch).
pub fn mean_difference(a: &[f64], b: &[f64]) -> (f64, f64) {
    let stats = |v: &[f64]| {
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (v.len() as f64 - 1.0).max(1.0);
        (mean, var / v.len() as f64)
    };
    let ((ma, va), (mb, vb)) = (stats(a), stats(b));
    (ma - mb, 1.96 * (va + vb).sqrt())
}
