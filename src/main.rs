//! The `lossc` command line: parses arguments, dispatches, renders diagnostics, sets the exit code.
//!
//! Exit status: 0 success; 1 anything wrong with the loss, its parameters or its data;
//! 2 only what the argument parser rejects.

mod cli;
mod plot;
mod render;
mod repl;

use std::io::Write;

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
    match cli::run(cli) {
        Ok(text) => {
            // A closed pipe (`lossc list | head`) is not an error of ours: stop quietly.
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush());
        }
        Err(failure) => {
            failure.print();
            std::process::exit(1);
        }
    }
}
