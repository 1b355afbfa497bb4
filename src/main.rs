//! The `nanobatch` binary: parse the command line, run the command, exit with its code.

fn main() {
    nanobatch::init_logging();
    let cli = nanobatch::cli::parse().unwrap_or_else(|code| std::process::exit(code));
    let code = nanobatch::commands::dispatch(cli);
    std::process::exit(code);
}
