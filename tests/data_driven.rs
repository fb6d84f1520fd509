//! Data-driven golden dumps: `lossc check --hess` of every custom loss in
//! `tests/data/custom/` (the lowered loss, its weights, gradients and Hessian diagonals
//! as formulas) against `tests/data/check/NAME.check`. Re-bless with `UPDATE_EXPECT=1`.

use std::path::PathBuf;
use std::process::Command;

/// Scalar parameters some files require.
const ARGS: &[(&str, &str)] = &[("linex.loss", "a=0.5")];

#[test]
fn check_dumps_match_their_goldens() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("tests/data/custom");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("custom losses")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "loss"))
        .collect();
    files.sort();
    assert!(files.len() >= 10);
    for path in files {
        let name = path.file_name().and_then(|n| n.to_str()).expect("utf-8 name").to_string();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lossc"));
        cmd.current_dir(&dir).args(["check", "--hess", &name]);
        for (file, arg) in ARGS {
            if *file == name {
                cmd.arg(arg);
            }
        }
        let out = cmd.output().expect("lossc runs");
        assert_eq!(out.status.code(), Some(0), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        let golden = root.join("tests/data/check").join(name).with_extension("check");
        expect_test::expect_file![golden].assert_eq(&text);
    }
}
