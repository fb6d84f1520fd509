//! `lossc plot`: the SVG and PNG files it writes (series, legend, axes, rendered text) and
//! its exit codes for mistakes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn lossc(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lossc")).current_dir(dir).args(args).output().expect("lossc runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A fresh empty directory under the system temp dir, named after the test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lossc-plot-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

const OVERLAY: [&str; 3] = ["torch/huber_loss", "torch/smooth_l1_loss", "torch/mse_loss"];
/// The first three colours of the palette, in series order.
const COLOURS: [(&str, [u8; 3]); 3] =
    [("#1F77B4", [31, 119, 180]), ("#D62728", [214, 39, 40]), ("#2CA02C", [44, 160, 44])];

fn plot_overlay(dir: &Path, file: &str) -> Output {
    let mut args = vec!["plot"];
    args.extend(OVERLAY);
    args.extend(["--over", "input=-3:3", "target=0", "beta=2", "-o", file]);
    lossc(dir, &args)
}

/// The text of every `<text>` element.
fn svg_texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| Some(t.split_once('>')?.1.split_once("</text>")?.0.trim().to_string()))
        .collect()
}

/// (stroke colour, number of points) of every `<polyline>`.
fn svg_polylines(svg: &str) -> Vec<(String, usize)> {
    svg.split("<polyline")
        .skip(1)
        .filter_map(|p| {
            let tag = p.split_once("/>")?.0;
            let stroke = tag.split_once("stroke=\"")?.1.split_once('"')?.0.to_string();
            let points = tag.split_once("points=\"")?.1.split_once('"')?.0.split_whitespace().count();
            Some((stroke, points))
        })
        .collect()
}

#[test]
fn svg_has_every_series_a_legend_and_labelled_axes() {
    let dir = scratch("svg");
    let out = plot_overlay(&dir, "cmp.svg");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "wrote cmp.svg\n");
    let svg = std::fs::read_to_string(dir.join("cmp.svg")).expect("the SVG was written");
    assert!(svg.starts_with("<svg width=\"960\" height=\"720\"") && svg.trim_end().ends_with("</svg>"));
    let texts = svg_texts(&svg);
    for label in OVERLAY {
        // One legend entry in the loss panel and one in the gradient panel.
        assert_eq!(texts.iter().filter(|t| *t == label).count(), 2, "{label} in {texts:?}");
    }
    for caption in ["loss L over input", "gradient ∂L/∂input", "input", "L", "∂L/∂input"] {
        assert!(texts.iter().any(|t| t == caption), "{caption} in {texts:?}");
    }
    let lines = svg_polylines(&svg);
    for (hex, _) in COLOURS {
        // The loss curve and the gradient curve, each sampled at every point, plus legend marks.
        let curves = lines.iter().filter(|(s, n)| s == hex && *n >= 400).count();
        assert_eq!(curves, 2, "{hex}: {lines:?}");
        assert!(lines.iter().filter(|(s, n)| s == hex && *n == 2).count() >= 2, "{hex} legend marks");
    }
}

#[test]
fn png_is_a_nonblank_image_with_every_series_and_rendered_text() {
    let dir = scratch("png");
    let out = plot_overlay(&dir, "cmp.png");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let file = std::fs::File::open(dir.join("cmp.png")).expect("the PNG was written");
    let mut reader = png::Decoder::new(file).read_info().expect("a valid PNG header");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("a decodable frame");
    assert_eq!((info.width, info.height), (960, 720));
    assert_eq!(info.color_type, png::ColorType::Rgb);
    let pixels: Vec<[u8; 3]> = buf[..info.buffer_size()].chunks_exact(3).map(|p| [p[0], p[1], p[2]]).collect();
    let width = info.width as usize;
    for (hex, rgb) in COLOURS {
        let n = pixels.iter().filter(|p| **p == rgb).count();
        assert!(n > 500, "{hex}: only {n} pixels");
    }
    // The caption "loss L over input" sits alone in the top strip: dark pixels there
    // mean the built-in font rendered text.
    let caption_dark = pixels[..40 * width].iter().filter(|p| p.iter().all(|c| *c < 100)).count();
    assert!(caption_dark > 50, "no caption text ({caption_dark} dark pixels)");
    let white = pixels.iter().filter(|p| **p == [255, 255, 255]).count();
    assert!(white > pixels.len() / 2 && white < pixels.len() * 99 / 100, "{white} white pixels");
}

#[test]
fn default_output_class_axis_and_targets() {
    let dir = scratch("default");
    let out = lossc(&dir, &["plot", "torch/mse_loss", "--over", "input=-1:1", "target=0.5"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "wrote plot.svg\n");
    assert!(dir.join("plot.svg").is_file());
    // One class of a row varies; the others come from the row given.
    let out = lossc(
        &dir,
        &["plot", "torch/cross_entropy", "--over", "input[0]=-3:3", "input=0,1,2", "target=0", "-o", "ce.svg"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // A target has no gradient curve: said, not an error.
    let out = lossc(&dir, &["plot", "torch/mse_loss", "--over", "target=-1:1", "input=0", "-o", "t.svg"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("no gradient curve"), "{}", text(&out.stdout));
    // Where a requirement fails the curve has a gap, and the output says why.
    let out =
        lossc(&dir, &["plot", "torch/binary_cross_entropy", "--over", "input=-0.5:1.5", "target=1", "-o", "bce.svg"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("undefined on part of the range"), "{}", text(&out.stdout));
}

#[test]
fn mistakes_exit_1_with_a_message_and_usage_errors_exit_2() {
    let dir = scratch("errors");
    for (args, message) in [
        (vec!["plot", "torch/mse_loss", "--over", "input=3:1", "target=0"], "LO must be less than HI"),
        (vec!["plot", "torch/mse_loss", "--over", "input=a:b", "target=0"], "must be numbers"),
        (vec!["plot", "torch/mse_los", "--over", "input=0:1", "target=0"], "did you mean `torch/mse_loss`"),
        (vec!["plot", "torch/mse_loss", "--over", "inpt=0:1", "target=0"], "did you mean `input`"),
        (vec!["plot", "torch/mse_loss", "--over", "input=0:1", "targt=0"], "did you mean `target`"),
        (vec!["plot", "torch/mse_loss", "--over", "input=0:1", "target=0", "-o", "x.jpg"], "`.svg` or a `.png`"),
        (vec!["plot", "torch/mse_loss", "--over", "input=0:1"], "missing input `target`"),
        (vec!["plot", "torch/huber_loss", "--over", "delta=0:1", "input=0", "target=0"], "is a parameter"),
        (vec!["plot", "torch/huber_loss", "--over", "input=0:1", "target=0", "delta=x"], "takes a single number"),
        (vec!["plot", "torch/cross_entropy", "--over", "target=0:1", "input=0,1"], "class-index target"),
        (vec!["plot", "torch/cross_entropy", "--over", "input=0:1", "input=0,1", "target=0"], "input[K]=LO:HI"),
        (vec!["plot", "target=0", "--over", "input=0:1"], "no loss to plot"),
        (vec!["plot", "torch/mse_loss", "--over", "input=0:1", "target=0", "-o", "no/such/dir/x.svg"], "cannot write"),
    ] {
        let out = lossc(&dir, &args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(message) && !stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    for args in [vec!["plot", "torch/mse_loss", "target=0"], vec!["plot", "--over", "input=0:1"]] {
        let out = lossc(&dir, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out.stderr));
    }
}

/// The README's `lossc plot` command runs (writing into a scratch directory, not docs/).
#[test]
fn readme_plot_command_runs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README");
    let line = readme
        .lines()
        .filter(|l| l.contains("-o docs/plot.png"))
        .find_map(|l| l.trim().strip_prefix("lossc plot "))
        .expect("the command that drew docs/plot.png");
    let dir = scratch("readme");
    let out_file = dir.join("readme.png");
    let mut args: Vec<String> = vec!["plot".into()];
    let mut words = line.split_whitespace();
    while let Some(word) = words.next() {
        if word == "-o" {
            assert_eq!(words.next(), Some("docs/plot.png"), "the README shows docs/plot.png");
            args.extend(["-o".to_string(), out_file.display().to_string()]);
        } else {
            args.push(word.to_string());
        }
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = lossc(root, &args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out_file.is_file() && root.join("docs/plot.png").is_file());
}
