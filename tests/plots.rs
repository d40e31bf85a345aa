//! `rlsched eval --plot`: every figure is written as an SVG that parses as XML and names its
//! series, and as a PNG whose header and size are right; bad input (a directory that cannot be
//! made, nothing to plot, a malformed `--trace-set`) is a clear error.

use std::path::{Path, PathBuf};
use std::process::Command;

use rlsched::plot::{latency_cdf, margin_bars, regret_bars, BarCell, LatencySeries, MarginCell, PlotError};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rlsched-plots-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    dir
}

/// The SVG parses as XML and its text holds every expected name.
fn assert_svg(path: &Path, names: &[&str]) {
    let text = std::fs::read_to_string(path).unwrap();
    let doc = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{}: not XML: {e}", path.display()));
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let texts: Vec<&str> = doc.descendants().filter_map(|n| n.text()).collect();
    for name in names {
        assert!(texts.iter().any(|t| t.contains(name)), "{}: no text `{name}` in {texts:?}", path.display());
    }
}

/// The PNG decodes, with the expected size.
fn assert_png(path: &Path, min_width: u32) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{}: PNG signature", path.display());
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut pixels).unwrap();
    assert!(info.width >= min_width && info.height >= 300, "{}: {}×{}", path.display(), info.width, info.height);
    // something was drawn: not every pixel is the white background
    assert!(pixels.iter().any(|&p| p < 200), "{}: blank image", path.display());
    (info.width, info.height)
}

#[test]
fn cdf_and_bars_are_valid_svg_and_png() {
    let dir = scratch("unit");
    let series = vec![
        LatencySeries { name: "mpc".into(), latencies_ms: (1..500).map(|i| 20.0 + i as f64).collect() },
        LatencySeries { name: "policy".into(), latencies_ms: (1..500).map(|i| 15.0 + 2.0 * i as f64).collect() },
    ];
    let files = latency_cdf(&dir, "cdf", "Latency CDF — test", &series).unwrap();
    assert_eq!(files, vec![dir.join("cdf.svg"), dir.join("cdf.png")]);
    assert_svg(&files[0], &["mpc", "policy", "Latency CDF"]);
    assert_eq!(assert_png(&files[1], 800), (900, 560));

    let cells = vec![
        BarCell { label: "fcc ×1".into(), ratios: vec![("mpc".into(), 1.0), ("policy".into(), 0.4), ("local".into(), 2000.0)] },
        BarCell { label: "fcc ×5".into(), ratios: vec![("mpc".into(), 1.0), ("policy".into(), -0.3), ("local".into(), f64::NAN)] },
        BarCell { label: "fcc ×20".into(), ratios: vec![("mpc".into(), f64::NAN)] },
    ];
    let files = regret_bars(&dir, "bars", "Regret ratio", &cells).unwrap();
    assert_svg(&files[0], &["mpc", "policy", "local", "fcc ×1", "fcc ×5", "2000", "fcc ×20 (no ratio)"]);
    assert_png(&files[1], 700);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn nothing_to_plot_and_unwritable_dirs_are_errors() {
    let dir = scratch("bad");
    let empty = latency_cdf(&dir, "cdf", "t", &[]).unwrap_err();
    assert!(matches!(empty, PlotError::Empty(_)), "{empty}");
    let no_latency = latency_cdf(&dir, "cdf", "t", &[LatencySeries { name: "mpc".into(), latencies_ms: vec![] }]).unwrap_err();
    assert!(no_latency.to_string().contains("no scheduler has a latency"), "{no_latency}");
    assert!(matches!(regret_bars(&dir, "bars", "t", &[]), Err(PlotError::Empty(_))));
    let nan = [BarCell { label: "x".into(), ratios: vec![("mpc".into(), f64::NAN)] }];
    assert!(regret_bars(&dir, "bars", "t", &nan).unwrap_err().to_string().contains("no finite regret ratio"));
    let nan = [MarginCell { label: "x".into(), margins: vec![("policy".into(), (0.1, f64::NAN, 0.2))] }];
    assert!(matches!(margin_bars(&dir, "margin", "t", &nan), Err(PlotError::Empty(_))));

    // a directory beneath a regular file can never be made, whoever runs the test
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let series = [LatencySeries { name: "mpc".into(), latencies_ms: vec![10.0, 20.0] }];
    let err = latency_cdf(&file.join("plots"), "cdf", "t", &series).unwrap_err();
    assert!(matches!(err, PlotError::Dir { .. }), "{err}");
    assert!(err.to_string().contains("a-file"), "the error names the directory: {err}");
    std::fs::remove_dir_all(dir).ok();
}

fn rlsched() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rlsched"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
    cmd
}

#[test]
fn eval_plot_draws_every_figure_over_sets_and_scales() {
    let dir = scratch("eval");
    let json = dir.join("cells.json");
    let out = rlsched()
        .args(["eval", "--config", "train.toml", "--requests", "200", "--schedulers", "mpc,local,oracle,policy"])
        .args(["--trace-set", "fcc-val=data/traces/fcc-val", "--trace-set", "norway=data/traces/norway-hsdpa"])
        .args(["--scales", "1,20", "--plot"])
        .arg(&dir)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cells: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let cells = cells.as_array().unwrap();
    assert_eq!(cells.len(), 4, "2 sets × 2 scales");
    assert_eq!((cells[0]["set"].as_str(), cells[0]["scale"].as_f64()), (Some("fcc-val"), Some(1.0)));
    assert_eq!((cells[3]["set"].as_str(), cells[3]["scale"].as_f64()), (Some("norway"), Some(20.0)));
    for (set, scale) in [("fcc-val", 1), ("fcc-val", 20), ("norway", 1), ("norway", 20)] {
        let base = dir.join(format!("latency-cdf-{set}-x{scale}"));
        assert_svg(&base.with_extension("svg"), &["mpc", "local", "oracle", "policy"]);
        assert_png(&base.with_extension("png"), 800);
    }
    assert_svg(&dir.join("regret-ratio.svg"), &["mpc", "local", "policy", "fcc-val ×1", "norway ×"]);
    assert_png(&dir.join("regret-ratio.png"), 700);
    assert_svg(&dir.join("margin.svg"), &["policy", "oracle", "fcc-val ×1", "norway ×20", "best baseline"]);
    assert_png(&dir.join("margin.png"), 700);
    // the timeline: the first cell's best baseline (mpc, the only deployable baseline besides
    // local, unless local wins), the policy and the oracle on one episode
    assert_svg(&dir.join("timeline.svg"), &["policy", "oracle", "Mbit/s", "device queue", "offload"]);
    assert_png(&dir.join("timeline.png"), 1000);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn eval_refuses_bad_plot_and_set_arguments() {
    let dir = scratch("cli-bad");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let out = rlsched()
        .args(["eval", "--config", "train.toml", "--requests", "10", "--schedulers", "mpc", "--plot"])
        .arg(file.join("plots"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot write plots into") && stderr.contains("a-file"), "{stderr}");

    let out = rlsched().args(["eval", "--config", "train.toml", "--trace-set", "no-equals-sign"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("NAME=PATH"), "{}", String::from_utf8_lossy(&out.stderr));

    let out = rlsched()
        .args(["eval", "--config", "train.toml", "--traces", "data/traces/fcc-val", "--trace-set", "a=data/traces/fcc-val"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("not both"));

    let out = rlsched()
        .args(["eval", "--config", "train.toml", "--requests", "10", "--schedulers", "mpc", "--scales", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("env.bandwidth_scale"), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::remove_dir_all(dir).ok();
}
