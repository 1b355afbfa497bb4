//! The `nanobatch` binary: parse the command line, run the command, exit with its code.

use clap::Parser;

fn main() {
    nanobatch::init_logging();
    let cli = nanobatch::cli::Cli::parse();
    let code = nanobatch::commands::dispatch(cli);
    std::process::exit(code);
}
