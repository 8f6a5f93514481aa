//! The `homeostat` command line: parses arguments, sets up logging, and hands
//! over to the library. Nothing else lives here.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use homeostat::config::Config;
use homeostat::daemon::{self, RunOptions};

/// homeostat keeps an AI inference platform healthy: it scrapes metrics like
/// Prometheus, judges them with alert rules and forecasts, runs remediation
/// playbooks, verifies they worked, and tells the on-call engineer.
#[derive(Parser)]
#[command(name = "homeostat", version, propagate_version = true, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    log: LogArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct LogArgs {
    /// Log filter: a level (error, warn, info, debug, trace) or a tracing
    /// directive such as `homeostat=debug,tower_http=info`. Overrides RUST_LOG.
    #[arg(
        long = "log.level",
        global = true,
        env = "HOMEOSTAT_LOG_LEVEL",
        default_value = "info"
    )]
    level: String,
    /// Log line format: `logfmt` for people, `json` for log pipelines.
    #[arg(long = "log.format", global = true, value_enum, default_value_t = LogFormat::Logfmt)]
    format: LogFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Logfmt,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon. Without --config it runs the embedded default config:
    /// it scrapes its own /metrics, keeps state in ./homeostat.db and serves
    /// the API on 127.0.0.1:9400. SIGHUP or POST /-/reload re-reads the config;
    /// SIGTERM or Ctrl-C stops it cleanly.
    Run(RunArgs),
    /// Validate files without starting anything; exits 1 if any is invalid.
    #[command(subcommand)]
    Check(CheckCommand),
    /// Print version, git revision and compiler.
    Version,
    /// Run Prometheus promqltest files (load / clear / eval instant at /
    /// eval_fail / eval_ordered) against homeostat's PromQL engine.
    ///
    /// Prints one line per failing eval (`FILE:LINE: EXPR: expected ..., got
    /// ...`), a `FILE: N passed, N failed` line after each file and a final
    /// `N passed, N failed` line. Exit status: 0 when every case passed, 1
    /// when any failed, 2 when a file could not be read or parsed.
    #[command(name = "promql-test")]
    PromqlTest {
        /// Test files, e.g. ../shared/data/promql/*.test
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Args)]
struct RunArgs {
    /// Path to homeostat.yaml. Omit to run the embedded default config.
    #[arg(short, long, env = "HOMEOSTAT_CONFIG")]
    config: Option<PathBuf>,
    /// Listen address (host:port) for the API, dashboard and /metrics,
    /// overriding web.listen_address.
    #[arg(long, env = "HOMEOSTAT_LISTEN")]
    listen: Option<String>,
}

#[derive(Subcommand)]
enum CheckCommand {
    /// Check homeostat.yaml files: syntax, unknown keys, values. Every error is
    /// printed with file, line and field.
    Config {
        /// Config files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn init_logging(log: &LogArgs) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(&log.level).unwrap_or_else(|e| {
        eprintln!("invalid --log.level {:?}: {e}; using info", log.level);
        EnvFilter::new("info")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Logfmt => builder.init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!(
                "homeostat {} (revision {}, {})",
                env!("CARGO_PKG_VERSION"),
                homeostat::BUILD_REVISION,
                homeostat::RUSTC_VERSION
            );
            ExitCode::SUCCESS
        }
        Command::PromqlTest { files } => promql_test(&files),
        Command::Check(CheckCommand::Config { files }) => {
            let mut failed = false;
            for f in &files {
                match Config::load_file(f) {
                    Ok(c) => println!(
                        "SUCCESS: {} is valid ({} scrape job{})",
                        f.display(),
                        c.config.scrape_configs.len(),
                        if c.config.scrape_configs.len() == 1 {
                            ""
                        } else {
                            "s"
                        }
                    ),
                    Err(e) => {
                        failed = true;
                        println!("FAILED: {e}");
                    }
                }
            }
            if failed {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Command::Run(args) => {
            init_logging(&cli.log);
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("cannot start the async runtime: {e}");
                    return ExitCode::from(1);
                }
            };
            let opts = RunOptions {
                config_path: args.config,
                listen: args.listen,
            };
            match runtime.block_on(daemon::run(opts)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e}");
                    eprintln!("homeostat: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

fn promql_test(files: &[PathBuf]) -> ExitCode {
    use homeostat::query::{promqltest, Engine};
    let engine = Engine::default();
    let (mut passed, mut failed, mut broken) = (0usize, 0usize, false);
    for f in files {
        match promqltest::run_file(f, &engine) {
            Ok(r) => {
                for fail in &r.failures {
                    println!("{fail}");
                }
                println!(
                    "{}: {} passed, {} failed",
                    f.display(),
                    r.passed,
                    r.failures.len()
                );
                passed += r.passed;
                failed += r.failures.len();
            }
            Err(e) => {
                broken = true;
                println!("{e}");
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if broken {
        ExitCode::from(2)
    } else if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
