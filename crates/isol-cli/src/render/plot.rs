//! `isol noise --plot`: per CPU, the histogram of every loop difference (log axes) and the
//! gaps over time coloured by cause. SVG or PNG, chosen by the file's extension.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use isol::noise::{attribute::UNEXPLAINED, CpuNoise, Report};

use crate::Failure;

/// Most gaps drawn per CPU (the longest ones) so that a plot stays readable.
const MAX_POINTS: usize = 20_000;
/// TrueType fonts looked for, for the text in plots.
const FONTS: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

enum Format {
    Svg,
    Png,
}

fn format_of(p: &Path) -> Option<Format> {
    match p.extension()?.to_str()?.to_ascii_lowercase().as_str() {
        "svg" => Some(Format::Svg),
        "png" => Some(Format::Png),
        _ => None,
    }
}

/// Refuse a plot file isol cannot write before measuring for minutes.
pub fn check_path(p: &Path) -> Result<(), Failure> {
    if format_of(p).is_none() {
        return Err(Failure::usage(format!(
            "--plot {}: give a file ending in .svg or .png",
            p.display()
        )));
    }
    load_font()?;
    // Create it now (never through a link), so that a path isol cannot write is known
    // before the measurement rather than after it.
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(libc::O_NOFOLLOW)
        .open(p)
        .map_err(|e| Failure::usage(format!("--plot {}: cannot write it: {e}", p.display())))?;
    Ok(())
}

fn load_font() -> Result<(), Failure> {
    static FONT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    FONT.get_or_init(|| {
        let bytes = FONTS
            .iter()
            .find_map(|f| std::fs::read(f).ok())
            .ok_or_else(|| {
                format!(
                    "--plot needs a TrueType font for its text and found none of {}; install \
                     one (Debian: apt-get install fonts-dejavu-core)",
                    FONTS.join(", ")
                )
            })?;
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| "the font file is not a valid TrueType font".to_string())
    })
    .clone()
    .map_err(Failure::usage)
}

pub fn draw(r: &Report, p: &Path) -> Result<(), Failure> {
    load_font()?;
    let size = (1100, 420 * 2 * r.cpus.len().max(1) as u32);
    let res = match format_of(p) {
        Some(Format::Svg) => draw_on(SVGBackend::new(p, size).into_drawing_area(), r),
        Some(Format::Png) => draw_on(BitMapBackend::new(p, size).into_drawing_area(), r),
        None => return check_path(p),
    };
    res.map_err(|e| Failure::runtime(format!("--plot {}: {e}", p.display())))
}

fn draw_on<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, r: &Report) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(e)?;
    let panels = root.split_evenly((2 * r.cpus.len().max(1), 1));
    for (i, c) in r.cpus.iter().enumerate() {
        histogram(&panels[2 * i], c).map_err(e)?;
        timeline(&panels[2 * i + 1], c, r.attributed).map_err(e)?;
    }
    root.present().map_err(e)?;
    Ok(())
}

type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

fn histogram<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, c: &CpuNoise) -> DrawResult<DB> {
    let max_ns = c.histogram.last().map(|h| h[0]).unwrap_or(1).max(10) as f64 * 1.5;
    let max_count = c.histogram.iter().map(|h| h[1]).max().unwrap_or(1).max(10) as f64 * 2.0;
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!(
                "CPU {}: every loop difference ({} samples, loop {:.1} ns)",
                c.cpu, c.iterations, c.loop_ns
            ),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((1f64..max_ns).log_scale(), (0.5f64..max_count).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("difference between two TSC reads")
        .y_desc("count")
        .x_label_formatter(&|v| ns_label(*v))
        .y_label_formatter(&|v| count_label(*v))
        .draw()?;
    chart.draw_series(
        c.histogram
            .iter()
            .map(|h| Circle::new((h[0].max(1) as f64, h[1] as f64), 2, BLUE.filled())),
    )?;
    let t = c.threshold_ns as f64;
    chart
        .draw_series(LineSeries::new(
            [(t, 0.5), (t, max_count)],
            RED.stroke_width(1),
        ))?
        .label(format!("threshold {} ns", c.threshold_ns))
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], RED));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

fn timeline<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    c: &CpuNoise,
    attributed: bool,
) -> DrawResult<DB> {
    let mut gaps: Vec<_> = c.gap_list.iter().collect();
    let shown = gaps.len().min(MAX_POINTS);
    if gaps.len() > MAX_POINTS {
        gaps.sort_by_key(|g| std::cmp::Reverse(g.ns));
        gaps.truncate(MAX_POINTS);
    }
    let secs = (c.duration_ns as f64 / 1e9).max(1e-3);
    let max_ns = gaps
        .iter()
        .map(|g| g.ns)
        .max()
        .unwrap_or(1)
        .max(c.threshold_ns * 2) as f64
        * 1.5;
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!(
                "CPU {}: gaps >= {} ns over time ({} of {} drawn)",
                c.cpu, c.threshold_ns, shown, c.gaps
            ),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(
            0f64..secs,
            ((c.threshold_ns as f64 * 0.8)..max_ns).log_scale(),
        )?;
    chart
        .configure_mesh()
        .x_desc("time (s)")
        .y_desc("gap")
        .y_label_formatter(&|v| ns_label(*v))
        .draw()?;
    // Causes by number of gaps, most first, so colours are stable for the big ones.
    let mut labels: Vec<(String, usize)> = Vec::new();
    for g in &gaps {
        let l = label(g.cause.as_deref(), attributed);
        match labels.iter_mut().find(|(x, _)| *x == l) {
            Some(e) => e.1 += 1,
            None => labels.push((l, 1)),
        }
    }
    labels.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    for (i, (name, n)) in labels.iter().enumerate() {
        let color = if name == UNEXPLAINED {
            RGBColor(120, 120, 120)
        } else {
            let (r, g, b) = Palette99::pick(i).to_rgba().rgb();
            RGBColor(r, g, b)
        };
        let pts = gaps
            .iter()
            .filter(|g| label(g.cause.as_deref(), attributed) == *name)
            .map(|g| Circle::new((g.at_ns as f64 / 1e9, g.ns as f64), 2, color.filled()));
        chart
            .draw_series(pts)?
            .label(format!("{name} ({n})"))
            .legend(move |(x, y)| Circle::new((x + 8, y), 4, color.filled()));
    }
    if !labels.is_empty() {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()?;
    }
    Ok(())
}

/// Axis labels in ns, us, ms.
fn ns_label(v: f64) -> String {
    let (x, unit) = match v {
        v if v >= 1e6 => (v / 1e6, "ms"),
        v if v >= 1e3 => (v / 1e3, "us"),
        v => (v, "ns"),
    };
    format!("{}{unit}", trim(x))
}

/// Axis labels for counts: 1, 10, 1k, 10M.
fn count_label(v: f64) -> String {
    match v {
        v if v >= 1e9 => format!("{}G", trim(v / 1e9)),
        v if v >= 1e6 => format!("{}M", trim(v / 1e6)),
        v if v >= 1e3 => format!("{}k", trim(v / 1e3)),
        v => trim(v),
    }
}

fn trim(x: f64) -> String {
    let s = format!("{x:.1}");
    s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
}

fn label(cause: Option<&str>, attributed: bool) -> String {
    match (cause, attributed) {
        (Some(c), _) => shorten(c),
        (None, true) => UNEXPLAINED.to_string(),
        (None, false) => "gap (not attributed)".to_string(),
    }
}

fn shorten(s: &str) -> String {
    if s.chars().count() > 48 {
        let mut t: String = s.chars().take(47).collect();
        t.push('…');
        t
    } else {
        s.to_string()
    }
}
