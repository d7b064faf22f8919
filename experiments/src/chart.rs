//! Line charts, drawn with plotters as PNG and SVG from one description.
//!
//! Text is drawn with DejaVu Sans, shipped in `experiments/assets/` and registered with
//! plotters' `ab_glyph` font support, so no system font library is needed. Log axes are drawn
//! as linear axes over `log10` of the values with tick labels turned back into values.

use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::Error;

static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
static REGISTER: Once = Once::new();

/// Chart size in pixels.
pub const SIZE: (u32, u32) = (960, 600);

/// One axis.
#[derive(Debug, Clone, Default)]
pub struct Axis {
    pub label: String,
    pub log: bool,
    /// Fixed range; otherwise from the data (linear axes start at 0 for non-negative data).
    pub range: Option<(f64, f64)>,
}

impl Axis {
    pub fn linear(label: &str) -> Self {
        Axis {
            label: label.into(),
            ..Axis::default()
        }
    }
    pub fn log(label: &str) -> Self {
        Axis {
            label: label.into(),
            log: true,
            range: None,
        }
    }
    pub fn range(mut self, lo: f64, hi: f64) -> Self {
        self.range = Some((lo, hi));
        self
    }
}

/// How a series is stroked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stroke {
    Solid,
    Dashed,
    Dotted,
}

/// One line.
#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    pub stroke: Stroke,
    /// Palette index; `None` draws black (limits and baselines).
    pub color: Option<usize>,
    pub markers: bool,
    /// Hold each value until the next point (a step function).
    pub step: bool,
    pub width: u32,
}

impl Series {
    pub fn line(label: impl Into<String>, color: usize, points: Vec<(f64, f64)>) -> Self {
        Series {
            label: label.into(),
            points,
            stroke: Stroke::Solid,
            color: Some(color),
            markers: true,
            step: false,
            width: 2,
        }
    }
    /// A black reference line: a physical limit or a baseline.
    pub fn reference(label: impl Into<String>, stroke: Stroke, points: Vec<(f64, f64)>) -> Self {
        Series {
            label: label.into(),
            points,
            stroke,
            color: None,
            markers: false,
            step: false,
            width: 2,
        }
    }
}

/// Where the legend goes.
#[derive(Debug, Clone, Copy)]
pub enum Legend {
    UpperRight,
    UpperLeft,
    LowerLeft,
    LowerRight,
}

/// A chart to draw.
#[derive(Debug, Clone)]
pub struct Chart {
    /// File name without extension.
    pub file: String,
    pub title: String,
    pub x: Axis,
    pub y: Axis,
    pub series: Vec<Series>,
    /// Shaded x ranges, with a legend label.
    pub bands: Vec<(f64, f64, String)>,
    /// Vertical marker lines, with a legend label.
    pub vlines: Vec<(f64, String)>,
    pub legend: Legend,
    /// Empty space above the data on a linear y axis without a fixed range, as a share of the
    /// data's span, to keep the legend off the lines.
    pub headroom: f64,
    /// A sentence under the chart in the report.
    pub caption: String,
}

const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// The palette colour `i` (wrapping).
pub fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// Draws `chart` into `dir` as `<file>.png` and `<file>.svg`.
pub fn render(chart: &Chart, dir: &Path) -> Result<(), Error> {
    REGISTER.call_once(|| {
        // The font is compiled in and known good; a failure would show as missing text.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
    let png = dir.join(format!("{}.png", chart.file));
    let svg = dir.join(format!("{}.svg", chart.file));
    {
        let root = BitMapBackend::new(&png, SIZE).into_drawing_area();
        draw(root, chart).map_err(|e| Error::Plot(format!("{}: {e}", png.display())))?;
    }
    {
        let root = SVGBackend::new(&svg, SIZE).into_drawing_area();
        draw(root, chart).map_err(|e| Error::Plot(format!("{}: {e}", svg.display())))?;
    }
    Ok(())
}

fn tx(axis: &Axis, v: f64) -> Option<f64> {
    if axis.log {
        (v > 0.0 && v.is_finite()).then(|| v.log10())
    } else {
        v.is_finite().then_some(v)
    }
}

/// A number with up to three significant digits, without trailing zeros.
pub fn fmt_num(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if !(1e-3..1e6).contains(&a) {
        let s = format!("{v:.1e}");
        return s.replace(".0e", "e");
    }
    let digits = (2 - a.log10().floor() as i32).clamp(0, 6) as usize;
    let s = format!("{v:.digits$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

fn bounds(axis: &Axis, values: impl Iterator<Item = f64>, headroom: f64) -> (f64, f64) {
    if let Some((lo, hi)) = axis.range {
        let lo = tx(axis, lo).unwrap_or(0.0);
        let hi = tx(axis, hi).unwrap_or(1.0);
        return (lo, hi);
    }
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter_map(|v| tx(axis, v)) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if axis.log {
        // Whole or half decades around the data.
        return (
            (lo * 2.0).floor() / 2.0,
            ((hi * 2.0).ceil() / 2.0).max(lo + 0.5),
        );
    }
    if lo >= 0.0 {
        lo = 0.0;
    }
    let pad = if hi > lo {
        (hi - lo) * (0.05 + headroom)
    } else {
        1.0
    };
    (lo, hi + pad)
}

fn stepped(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(points.len() * 2);
    for (i, &(x, y)) in points.iter().enumerate() {
        if i > 0 {
            out.push((x, points[i - 1].1));
        }
        out.push((x, y));
    }
    out
}

fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, chart: &Chart) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| format!("{e:?}");
    root.fill(&WHITE).map_err(e)?;
    let xs = chart
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .chain(chart.bands.iter().flat_map(|b| [b.0, b.1]))
        .chain(chart.vlines.iter().map(|v| v.0));
    let (x0, x1) = bounds(&chart.x, xs, 0.0);
    let ys = chart
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1));
    let (y0, y1) = bounds(&chart.y, ys, chart.headroom);
    let xlog = chart.x.log;
    let ylog = chart.y.log;
    // On a log axis one label per decade, at the powers of ten.
    let labels = |log: bool, lo: f64, hi: f64| {
        if log {
            ((hi - lo).round() as usize + 1).max(2)
        } else {
            10
        }
    };
    let (nx, ny) = (labels(xlog, x0, x1), labels(ylog, y0, y1));
    let light = if xlog || ylog {
        RGBColor(255, 255, 255)
    } else {
        RGBColor(235, 235, 235)
    };
    let mut c = ChartBuilder::on(&root)
        .caption(&chart.title, ("sans-serif", 24))
        .margin(14)
        .x_label_area_size(52)
        .y_label_area_size(78)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(e)?;
    let fmt_x = move |v: &f64| fmt_num(if xlog { 10f64.powf(*v) } else { *v });
    let fmt_y = move |v: &f64| fmt_num(if ylog { 10f64.powf(*v) } else { *v });
    c.configure_mesh()
        .x_desc(&chart.x.label)
        .y_desc(&chart.y.label)
        .x_label_formatter(&fmt_x)
        .y_label_formatter(&fmt_y)
        .x_labels(nx)
        .y_labels(ny)
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 17))
        .light_line_style(light)
        .draw()
        .map_err(e)?;
    for (i, (a, b, label)) in chart.bands.iter().enumerate() {
        let (Some(a), Some(b)) = (tx(&chart.x, *a), tx(&chart.x, *b)) else {
            continue;
        };
        let fill = RGBColor(255, 200, 120).mix(0.25 + 0.1 * i as f64);
        c.draw_series(std::iter::once(Rectangle::new(
            [(a, y0), (b, y1)],
            fill.filled(),
        )))
        .map_err(e)?
        .label(label.as_str())
        .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 20, y + 6)], fill.filled()));
    }
    for (x, label) in &chart.vlines {
        let Some(x) = tx(&chart.x, *x) else { continue };
        let style = ShapeStyle::from(RGBColor(90, 90, 90)).stroke_width(1);
        c.draw_series(DashedLineSeries::new(vec![(x, y0), (x, y1)], 6, 4, style))
            .map_err(e)?
            .label(label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    for s in &chart.series {
        let raw = if s.step {
            stepped(&s.points)
        } else {
            s.points.clone()
        };
        let pts: Vec<(f64, f64)> = raw
            .iter()
            .filter_map(|&(x, y)| Some((tx(&chart.x, x)?, tx(&chart.y, y)?)))
            .collect();
        if pts.is_empty() {
            continue;
        }
        let col = s.color.map_or(BLACK, color);
        let style = ShapeStyle::from(col).stroke_width(s.width);
        let legend_style = style;
        let anno = match s.stroke {
            Stroke::Solid => c
                .draw_series(LineSeries::new(pts.clone(), style))
                .map_err(e)?,
            Stroke::Dashed => c
                .draw_series(DashedLineSeries::new(pts.clone(), 10, 6, style))
                .map_err(e)?,
            Stroke::Dotted => c
                .draw_series(DashedLineSeries::new(pts.clone(), 3, 5, style))
                .map_err(e)?,
        };
        let stroke = s.stroke;
        anno.label(s.label.as_str()).legend(move |(x, y)| {
            let pts: Vec<(i32, i32)> = match stroke {
                Stroke::Solid => vec![(x, y), (x + 20, y)],
                Stroke::Dashed => vec![(x, y), (x + 8, y)],
                Stroke::Dotted => vec![(x, y), (x + 3, y)],
            };
            PathElement::new(pts, legend_style)
        });
        if s.markers && !s.step {
            c.draw_series(
                pts.iter()
                    .map(|&p| Circle::new(p, 3, ShapeStyle::from(col).filled())),
            )
            .map_err(e)?;
        }
    }
    let pos = match chart.legend {
        Legend::UpperRight => SeriesLabelPosition::UpperRight,
        Legend::UpperLeft => SeriesLabelPosition::UpperLeft,
        Legend::LowerLeft => SeriesLabelPosition::LowerLeft,
        Legend::LowerRight => SeriesLabelPosition::LowerRight,
    };
    c.configure_series_labels()
        .position(pos)
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(160, 160, 160))
        .draw()
        .map_err(e)?;
    root.present().map_err(e)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_print_short() {
        assert_eq!(fmt_num(0.0), "0");
        assert_eq!(fmt_num(0.05), "0.05");
        assert_eq!(fmt_num(1e-5), "1e-5");
        assert_eq!(fmt_num(3.1622776e-5), "3.2e-5");
        assert_eq!(fmt_num(250000.0), "250000");
        assert_eq!(fmt_num(12.5), "12.5");
        assert_eq!(fmt_num(1000.0), "1000");
    }

    #[test]
    fn renders_png_and_svg() {
        let dir = std::env::temp_dir().join(format!("livecam-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let chart = Chart {
            file: "t".into(),
            title: "Test".into(),
            x: Axis::log("bit error rate"),
            y: Axis::linear("goodput (KB/s)"),
            series: vec![
                Series::line("a", 0, vec![(1e-6, 1.0), (1e-4, 2.0)]),
                Series::reference("limit", Stroke::Dashed, vec![(1e-6, 3.0), (1e-4, 3.0)]),
            ],
            bands: vec![(2e-6, 5e-6, "bad".into())],
            vlines: vec![(3e-5, "fault".into())],
            legend: Legend::UpperRight,
            headroom: 0.0,
            caption: String::new(),
        };
        render(&chart, &dir).unwrap();
        let png = std::fs::read(dir.join("t.png")).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        let svg = std::fs::read_to_string(dir.join("t.svg")).unwrap();
        assert!(svg.contains("goodput (KB/s)"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
