//! SVG plots of a sweep with plotters: forwarded Mpps of dpf and of
//! dpdk-testpmd against the sweep's x (flows, rules, workers).
//!
//! A logarithmic x axis is drawn as a linear axis over log10(x) with
//! labels at the powers of ten, so 1, 10, ... 10k are evenly spaced. LOSSY
//! or failed dpf points are left off the dpf line and marked with a red
//! cross at the bottom of the chart.

use std::path::Path;

use anyhow::anyhow;
use plotters::prelude::*;

use super::report::human_count;

/// One x of a sweep.
#[derive(Clone, Debug, PartialEq)]
pub struct PlotPoint {
    /// The x value (> 0 for a log axis).
    pub x: u64,
    /// dpf's forwarded Mpps, if it measured a throughput.
    pub dpf_mpps: Option<f64>,
    /// testpmd's forwarded Mpps, if measured.
    pub testpmd_mpps: Option<f64>,
}

/// Chart size in pixels.
const SIZE: (u32, u32) = (900, 520);

/// Draws `points` into `path` as SVG.
pub fn plot_sweep(
    path: &Path,
    title: &str,
    x_desc: &str,
    log_x: bool,
    points: &[PlotPoint],
) -> anyhow::Result<()> {
    let to_x = |x: u64| {
        if log_x {
            (x.max(1) as f64).log10()
        } else {
            x as f64
        }
    };
    let xs: Vec<f64> = points.iter().map(|p| to_x(p.x)).collect();
    let (mut x_min, mut x_max) = xs
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    if !x_min.is_finite() {
        (x_min, x_max) = (0.0, 1.0);
    }
    let pad = ((x_max - x_min) * 0.05).max(0.25);
    let y_max = points
        .iter()
        .flat_map(|p| [p.dpf_mpps, p.testpmd_mpps])
        .flatten()
        .fold(0.0f64, f64::max)
        .max(1.0)
        * 1.15;

    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| anyhow!("plotting {}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d((x_min - pad)..(x_max + pad), 0.0..y_max)
        .map_err(|e| err(&e))?;
    let label_x = |v: &f64| {
        if log_x {
            if (v - v.round()).abs() < 1e-6 && *v >= 0.0 {
                human_count(10f64.powi(v.round() as i32) as u64)
            } else {
                String::new()
            }
        } else if (v - v.round()).abs() < 1e-6 {
            format!("{}", v.round() as i64)
        } else {
            String::new()
        }
    };
    let labels = if log_x {
        ((x_max - x_min).ceil() as usize + 2).max(2)
    } else {
        (x_max - x_min + 2.0) as usize
    };
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc("forwarded Mpps")
        .x_labels(labels.min(20))
        .x_label_formatter(&label_x)
        .draw()
        .map_err(|e| err(&e))?;

    let series = |pick: fn(&PlotPoint) -> Option<f64>| -> Vec<(f64, f64)> {
        points
            .iter()
            .zip(&xs)
            .filter_map(|(p, &x)| pick(p).map(|y| (x, y)))
            .collect()
    };
    let testpmd = series(|p| p.testpmd_mpps);
    if !testpmd.is_empty() {
        let grey = RGBColor(120, 120, 120);
        chart
            .draw_series(LineSeries::new(testpmd.clone(), grey.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label("dpdk-testpmd io")
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], grey.stroke_width(2)));
        chart
            .draw_series(
                testpmd
                    .iter()
                    .map(|&(x, y)| Circle::new((x, y), 4, grey.filled())),
            )
            .map_err(|e| err(&e))?;
    }
    let dpf = series(|p| p.dpf_mpps);
    chart
        .draw_series(LineSeries::new(dpf.clone(), BLUE.stroke_width(3)))
        .map_err(|e| err(&e))?
        .label("dpf")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLUE.stroke_width(3)));
    chart
        .draw_series(
            dpf.iter()
                .map(|&(x, y)| Circle::new((x, y), 5, BLUE.filled())),
        )
        .map_err(|e| err(&e))?;
    let missing: Vec<f64> = points
        .iter()
        .zip(&xs)
        .filter(|(p, _)| p.dpf_mpps.is_none())
        .map(|(_, &x)| x)
        .collect();
    if !missing.is_empty() {
        chart
            .draw_series(
                missing
                    .iter()
                    .map(|&x| Cross::new((x, y_max * 0.03), 7, RED.stroke_width(3))),
            )
            .map_err(|e| err(&e))?
            .label("dpf LOSSY or failed")
            .legend(|(x, y)| Cross::new((x + 10, y), 5, RED.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_an_svg_with_both_series() {
        let dir = std::env::temp_dir().join(format!("bench-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.svg");
        let points: Vec<PlotPoint> = [1000u64, 10_000, 100_000, 1_000_000]
            .iter()
            .enumerate()
            .map(|(i, &x)| PlotPoint {
                x,
                dpf_mpps: (i != 2).then_some(20.0 - i as f64),
                testpmd_mpps: Some(30.0),
            })
            .collect();
        plot_sweep(&path, "states", "flows", true, &points).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"));
        for text in [
            "dpf",
            "dpdk-testpmd io",
            "1k",
            "1M",
            "forwarded Mpps",
            "LOSSY",
        ] {
            assert!(svg.contains(text), "{text} missing");
        }
        // Linear axis and no testpmd.
        let lin = dir.join("w.svg");
        let points = [PlotPoint {
            x: 1,
            dpf_mpps: Some(5.0),
            testpmd_mpps: None,
        }];
        plot_sweep(&lin, "workers", "workers", false, &points).unwrap();
        let svg = std::fs::read_to_string(&lin).unwrap();
        assert!(!svg.contains("dpdk-testpmd"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
