//! The `lossc` command line: parses arguments, dispatches, renders diagnostics, sets the exit code.
//!
//! Exit status: 0 success; 1 anything wrong with the loss, its parameters or its data;
//! 2 only what the argument parser rejects.

mod cli;
mod render;

use clap::Parser;

fn main() {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    if let Err(failure) = cli::run(cli) {
        failure.print();
        std::process::exit(1);
    }
}
