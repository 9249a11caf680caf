//! Plots (SVG and PNG, plotters): per-VM throughput in Mb/s and Kp/s per policy and
//! scenario (the paper's Fig. 2/3/5), throughput over time of the `dba` runs, delay CDFs
//! and the period sweep.
//!
//! Text is rendered with `ab_glyph` from DejaVu Sans (Debian `fonts-dejavu-core`); without
//! the font no plot is written (the caller reports why).

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::report::{Report, RunReport};
use crate::scenario::{Policy, Scenario};

const FONT_PATHS: [&str; 2] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];
const VM_COLORS: [RGBColor; 3] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
];
const POLICY_COLORS: [RGBColor; 5] = [
    RGBColor(120, 120, 120),
    RGBColor(148, 103, 189),
    RGBColor(214, 39, 40),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
];

type R<T> = Result<T, String>;

fn e<E: std::fmt::Debug>(x: E) -> String {
    format!("{x:?}")
}

fn register_font() -> R<()> {
    use std::sync::OnceLock;
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let bytes = FONT_PATHS
            .iter()
            .find_map(|p| std::fs::read(p).ok())
            .ok_or_else(|| {
                format!(
                    "no DejaVu Sans font ({}); install fonts-dejavu-core",
                    FONT_PATHS.join(", ")
                )
            })?;
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| "DejaVu Sans: invalid font".to_string())
    })
    .clone()
}

/// Draws `f` into `<out>/<name>.svg` and `.png`.
fn both(
    out: &Path,
    name: &str,
    size: (u32, u32),
    files: &mut Vec<PathBuf>,
    f: impl Fn(DrawingArea<SVGBackend, Shift>) -> R<()>,
    g: impl Fn(DrawingArea<BitMapBackend, Shift>) -> R<()>,
) -> R<()> {
    let svg = out.join(format!("{name}.svg"));
    {
        let root = SVGBackend::new(&svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(e)?;
        f(root.clone())?;
        root.present().map_err(e)?;
    }
    let png = out.join(format!("{name}.png"));
    {
        let root = BitMapBackend::new(&png, size).into_drawing_area();
        root.fill(&WHITE).map_err(e)?;
        g(root.clone())?;
        root.present().map_err(e)?;
    }
    files.push(svg);
    files.push(png);
    Ok(())
}

macro_rules! plot_both {
    ($out:expr, $name:expr, $size:expr, $files:expr, $fun:ident ( $($arg:expr),* )) => {
        both($out, $name, $size, $files, |a| $fun(a, $($arg),*), |a| $fun(a, $($arg),*))
    };
}

/// Writes every plot; returns the files written.
pub fn write_all(r: &Report, out: &Path) -> R<Vec<PathBuf>> {
    register_font()?;
    let mut files = Vec::new();
    for sc in Scenario::EVERY {
        let runs: Vec<&RunReport> = r.runs.iter().filter(|x| x.scenario == sc.name()).collect();
        if runs.is_empty() {
            continue;
        }
        let n = sc.name();
        plot_both!(
            out,
            &format!("throughput_mbps_{n}"),
            (900, 500),
            &mut files,
            bars(&runs, n, false)
        )?;
        plot_both!(
            out,
            &format!("throughput_kpps_{n}"),
            (900, 500),
            &mut files,
            bars(&runs, n, true)
        )?;
        plot_both!(
            out,
            &format!("delay_cdf_{n}"),
            (1200, 450),
            &mut files,
            cdfs(&runs, n)
        )?;
        for run in runs.iter().filter(|x| x.policy.starts_with("dba")) {
            plot_both!(
                out,
                &format!("timeline_{n}_{}", run.policy),
                (900, 450),
                &mut files,
                timeline(run)
            )?;
        }
    }
    if !r.period_sweep.is_empty() {
        plot_both!(out, "period_sweep", (1200, 450), &mut files, sweep(r))?;
    }
    Ok(files)
}

fn bars<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    runs: &[&RunReport],
    scenario: &str,
    kpps: bool,
) -> R<()> {
    let val = |v: &crate::report::VmReport| {
        if kpps {
            v.delivered_kpps
        } else {
            v.delivered_mbps
        }
    };
    let ymax = runs
        .iter()
        .flat_map(|r| r.vms.iter().map(val))
        .fold(1.0f64, f64::max)
        * 1.15;
    let (unit, fig) = if kpps {
        ("Kp/s", "Fig. 3/5b")
    } else {
        ("Mb/s", "Fig. 2/5a")
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(
            if scenario.starts_with("rx-") {
                format!("Received {unit} per VM, scenario {scenario} (receive: no paper figure)")
            } else {
                format!("Delivered {unit} per VM, scenario {scenario} (cf. paper {fig})")
            },
            ("sans-serif", 20),
        )
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..runs.len() as f64, 0f64..ymax)
        .map_err(e)?;
    let names: Vec<String> = runs.iter().map(|r| r.policy.clone()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(runs.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - i as f64 - 0.5).abs() < 0.01 {
                names.get(i).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc(unit)
        .draw()
        .map_err(e)?;
    for (vm, &c) in VM_COLORS.iter().enumerate() {
        chart
            .draw_series(runs.iter().enumerate().map(|(i, r)| {
                let x0 = i as f64 + 0.1 + vm as f64 * 0.27;
                Rectangle::new([(x0, 0.0), (x0 + 0.25, val(&r.vms[vm]))], c.filled())
            }))
            .map_err(e)?
            .label(format!("VM{}", vm + 1))
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], c.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(e)?;
    Ok(())
}

fn timeline<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, run: &RunReport) -> R<()> {
    // 50 ms averages of the 10 ms bins.
    let k = (50.0 / run.timeline_bin_ms).round().max(1.0) as usize;
    let series: Vec<Vec<(f64, f64)>> = run
        .timeline_mbps
        .iter()
        .map(|bins| {
            bins.chunks(k)
                .enumerate()
                .map(|(i, c)| {
                    (
                        (i * k) as f64 * run.timeline_bin_ms / 1e3,
                        c.iter().sum::<f64>() / c.len() as f64,
                    )
                })
                .collect()
        })
        .collect();
    let ymax = series.iter().flatten().map(|p| p.1).fold(1.0f64, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "Throughput over time, scenario {}, {} (period {} ms, 50 ms averages)",
                run.scenario,
                run.policy,
                run.period_ms.unwrap_or(0.0)
            ),
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..run.duration_s, 0f64..ymax)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("s")
        .y_desc("Mb/s")
        .draw()
        .map_err(e)?;
    for (vm, s) in series.into_iter().enumerate() {
        let c = VM_COLORS[vm];
        chart
            .draw_series(LineSeries::new(s, c.stroke_width(2)))
            .map_err(e)?
            .label(format!("VM{}", vm + 1))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], c.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(e)?;
    Ok(())
}

fn cdfs<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    runs: &[&RunReport],
    scenario: &str,
) -> R<()> {
    let (title, body) = root.split_vertically(35);
    title
        .titled(
            &if scenario.starts_with("rx-") {
                format!("One-way delay CDF per VM and policy, scenario {scenario} (sender → guest)")
            } else {
                format!(
                    "One-way delay CDF per VM and policy, scenario {scenario} (cf. paper Fig. 6)"
                )
            },
            ("sans-serif", 18),
        )
        .map_err(e)?;
    let panels = body.split_evenly((1, 3));
    for (vm, panel) in panels.iter().enumerate() {
        let xmax = runs
            .iter()
            .flat_map(|r| r.vms[vm].delay_cdf_us.iter().map(|p| p.1))
            .fold(10.0f64, f64::max)
            * 1.5;
        let mut chart = ChartBuilder::on(panel)
            .caption(format!("VM{}", vm + 1), ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(35)
            .y_label_area_size(45)
            .build_cartesian_2d((1f64..xmax).log_scale(), 0f64..1.0)
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_desc("delay µs (log)")
            .y_desc("fraction")
            .draw()
            .map_err(e)?;
        for r in runs {
            let pi = Policy::ALL
                .iter()
                .position(|p| p.name() == r.policy)
                .unwrap_or(0);
            let c = POLICY_COLORS[pi];
            let v = &r.vms[vm];
            let pts: Vec<(f64, f64)> = v
                .delay_cdf_us
                .iter()
                .map(|&(q, us)| (us.max(1.0), q))
                .collect();
            chart
                .draw_series(LineSeries::new(pts, c.stroke_width(2)))
                .map_err(e)?
                .label(r.policy.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 15, y)], c.stroke_width(2))
                });
        }
        if vm == 0 {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .position(SeriesLabelPosition::UpperLeft)
                .draw()
                .map_err(e)?;
        }
    }
    Ok(())
}

fn sweep<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, r: &Report) -> R<()> {
    let pts = &r.period_sweep;
    let (title, body) = root.split_vertically(35);
    title
        .titled(
            "Readjustment-period sweep, dba-drop, scenario 1500 (cf. paper Fig. 7/8)",
            ("sans-serif", 18),
        )
        .map_err(e)?;
    let panels = body.split_evenly((1, 3));
    let xmin = pts.iter().map(|p| p.period_ms).fold(f64::MAX, f64::min) * 0.7;
    let xmax = pts.iter().map(|p| p.period_ms).fold(1.0, f64::max) * 1.4;
    type Metric = Box<dyn Fn(&crate::report::SweepPoint) -> f64>;
    let metrics: [(&str, Metric); 3] = [
        ("allocator CPU µs/s", Box::new(|p| p.allocator_cpu_us_per_s)),
        ("backend CPU ms/s", Box::new(|p| p.backend_cpu_ms_per_s)),
        (
            "bytes copied MB/s",
            Box::new(|p| p.ring_mbytes_copied_per_s),
        ),
    ];
    for ((name, f), panel) in metrics.iter().zip(panels.iter()) {
        let ymax = pts.iter().map(f).fold(1e-3, f64::max) * 1.2;
        let mut chart = ChartBuilder::on(panel)
            .caption(*name, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(35)
            .y_label_area_size(55)
            .build_cartesian_2d((xmin..xmax).log_scale(), 0f64..ymax)
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_desc("period ms (log)")
            .draw()
            .map_err(e)?;
        let series: Vec<(f64, f64)> = pts.iter().map(|p| (p.period_ms, f(p))).collect();
        chart
            .draw_series(LineSeries::new(
                series.clone(),
                VM_COLORS[0].stroke_width(2),
            ))
            .map_err(e)?;
        chart
            .draw_series(
                series
                    .into_iter()
                    .map(|p| Circle::new(p, 4, VM_COLORS[0].filled())),
            )
            .map_err(e)?;
    }
    Ok(())
}
