//! The `switchyard` command line: `serve`, `check`, `mock`, `keys`, `teams`, `prices`,
//! `report`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use switchyard::cli;
use switchyard::config::{self, Source};
use switchyard::server;
use switchyard::telemetry::{self, LogFormat};

mod allocator;

/// A self-hosted AI gateway: OpenAI-compatible in, the best provider out.
#[derive(Parser)]
#[command(name = "switchyard", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How log lines are written (to stderr).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "SWITCHYARD_LOG_FORMAT"
    )]
    log_format: LogFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (config: --config, else ./switchyard.yaml, else the built-in default).
    Serve {
        /// The YAML configuration file.
        #[arg(long, short, env = "SWITCHYARD_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Validate a configuration and print every problem with its place.
    Check {
        /// The YAML configuration file.
        #[arg(long, short, env = "SWITCHYARD_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Manage virtual keys in the store (no server needed).
    Keys {
        #[command(subcommand)]
        command: cli::KeysCommand,
        #[command(flatten)]
        store: cli::StoreArgs,
    },
    /// Manage teams in the store (no server needed).
    Teams {
        #[command(subcommand)]
        command: cli::TeamsCommand,
        #[command(flatten)]
        store: cli::StoreArgs,
    },
    /// Print the built-in price list (or check and print another with --file).
    Prices(cli::PricesArgs),
    /// Usage and cost from the store, grouped; --reprice: at another price list.
    Report(cli::ReportArgs),
    /// Run the fake provider (OpenAI wire format) for tests and benchmarks.
    Mock {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9090")]
        listen: SocketAddr,
        #[command(flatten)]
        options: switchyard_mock::MockOptions,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The gateway and the mock batch their lines; a one-shot command's keep
    // their place among what it prints.
    let delivery = match cli.command {
        Command::Serve { .. } | Command::Mock { .. } => telemetry::Delivery::Batched,
        _ => telemetry::Delivery::Direct,
    };
    let _log_guard = telemetry::init(cli.log_format, delivery);
    match cli.command {
        Command::Check { config } => check(&Source::resolve(config)),
        Command::Serve { config } => serve(&Source::resolve(config)),
        Command::Mock { listen, options } => mock(listen, options),
        Command::Keys { command, store } => offline(cli::keys(command, store)),
        Command::Teams { command, store } => offline(cli::teams(command, store)),
        Command::Prices(args) => cli::prices(&args),
        Command::Report(args) => offline(cli::report(args)),
    }
}

fn check(source: &Source) -> ExitCode {
    let checked = config::load(source);
    print!("{}", checked.problems);
    match checked.config {
        Some(config) => {
            println!(
                "{}: ok ({} providers, {} models)",
                checked.problems.source,
                config.providers.len(),
                config.models.len()
            );
            ExitCode::SUCCESS
        }
        None => {
            let errors = checked
                .problems
                .list
                .iter()
                .filter(|p| p.is_error())
                .count();
            println!("{}: {errors} problem(s)", checked.problems.source);
            ExitCode::FAILURE
        }
    }
}

fn serve(source: &Source) -> ExitCode {
    let text = match source.read() {
        Ok(text) => text,
        Err(problems) => {
            eprint!("{problems}");
            return ExitCode::from(2);
        }
    };
    let checked = config::parse(source, &text);
    for problem in checked.problems.to_string().lines() {
        tracing::warn!("{problem}");
    }
    let Some(config) = checked.config else {
        eprint!("{}", checked.problems);
        eprintln!("the configuration is not valid; `switchyard check` lists every problem");
        return ExitCode::from(2);
    };
    let loaded = server::Loaded {
        source: source.clone(),
        text,
    };
    let result = runtime().and_then(|rt| {
        rt.block_on(server::run(config, loaded))
            .map_err(|e| e.to_string())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn mock(listen: SocketAddr, options: switchyard_mock::MockOptions) -> ExitCode {
    let result = runtime().and_then(|rt| {
        rt.block_on(async {
            let mut signals = server::Signals::register().map_err(|e| e.to_string())?;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
            let addr = listener.local_addr().map_err(|e| e.to_string())?;
            server::announce(addr);
            tracing::info!(%addr, ?options, "mock provider serving");
            switchyard_mock::serve(listener, options, async move { signals.recv().await })
                .await
                .map_err(|e| e.to_string())
        })
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a store command on a small runtime of its own.
fn offline(command: impl Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(command),
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(allocator::on_worker_idle)
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}
