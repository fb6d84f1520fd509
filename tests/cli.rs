//! Command-line tests: run the built `lossc` binary and check stdout, stderr and the exit code.
//!
//! `tests/bad_inputs/*.loss` is a corpus of malformed files and broken data. The first
//! line of each says how to run it (`# run: eval p=1 y=data/x.npy` runs
//! `lossc eval FILE p=1 y=data/x.npy` in `tests/bad_inputs/`; `# run-raw:` runs the
//! words as they are). Each must exit 1 without a panic and print exactly the golden
//! `FILE.stderr` (re-bless with `UPDATE_EXPECT=1 cargo test --test cli`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn lossc(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lossc")).current_dir(dir).args(args).output().expect("lossc runs")
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn bad_inputs_exit_1_with_their_golden_diagnostics() {
    let dir = root().join("tests/bad_inputs");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("corpus folder")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "loss"))
        .collect();
    files.sort();
    assert!(files.len() >= 30, "only {} corpus entries", files.len());
    for path in files {
        let name = path.file_name().and_then(|n| n.to_str()).expect("utf-8 name").to_string();
        let source = std::fs::read_to_string(&path).expect("readable");
        let first = source.lines().next().unwrap_or_default();
        let args: Vec<String> = if let Some(raw) = first.strip_prefix("# run-raw:") {
            raw.split_whitespace().map(String::from).collect()
        } else {
            let rest =
                first.strip_prefix("# run:").unwrap_or_else(|| panic!("{name}: first line must be `# run: ...`"));
            let mut words = rest.split_whitespace().map(String::from);
            let cmd = words.next().expect("a command");
            std::iter::once(cmd).chain(std::iter::once(name.clone())).chain(words).collect()
        };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = lossc(&dir, &args);
        let stderr = text(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{name}: exit status {:?}\nstdout: {}\nstderr: {stderr}",
            out.status,
            text(&out.stdout)
        );
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        assert!(stderr.contains("error"), "{name}: no error message: {stderr}");
        expect_test::expect_file![path.with_extension("stderr")].assert_eq(&stderr);
    }
}

#[test]
fn usage_errors_exit_2() {
    let dir = root();
    for args in [
        vec!["eval", "examples/squared_hinge.loss", "--dtype", "f16"],
        vec!["eval", "examples/squared_hinge.loss", "--frobnicate"],
        vec!["eval", "examples/squared_hinge.loss", "p"],
        vec!["frobnicate"],
        vec![],
    ] {
        let out = lossc(&dir, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out.stderr));
    }
    assert_eq!(lossc(&dir, &["--help"]).status.code(), Some(0));
}

#[test]
fn readme_command_runs_on_shipped_data() {
    let out = lossc(
        &root(),
        &[
            "eval",
            "losses/torch/cross_entropy.loss",
            "input=examples/data/logits.csv",
            "target=examples/data/classes.csv",
            "--grad",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("loss = 1.4743679\n") && stdout.contains("grad input = ["), "{stdout}");
}

#[test]
fn json_output_shapes_and_number_forms() {
    let dir = root();
    let out = lossc(&dir, &["eval", "examples/squared_hinge.loss", "p=0.5,2", "y=1,1", "--grad", "--json"]);
    assert_eq!(text(&out.stdout).trim(), r#"{"loss": 0.125, "grad": {"p": [-0.5, -0.0]}}"#);
    // f32 prints the shortest form that reads back to the same f32.
    let out = lossc(&dir, &["eval", "examples/squared_hinge.loss", "p=0.1", "y=1", "--json"]);
    assert_eq!(text(&out.stdout).trim(), r#"{"loss": 0.80999994}"#);
    let out = lossc(&dir, &["eval", "examples/squared_hinge.loss", "p=0.1", "y=1", "--json", "--dtype", "f64"]);
    assert_eq!(text(&out.stdout).trim(), r#"{"loss": 0.81}"#);
    // none: always an array; non-finite numbers are strings.
    let out = lossc(
        &dir,
        &["eval", "examples/squared_hinge.loss", "p=nan,inf,3", "y=1", "--reduce", "none", "--json", "--grad"],
    );
    assert_eq!(text(&out.stdout).trim(), r#"{"loss": ["nan", 0.0, 0.0], "grad": {"p": [-0.0, -0.0, -0.0]}}"#);
}

#[test]
fn bench_prints_its_json_with_and_without_stability_rewriting() {
    let dir = root();
    for extra in [&[][..], &["--no-stabilize"][..]] {
        let mut args = vec!["bench", "examples/squared_hinge.loss", "p=0.5,2,3", "y=1,1,-1", "--reps", "5", "--json"];
        args.extend_from_slice(extra);
        let out = lossc(&dir, &args);
        assert_eq!(out.status.code(), Some(0), "{extra:?}: {}", text(&out.stderr));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
        for key in ["compile_us", "call_us", "optimize_us"] {
            assert!(json[key].as_f64().is_some_and(|t| t > 0.0), "{extra:?}: {key} in {json}");
        }
        assert_eq!(json["elements"], 3, "{json}");
        assert!(json["threads"].as_u64().is_some_and(|t| t >= 1), "{json}");
    }
}

#[test]
fn check_prints_formulas_and_stdlib_names_resolve() {
    let out = lossc(&root(), &["check", "examples/squared_hinge.loss"]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("loss = t2^2") && stdout.contains("grad p = "), "{stdout}");
    let out = lossc(&root(), &["check", "torch/mse_loss"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = lossc(&root(), &["list"]);
    assert!(text(&out.stdout).contains("torch/cross_entropy"));
}

/// See: issue 4. `check` lists the stability rewrites; `--no-stabilize` shows the raw forms.
#[test]
fn check_lists_stability_rewrites_and_no_stabilize_shows_raw_forms() {
    let out = lossc(&root(), &["check", "torch/soft_margin_loss"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("loss = softplus(-(target*input))"), "{stdout}");
    assert!(stdout.contains("S7 softplus: log1p(exp(-(target*input))) → softplus(-(target*input))"), "{stdout}");
    assert!(stdout.contains("(protects input, target)"), "{stdout}");
    let out = lossc(&root(), &["check", "torch/soft_margin_loss", "--no-stabilize"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("t1 = exp(-target*input)") && stdout.contains("loss = log1p(t1)"), "{stdout}");
    assert!(stdout.contains("# stability rewriting: off (--no-stabilize)"), "{stdout}");
}
