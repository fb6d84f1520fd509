//! Drawing curves into SVG and PNG files with plotters.
//!
//! Two panels share the x axis: the loss on top, the gradient below (left out when no
//! curve has one). Each panel has a caption, labelled axes and a legend placed where
//! the curves leave room.
//!
//! Text is laid out (and, in PNGs, rasterised) with the font committed under
//! `assets/fonts/` and registered through plotters' `ab_glyph` feature, so output
//! never depends on the fonts installed on the machine.

use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use crate::plot::{Curve, Range};
use crate::render::Failure;

/// Image size in pixels.
pub(crate) const SIZE: (u32, u32) = (960, 720);

/// The series colours, in order (colour-blind-friendly, after Tableau's palette).
pub(crate) const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// The font: Roboto Regular cut down to ASCII and a few symbols (Apache-2.0; see
/// `assets/fonts/README.md`).
static FONT: &[u8] = include_bytes!("../../assets/fonts/Roboto-Regular-subset.ttf");

/// Registers the font once; plotters draws no text without it.
fn register() -> Result<(), Failure> {
    static DONE: OnceLock<bool> = OnceLock::new();
    let ok = *DONE.get_or_init(|| register_font("sans-serif", FontStyle::Normal, FONT).is_ok());
    if ok {
        Ok(())
    } else {
        Err(Failure::plain("error: the built-in font could not be loaded (a bug in this build)".to_string()))
    }
}

/// An image format, from the output file's extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// Scalable vector graphics; text stays text.
    Svg,
    /// A bitmap.
    Png,
}

impl Format {
    /// The format named by `path`'s extension.
    pub fn of(path: &Path) -> Result<Format, Failure> {
        let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("svg") => Ok(Format::Svg),
            Some("png") => Ok(Format::Png),
            _ => Err(Failure::plain(format!(
                "error: cannot tell the image format of `{}`\nhelp: name a `.svg` or a `.png` file",
                path.display()
            ))),
        }
    }
}

/// Draws `curves` and writes the image to `path`.
pub(crate) fn write(curves: &[Curve], range: &Range, path: &Path, format: Format) -> Result<(), Failure> {
    register()?;
    let res = match format {
        Format::Svg => draw(&SVGBackend::new(path, SIZE).into_drawing_area(), curves, range),
        Format::Png => draw(&BitMapBackend::new(path, SIZE).into_drawing_area(), curves, range),
    };
    res.map_err(|e| Failure::plain(format!("error: cannot write `{}`: {e}", path.display())))
}

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, curves: &[Curve], range: &Range) -> Result<(), String> {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let x = range.label();
    let losses: Vec<Series<'_>> = curves
        .iter()
        .enumerate()
        .map(|(i, c)| Series { label: &c.label, colour: PALETTE[i % PALETTE.len()], xs: &c.xs, ys: &c.loss })
        .collect();
    let grads: Vec<Series<'_>> = curves
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let ys = c.grad.as_deref()?;
            Some(Series { label: &c.label, colour: PALETTE[i % PALETTE.len()], xs: &c.xs, ys })
        })
        .filter(|s| s.ys.iter().any(|y| y.is_finite()))
        .collect();
    let (lo, hi) = (range.lo, range.hi);
    if grads.is_empty() {
        panel(root, &format!("loss L over {x}"), &x, "L", (lo, hi), &losses)?;
    } else {
        let (top, bottom) = root.split_vertically(SIZE.1 / 2);
        panel(&top, &format!("loss L over {x}"), &x, "L", (lo, hi), &losses)?;
        panel(
            &bottom,
            &format!("gradient \u{2202}L/\u{2202}{x}"),
            &x,
            &format!("\u{2202}L/\u{2202}{x}"),
            (lo, hi),
            &grads,
        )?;
    }
    root.present().map_err(|e| e.to_string())
}

/// One curve of one panel.
struct Series<'a> {
    label: &'a str,
    colour: RGBColor,
    xs: &'a [f64],
    ys: &'a [f64],
}

/// The y range of the finite values, padded; a flat curve gets a unit-high band.
pub(crate) fn y_range<'a>(ys: impl Iterator<Item = &'a f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for &y in ys.filter(|y| y.is_finite()) {
        lo = lo.min(y);
        hi = hi.max(y);
    }
    if lo > hi {
        return (-1.0, 1.0);
    }
    if hi - lo <= f64::EPSILON * hi.abs().max(lo.abs()).max(1.0) {
        let pad = (hi.abs() * 0.1).max(1.0);
        return (lo - pad, hi + pad);
    }
    let pad = (hi - lo) * 0.06;
    (lo - pad, hi + pad)
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    (lo, hi): (f64, f64),
    series: &[Series<'_>],
) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let (ylo, yhi) = y_range(series.iter().flat_map(|s| s.ys.iter()));
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 22))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d(lo..hi, ylo..yhi)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .max_light_lines(2)
        .light_line_style(RGBColor(240, 240, 240))
        .bold_line_style(RGBColor(215, 215, 215))
        .draw()
        .map_err(err)?;
    for (n, s) in series.iter().enumerate() {
        // The first curve is drawn wider, so a curve hidden under a later one still shows.
        let width = if n == 0 && series.len() > 1 { 3 } else { 2 };
        let style = s.colour.stroke_width(width);
        let mut first = true;
        for segment in segments(s.xs, s.ys) {
            let anno = chart.draw_series(LineSeries::new(segment, style)).map_err(err)?;
            if first {
                let colour = s.colour;
                anno.label(s.label)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], colour.stroke_width(2)));
                first = false;
            }
        }
    }
    chart
        .configure_series_labels()
        .position(legend_corner(series, (lo, hi), (ylo, yhi)))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.35))
        .label_font(("sans-serif", 15))
        .draw()
        .map_err(err)?;
    Ok(())
}

/// Runs of finite points, so a curve is broken where the loss is undefined.
fn segments<'a>(xs: &'a [f64], ys: &'a [f64]) -> impl Iterator<Item = Vec<(f64, f64)>> + 'a {
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < ys.len() && !ys[i].is_finite() {
            i += 1;
        }
        let mut run = Vec::new();
        while i < ys.len() && ys[i].is_finite() {
            run.push((xs[i], ys[i]));
            i += 1;
        }
        (!run.is_empty()).then_some(run)
    })
}

/// The corner whose neighbourhood holds the fewest curve points.
fn legend_corner(series: &[Series<'_>], (lo, hi): (f64, f64), (ylo, yhi): (f64, f64)) -> SeriesLabelPosition {
    use SeriesLabelPosition::{LowerLeft, LowerMiddle, LowerRight, UpperLeft, UpperMiddle, UpperRight};
    // Columns in thirds of the width, rows the top and bottom 40% of the height; in order
    // of preference: UpperLeft, UpperRight, UpperMiddle, LowerRight, LowerLeft, LowerMiddle.
    const CORNERS: [(usize, usize); 6] = [(0, 0), (2, 0), (1, 0), (2, 1), (0, 1), (1, 1)];
    let mut counts = [0usize; 6];
    for s in series {
        for (&x, &y) in s.xs.iter().zip(s.ys).filter(|(_, y)| y.is_finite()) {
            let fx = (x - lo) / (hi - lo);
            let fy = (yhi - y) / (yhi - ylo);
            let col = ((fx * 3.0) as usize).min(2);
            let row = match fy {
                f if f < 0.4 => 0,
                f if f > 0.6 => 1,
                _ => continue,
            };
            if let Some(n) = CORNERS.iter().position(|&c| c == (col, row)) {
                counts[n] += 1;
            }
        }
    }
    match (0..CORNERS.len()).min_by_key(|&n| (counts[n], n)) {
        Some(1) => UpperRight,
        Some(2) => UpperMiddle,
        Some(3) => LowerRight,
        Some(4) => LowerLeft,
        Some(5) => LowerMiddle,
        _ => UpperLeft,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_break_at_gaps_and_ranges_pad() {
        let xs = [0.0, 1.0, 2.0, 3.0, 4.0];
        let ys = [f64::NAN, 1.0, 2.0, f64::INFINITY, 4.0];
        let runs: Vec<_> = segments(&xs, &ys).collect();
        assert_eq!(runs, vec![vec![(1.0, 1.0), (2.0, 2.0)], vec![(4.0, 4.0)]]);
        assert_eq!(y_range([3.0, 3.0].iter()), (2.0, 4.0));
        assert_eq!(y_range([f64::NAN].iter()), (-1.0, 1.0));
        let (lo, hi) = y_range([0.0, 10.0].iter());
        assert!(lo < 0.0 && hi > 10.0);
    }
}
