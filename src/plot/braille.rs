//! Curves drawn in the terminal with Unicode braille: each character cell holds 2×4 dots.
//!
//! Pure text in, text out; colour is ANSI escapes added only when asked for.

use std::fmt::Write as _;

use crate::plot::chart::y_range;

/// ANSI colours of the series, matching the order of the file palette.
const ANSI: [&str; 6] = ["34", "31", "32", "35", "33", "36"];

/// One chart: a title and its curves `(label, xs, ys)`.
pub(crate) struct Panel<'a> {
    /// Shown above the chart.
    pub title: String,
    /// The curves.
    pub series: Vec<(&'a str, &'a [f64], &'a [f64])>,
}

/// The dot bit of braille cell position (column 0–1, row 0–3), per Unicode's numbering.
fn dot_bit(dx: usize, dy: usize) -> u8 {
    const BITS: [[u8; 4]; 2] = [[0x01, 0x02, 0x04, 0x40], [0x08, 0x10, 0x20, 0x80]];
    BITS[dx][dy]
}

/// A short number for an axis label.
pub(crate) fn short(x: f64) -> String {
    let a = x.abs();
    if a == 0.0 {
        return "0".to_string();
    }
    if !(1e-3..1e5).contains(&a) {
        return format!("{x:.2e}");
    }
    let s = format!("{x:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

/// Draws `panel` over x in `[lo, hi]` into `width`×`height` cells, plus axis labels and a legend.
pub(crate) fn draw(
    panel: &Panel<'_>,
    x_label: &str,
    (lo, hi): (f64, f64),
    size: (usize, usize),
    colour: bool,
) -> String {
    let (width, height) = (size.0.max(8), size.1.max(2));
    let (px_w, px_h) = (width * 2, height * 4);
    let (ylo, yhi) = y_range(panel.series.iter().flat_map(|(_, _, ys)| ys.iter()));
    let mut dots = vec![0u8; width * height];
    let mut owner: Vec<Option<usize>> = vec![None; width * height];
    let mut axis = vec![0u8; width * height];
    let to_px = |x: f64, y: f64| -> (i64, i64) {
        let fx = (x - lo) / (hi - lo) * (px_w - 1) as f64;
        let fy = (yhi - y) / (yhi - ylo) * (px_h - 1) as f64;
        (fx.round() as i64, fy.round() as i64)
    };
    let set = |layer: &mut Vec<u8>, owner: Option<(&mut Vec<Option<usize>>, usize)>, px: i64, py: i64| {
        if px < 0 || py < 0 || px >= px_w as i64 || py >= px_h as i64 {
            return;
        }
        let (px, py) = (px as usize, py as usize);
        let cell = (py / 4) * width + px / 2;
        layer[cell] |= dot_bit(px % 2, py % 4);
        if let Some((owners, n)) = owner {
            owners[cell] = Some(n);
        }
    };
    // The line y = 0, dotted, when it is in view.
    if ylo < 0.0 && yhi > 0.0 {
        let (_, py) = to_px(lo, 0.0);
        for px in (0..px_w as i64).step_by(2) {
            set(&mut axis, None, px, py);
        }
    }
    for (n, (_, xs, ys)) in panel.series.iter().enumerate() {
        let mut prev: Option<(i64, i64)> = None;
        for (&x, &y) in xs.iter().zip(ys.iter()) {
            if !y.is_finite() {
                prev = None;
                continue;
            }
            let p = to_px(x, y);
            let from = prev.unwrap_or(p);
            // Bresenham from the previous point.
            let (mut x0, mut y0) = from;
            let (dx, dy) = ((p.0 - x0).abs(), -(p.1 - y0).abs());
            let (sx, sy) = (if x0 < p.0 { 1 } else { -1 }, if y0 < p.1 { 1 } else { -1 });
            let mut e = dx + dy;
            loop {
                set(&mut dots, Some((&mut owner, n)), x0, y0);
                if (x0, y0) == p {
                    break;
                }
                let e2 = 2 * e;
                if e2 >= dy {
                    e += dy;
                    x0 += sx;
                }
                if e2 <= dx {
                    e += dx;
                    y0 += sy;
                }
            }
            prev = Some(p);
        }
    }
    let paint = |code: &str, text: &str| if colour { format!("\x1b[{code}m{text}\x1b[0m") } else { text.to_string() };
    let labels = [short(yhi), short((yhi + ylo) / 2.0), short(ylo)];
    // At least the width of `-0.1234`, so stacked panels line up.
    let label_w = labels.iter().map(|l| l.chars().count()).max().unwrap_or(1).max(7);
    let mut out = String::new();
    let _ = writeln!(out, "{}", paint("1", &panel.title));
    for row in 0..height {
        let label = match row {
            0 => labels[0].as_str(),
            r if r == height - 1 => labels[2].as_str(),
            r if r == (height - 1) / 2 && height > 4 => labels[1].as_str(),
            _ => "",
        };
        let tick = if label.is_empty() { '│' } else { '┤' };
        let _ = write!(out, "{label:>label_w$} {tick}");
        for col in 0..width {
            let cell = row * width + col;
            let bits = dots[cell] | axis[cell];
            let ch = char::from_u32(0x2800 + u32::from(bits)).unwrap_or(' ');
            match owner[cell] {
                Some(n) if dots[cell] != 0 => out.push_str(&paint(ANSI[n % ANSI.len()], &ch.to_string())),
                _ if bits != 0 => out.push_str(&paint("2", &ch.to_string())),
                _ => out.push(ch),
            }
        }
        out.push('\n');
    }
    let _ = writeln!(out, "{:>label_w$} └{}", "", "─".repeat(width));
    let (left, right) = (short(lo), short(hi));
    let gap = width.saturating_sub(left.chars().count() + right.chars().count());
    let _ = writeln!(out, "{:>label_w$}  {left}{}{right}  {x_label}", "", " ".repeat(gap));
    if panel.series.len() > 1 {
        for (n, (label, _, _)) in panel.series.iter().enumerate() {
            let _ = writeln!(out, "{:>label_w$}  {} {label}", "", paint(ANSI[n % ANSI.len()], "━━"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parabola_fills_its_corners_and_bottom_middle() {
        let xs: Vec<f64> = (0..=40).map(|i| -2.0 + 0.1 * i as f64).collect();
        let ys: Vec<f64> = xs.iter().map(|x| x * x + 1.0).collect();
        let panel = Panel { title: "loss".into(), series: vec![("x^2", &xs, &ys)] };
        let text = draw(&panel, "p", (-2.0, 2.0), (20, 5), false);
        let rows: Vec<&str> = text.lines().collect();
        assert_eq!(rows[0], "loss");
        // Rows 1..=5 are the canvas: the top row has dots at both ends, the bottom in the middle.
        let canvas: Vec<Vec<char>> = rows[1..6].iter().map(|r| r.chars().rev().take(20).collect()).collect();
        let blank = '\u{2800}';
        assert_ne!(canvas[0][0], blank);
        assert_ne!(canvas[0][19], blank);
        assert_ne!(canvas[4][10], blank);
        assert_eq!(canvas[4][0], blank);
        assert!(text.contains("-2") && text.contains('2') && text.ends_with("p\n"), "{text}");
        assert!(!text.contains('\x1b'));
        assert!(draw(&panel, "p", (-2.0, 2.0), (20, 5), true).contains("\x1b[34m"));
    }

    #[test]
    fn short_numbers() {
        assert_eq!(short(0.0), "0");
        assert_eq!(short(2.5), "2.5");
        assert_eq!(short(-3.0), "-3");
        assert_eq!(short(123456.0), "1.23e5");
        assert_eq!(short(-0.00001), "-1.00e-5");
    }
}
