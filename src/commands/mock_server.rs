//! `nanobatch mock-server`: the built-in emulator as a process (demos, other tools, benchmarks).

use super::{CommandError, CommandResult, runtime};
use crate::cli::MockServerArgs;
use crate::exit_code;
use crate::mock::{FaultRates, Latency, MockConfig, MockServer};
use crate::ui::Printer;

pub fn config(args: &MockServerArgs) -> Result<MockConfig, CommandError> {
    let latency = Latency::parse(&args.latency).map_err(|e| CommandError::invalid(format!("--latency: {e}")))?;
    for (name, rate) in [
        ("--error-500", args.error_500),
        ("--error-503", args.error_503),
        ("--error-429", args.error_429),
        ("--drop", args.drop),
        ("--truncate", args.truncate),
        ("--image-safety", args.image_safety),
        ("--text-only", args.text_only),
        ("--jpeg-rate", args.jpeg_rate),
    ] {
        if !(0.0..=1.0).contains(&rate) {
            return Err(CommandError::invalid(format!("{name} is a probability between 0 and 1")));
        }
    }
    Ok(MockConfig {
        seed: args.seed,
        api_keys: (!args.api_keys.is_empty()).then(|| args.api_keys.clone()),
        rpm: args.rpm,
        rpd: args.rpd,
        faults: FaultRates {
            error_500: args.error_500,
            error_503: args.error_503,
            error_429: args.error_429,
            drop: args.drop,
            truncate: args.truncate,
            image_safety: args.image_safety,
            text_only: args.text_only,
            gateway_timeout: args.gateway_timeout,
            broken_image: args.broken_image,
        },
        latency,
        pad_per_megapixel: args.pad_per_megapixel,
        pad_cap: args.pad_cap,
        jpeg_rate: args.jpeg_rate,
        batch_pending: args.batch_pending,
        batch_running: args.batch_running,
        batch_fail_every: args.batch_fail_every,
        batch_expire_every: args.batch_expire_every,
        ..MockConfig::default()
    })
}

pub fn run(printer: &Printer, args: &MockServerArgs) -> CommandResult {
    let config = config(args)?;
    let rt = runtime()?;
    rt.block_on(async {
        let server = MockServer::start(config, args.port)
            .await
            .map_err(|e| CommandError::fatal(format!("cannot listen on 127.0.0.1:{}: {e}", args.port)))?;
        // The URL goes to stdout so that scripts can read it.
        printer.data(&server.url());
        printer.note(&format!(
            "nanobatch emulator listening on {} — point a run at it with --base-url {} (any key works); stats at {}/_stats; Ctrl-C to stop",
            server.url(),
            server.url(),
            server.url()
        ));
        let _ = tokio::signal::ctrl_c().await;
        let stats = server.stats();
        printer.note(&format!("served {} requests ({} images)", stats.requests, stats.images));
        server.stop().await;
        Ok(exit_code::OK)
    })
}
