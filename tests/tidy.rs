//! Hygiene as tests: module docs, no should-panic or ignored tests, and a standard-library
//! registry that names every file under `losses/`.

use std::path::{Path, PathBuf};

fn files_under(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for entry in rd.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, ext, out);
        } else if path.extension().is_some_and(|e| e == ext) {
            out.push(path);
        }
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn every_source_file_starts_with_a_module_doc() {
    let mut files = Vec::new();
    files_under(&root().join("src"), "rs", &mut files);
    files_under(&root().join("tests"), "rs", &mut files);
    assert!(files.len() > 10);
    for f in files {
        let text = std::fs::read_to_string(&f).expect("readable");
        assert!(text.starts_with("//!"), "{} must start with a `//!` line saying its job", f.display());
    }
}

#[test]
fn no_should_panic_or_ignored_tests() {
    let mut files = Vec::new();
    files_under(&root().join("src"), "rs", &mut files);
    files_under(&root().join("tests"), "rs", &mut files);
    let (panic_attr, ignore_attr) = (concat!("#[should", "_panic"), concat!("#[ig", "nore"));
    for f in files {
        let text = std::fs::read_to_string(&f).expect("readable");
        assert!(!text.contains(panic_attr), "{}: test for Err values instead", f.display());
        assert!(!text.contains(ignore_attr), "{}: gate long runs with LOSSC_LONG=1 instead", f.display());
    }
}

#[test]
fn stdlib_registry_lists_every_loss_file() {
    let mut files = Vec::new();
    files_under(&root().join("losses"), "loss", &mut files);
    let mut on_disk: Vec<String> = files
        .iter()
        .filter_map(|f| f.strip_prefix(root().join("losses")).ok())
        .map(|p| p.with_extension("").to_string_lossy().replace('\\', "/"))
        .collect();
    on_disk.sort();
    let mut registered: Vec<String> = lossc::stdlib::names().map(String::from).collect();
    registered.sort();
    assert_eq!(on_disk, registered, "src/stdlib.rs must list exactly the files under losses/");
}

#[test]
fn every_stdlib_loss_compiles_with_derivatives() {
    for name in lossc::stdlib::names() {
        let source = lossc::stdlib::source(name).expect("registered");
        assert!(source.starts_with('#'), "{name}: a stdlib file starts with a header comment");
        for dtype in [lossc::Dtype::F32, lossc::Dtype::F64] {
            let options = lossc::CompileOptions { dtype, params: Vec::new(), hessian: true, stabilize: true };
            if let Err(d) = lossc::compile(source, &options) {
                panic!("{name}: {:?}", d.iter().map(|d| &d.message).collect::<Vec<_>>());
            }
        }
    }
}
