//! The command line (clap derive). Flags are data here; `commands/` turns them into work.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::env_vars;

/// Run large, unattended batches of Gemini image generation from YAML manifests.
#[derive(Debug, Parser)]
#[command(name = "nanobatch", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub global: GlobalArgs,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// More output (repeat for debug logs).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

/// What `validate --help` and `plan --help` say about the inputs a manifest reads
/// (docs/manifest.md has the whole story).
const MANIFEST_INPUTS: &str = "\
Manifest inputs (docs/manifest.md):
  sizes  ratio@size: 512 (also 512px, 0.5K), 1K, 2K, 4K; a lowercase k is read as K
  vars   a CSV file: `,` `;` or tab, detected from the header (or `delimiter:` next to `vars:`),
         UTF-8 with or without a byte-order mark, CRLF or LF;
         a spreadsheet (.xlsx .xlsm .xlsb .xls .ods): the first sheet, or `sheet:` next to
         `vars:`; numbers as a CSV export shows them (12, not 12.0), dates as ISO 8601;
         or inline rows";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a manifest, its CSV files and reference images; report every problem. No network.
    #[command(after_help = MANIFEST_INPUTS)]
    Validate(ValidateArgs),
    /// Show the tasks, what is already done and why the rest must run, and the exact cost. No network.
    #[command(after_help = MANIFEST_INPUTS)]
    Plan(PlanArgs),
    /// Run a manifest (resumes from the output directory's journal).
    Run(Box<RunArgs>),
    /// Progress of a run directory: done, failed, pending, possibly billed, spent.
    Status(StatusArgs),
    /// Regenerate report.json and report.html from a run directory's journal.
    Report(ReportArgs),
    /// The model catalogue: ratios, sizes, pixels, tokens per image, prices, limits.
    Models(ModelsArgs),
    /// The built-in Gemini emulator (for demos, tests and benchmarks).
    MockServer(Box<MockServerArgs>),
    /// Write a commented starter manifest, CSV and reference image.
    Init(InitArgs),
    /// Cancel the server-side batch jobs of a run directory.
    Cancel(CancelArgs),
    /// Review a run's images in the browser: approve, reject, note, compare (a local web app).
    Review(ReviewArgs),
    /// Approve, reject or clear the review mark of tasks (by task id or image path).
    Mark(MarkArgs),
    /// Copy the approved (or all) images, their sidecars and a CSV to a directory or a zip file.
    Export(ExportArgs),
    /// Delete the earlier images a run directory keeps (never deleted otherwise).
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    pub manifest: PathBuf,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    pub manifest: PathBuf,
    /// Output directory (to count what is already done). Default: the manifest's `output_dir`,
    /// else out/<name> next to the manifest (not under the current directory).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Machine-readable output on stdout.
    #[arg(long)]
    pub json: bool,
    /// List every task that must run, with the reason.
    #[arg(long)]
    pub tasks: bool,
    /// Price the plan as it would run in this mode.
    #[arg(long, value_enum, default_value_t = Mode::Interactive)]
    pub mode: Mode,
    /// Count failed tasks as to run (as `run --retry-failed` would).
    #[arg(long)]
    pub retry_failed: bool,
    /// Count the images marked rejected in review as to run again (as `run --reroll-rejected`).
    #[arg(long)]
    pub reroll_rejected: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// One request per task, now.
    Interactive,
    /// Google's Batch API: half price, within 24 hours.
    Batch,
    /// Batch for tasks nothing waits on, interactive for the rest.
    Auto,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    pub manifest: PathBuf,
    /// Output directory, relative to the current directory. Default: the manifest's `output_dir`,
    /// else out/<name> next to the manifest (not under the current directory), so the same
    /// manifest finds its run from any working directory.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Requests in flight at most (default: the manifest's limits.concurrency, else 8).
    #[arg(short = 'j', long)]
    pub jobs: Option<usize>,
    /// Print the plan and its cost; send nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Stop before the total spend in this output directory could exceed this many USD.
    #[arg(long, value_name = "USD")]
    pub max_cost: Option<f64>,
    /// Run failed tasks (and tasks that produced no image) again.
    #[arg(long)]
    pub retry_failed: bool,
    /// New images for the tasks whose image is marked rejected (`nanobatch review`, `mark`);
    /// the rejected images are kept as earlier versions.
    #[arg(long)]
    pub reroll_rejected: bool,
    /// Start over: forget this manifest's runs in the output directory and delete the images
    /// they wrote, as recorded and unchanged (asks first). Other manifests' runs and files
    /// there, and anything outside the directory, are left alone; refused while batch jobs are open.
    #[arg(long)]
    pub fresh: bool,
    /// Answer yes to questions (with --fresh).
    #[arg(short, long)]
    pub yes: bool,
    /// Use the built-in emulator (no API key, nothing billed).
    #[arg(long)]
    pub mock: bool,
    /// API base URL (a proxy, or an emulator).
    #[arg(long, env = env_vars::GOOGLE_GEMINI_BASE_URL)]
    pub base_url: Option<String>,
    /// Stop at the first failed task.
    #[arg(long)]
    pub fail_fast: bool,
    /// When the daily quota runs out, wait for the reset (midnight Pacific) instead of stopping.
    #[arg(long)]
    pub wait_for_quota: bool,
    /// Fail a task whose image size differs from the catalogue (default: a warning).
    #[arg(long)]
    pub strict: bool,
    /// Stream one JSON event per line on stdout.
    #[arg(long)]
    pub json: bool,
    /// Per-request timeout, e.g. 5m (default 10m, the server's own limit; at least 1s).
    #[arg(long, value_parser = parse_timeout)]
    pub timeout: Option<std::time::Duration>,
    /// Requests per minute for a model: MODEL=N (repeatable).
    #[arg(long, value_name = "MODEL=N")]
    pub rpm: Vec<String>,
    /// Images per minute for a model: MODEL=N (repeatable).
    #[arg(long, value_name = "MODEL=N")]
    pub ipm: Vec<String>,
    #[arg(long, value_enum, default_value_t = Mode::Interactive)]
    pub mode: Mode,
    /// In batch mode, run tasks of failed or expired batch jobs interactively.
    #[arg(long)]
    pub interactive_fallback: bool,
    /// First wait before polling a batch job (grows ×1.5 up to 30s).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub poll_interval: Option<std::time::Duration>,
    /// Skip report.html (report.json is always written).
    #[arg(long)]
    pub no_html: bool,
    /// Take over a lock left by a run on another host.
    #[arg(long)]
    pub break_lock: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    pub dir: PathBuf,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    pub dir: PathBuf,
    /// Only report.html.
    #[arg(long)]
    pub html: bool,
    /// Print report.json on stdout as well.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ReviewArgs {
    pub dir: PathBuf,
    /// Port on 127.0.0.1 (default: any free port).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Open the app in the system's browser.
    #[arg(long)]
    pub open: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("verdict").required(true).args(["approve", "reject", "clear"])))]
pub struct MarkArgs {
    pub dir: PathBuf,
    /// Mark the images approved.
    #[arg(long)]
    pub approve: bool,
    /// Mark the images rejected (`run --reroll-rejected` makes new ones).
    #[arg(long)]
    pub reject: bool,
    /// Back to pending review (the mark and its note are withdrawn).
    #[arg(long, conflicts_with = "note")]
    pub clear: bool,
    /// A note kept with the mark (default: the image's current note).
    #[arg(long, value_name = "TEXT")]
    pub note: Option<String>,
    /// Task ids or image paths (relative to DIR, or paths to the files).
    #[arg(required = true, value_name = "TASK")]
    pub tasks: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    pub dir: PathBuf,
    /// A new directory, or with --zip a new .zip file.
    pub dest: PathBuf,
    /// Only approved images (the default).
    #[arg(long, conflicts_with = "all")]
    pub approved: bool,
    /// Every image of the run, whatever its mark.
    #[arg(long)]
    pub all: bool,
    /// Write one zip file instead of a directory.
    #[arg(long)]
    pub zip: bool,
}

#[derive(Debug, Args)]
pub struct ModelsArgs {
    #[arg(long)]
    pub json: bool,
    /// Show the catalogue as a manifest's `models:` section changes it.
    #[arg(long)]
    pub manifest: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Directory to write into (default: the current directory).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct CancelArgs {
    pub dir: PathBuf,
    /// API base URL (default: the one the jobs were created at).
    #[arg(long, env = env_vars::GOOGLE_GEMINI_BASE_URL)]
    pub base_url: Option<String>,
    /// Send the key as `?key=` (for proxies that need it).
    #[arg(long)]
    pub query_key: bool,
}

/// When a new image replaces a paid one (a changed prompt, a retry, a re-roll), the earlier
/// image and its sidecar are kept under DIR/.nanobatch/superseded/<fingerprint>/; `status` and
/// the report list them. `prune` deletes them, after asking.
#[derive(Debug, Args)]
pub struct PruneArgs {
    pub dir: PathBuf,
    /// The earlier images under .nanobatch/superseded/ (what prune deletes; the default).
    #[arg(long)]
    pub superseded: bool,
    /// Delete without asking (needed when not on a terminal).
    #[arg(long)]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct MockServerArgs {
    /// Port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 8089)]
    pub port: u16,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Accept only this key (repeatable); default: any non-empty key.
    #[arg(long = "api-key")]
    pub api_keys: Vec<String>,
    /// Requests per minute per model; beyond: 429 with RetryInfo.
    #[arg(long)]
    pub rpm: Option<u32>,
    /// Requests per day per model; beyond: 429 with a per-day QuotaFailure.
    #[arg(long)]
    pub rpd: Option<u32>,
    #[arg(long, default_value_t = 0.0)]
    pub error_500: f64,
    #[arg(long, default_value_t = 0.0)]
    pub error_503: f64,
    #[arg(long, default_value_t = 0.0)]
    pub error_429: f64,
    /// Fraction of image responses whose connection is dropped after processing.
    #[arg(long, default_value_t = 0.0)]
    pub drop: f64,
    /// Fraction of image responses cut off halfway.
    #[arg(long, default_value_t = 0.0)]
    pub truncate: f64,
    #[arg(long, default_value_t = 0.0)]
    pub image_safety: f64,
    #[arg(long, default_value_t = 0.0)]
    pub text_only: f64,
    /// Fraction of image responses a gateway replaces with an HTML 504 after the model ran
    /// (billed, not delivered).
    #[arg(long, default_value_t = 0.0)]
    pub gateway_timeout: f64,
    /// Fraction of image responses whose PNG is cut in half inside a well-formed 200 (billed).
    #[arg(long, default_value_t = 0.0)]
    pub broken_image: f64,
    /// Latency: 0, 200ms, 1s..3s, lognormal:MEDIAN:SIGMA.
    #[arg(long, default_value = "0")]
    pub latency: String,
    /// Pad PNGs to about this many bytes per megapixel (realistic sizes for benchmarks).
    #[arg(long, default_value_t = 0)]
    pub pad_per_megapixel: usize,
    /// Largest padded image in bytes.
    #[arg(long, default_value_t = 0)]
    pub pad_cap: usize,
    /// Fraction of 3-pro answers sent as JPEG.
    #[arg(long, default_value_t = 0.0)]
    pub jpeg_rate: f64,
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    pub batch_pending: std::time::Duration,
    #[arg(long, value_parser = parse_duration, default_value = "3s")]
    pub batch_running: std::time::Duration,
    #[arg(long, default_value_t = 0)]
    pub batch_fail_every: u32,
    #[arg(long, default_value_t = 0)]
    pub batch_expire_every: u32,
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(text).map_err(|e| e.to_string())
}

fn parse_timeout(text: &str) -> Result<std::time::Duration, String> {
    crate::api::http::check_timeout(parse_duration(text)?)
}

/// The command line, or the exit code to leave with: help and version exit 0, a usage error
/// exits [`exit_code::INVALID_INPUT`](crate::exit_code::INVALID_INPUT) like any other invalid
/// input (clap's own default is 2, which nanobatch uses for fatal errors).
pub fn parse() -> Result<Cli, i32> {
    Cli::try_parse().map_err(|e| crate::ui::usage_error(&e))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
