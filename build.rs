//! Build script: generates the parser from `grammar/loss.lalrpop` with lalrpop.

fn main() {
    println!("cargo:rerun-if-changed=grammar");
    lalrpop::Configuration::new()
        .set_in_dir("grammar")
        .set_out_dir(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"))
        .emit_rerun_directives(true)
        .process()
        .expect("grammar/loss.lalrpop must be a valid lalrpop grammar");
}
