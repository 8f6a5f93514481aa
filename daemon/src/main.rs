//! The `homeostat` command line: parses arguments, sets up logging, and hands
//! over to the library. Nothing else lives here.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use homeostat::config::Config;
use homeostat::daemon::{self, RunOptions};

mod cmd;

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
    /// Run rule unit tests.
    #[command(subcommand)]
    Test(TestCommand),
    /// Remediation playbooks: validate files, and talk to a running daemon
    /// (list, run, approve, deny, pause, resume, show runs).
    #[command(subcommand)]
    Playbook(PlaybookCommand),
    /// Notifications: send a sample through a receiver of the config.
    #[command(subcommand)]
    Notify(NotifyCommand),
    /// Forecasts on recorded series: rolling-origin backtests.
    #[command(subcommand)]
    Forecast(ForecastCommand),
    /// Run the daemon's autoscaler over a recorded demand series in simulated
    /// time and write the replica count it asks for at every timestamp.
    ///
    /// The policy is the daemon's own code: it trains and retrains on the entry's
    /// `forecast.retrain` schedule in series time, every decision sees only the
    /// points up to its timestamp, and one decision is made per input row (the
    /// series' interval is the cycle). Output: `timestamp,desired_replicas`, plus
    /// with --details the reactive and predictive needs, the upper bound, the mode
    /// and why.
    Replay {
        /// Demand series: CSV with header `timestamp,value`, timestamps
        /// `YYYY-MM-DD HH:MM:SS` (UTC), regular interval (gaps are interpolated).
        #[arg(long)]
        input: PathBuf,
        /// One autoscale entry of the daemon config (YAML), e.g.
        /// `{name: llm, capacity_per_replica: 12, min: 1, max: 40, lead_time: 3m}`.
        #[arg(long)]
        autoscale: PathBuf,
        /// Where to write the decisions (CSV).
        #[arg(long)]
        out: PathBuf,
        /// Add columns demand, reactive, predictive, upper, mode, reason.
        #[arg(long)]
        details: bool,
    },
    /// Print version, git revision and compiler.
    Version,
    /// Hash a dashboard password (argon2id) for `web.auth.users[].password_hash`,
    /// or with --token make a new random API token and print it with the SHA-256
    /// that goes in `web.auth.tokens[].sha256`.
    ///
    /// The password is asked for without echo on a terminal, or read as the
    /// first line of standard input (`printf %s "$PW" | homeostat
    /// hash-password`), so it stays out of the shell history.
    #[command(name = "hash-password")]
    HashPassword {
        /// Make an API token instead of hashing a password.
        #[arg(long)]
        token: bool,
    },
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

#[derive(Args, Clone)]
struct ApiArgs {
    /// Base URL of the running daemon.
    #[arg(long, env = "HOMEOSTAT_URL", default_value = "http://127.0.0.1:9400")]
    url: String,
    /// Bearer token (web.admin_token of the daemon) for changes.
    #[arg(long, env = "HOMEOSTAT_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Who you are, for the audit log (default: $USER).
    #[arg(long = "as", env = "USER", default_value = "cli")]
    user: String,
}

#[derive(Subcommand)]
enum ForecastCommand {
    /// For each origin, forecast the H steps that follow it using only the points
    /// at or before it, with a 90% interval, and write
    /// `origin,step,timestamp,yhat,lo,hi`.
    ///
    /// The model (homeostat-ml: ridge per step on lags, seasonal lags at the
    /// detected periods, calendar terms; split-conformal intervals) is refitted on
    /// the history up to the origin every --refit-every origins.
    Backtest {
        /// Series: CSV with header `timestamp,value`, timestamps
        /// `YYYY-MM-DD HH:MM:SS` (UTC), regular interval (gaps are interpolated).
        #[arg(long)]
        input: PathBuf,
        /// CSV with an `origin` column of timestamps of the series (other columns
        /// are ignored).
        #[arg(long)]
        origins: PathBuf,
        /// Steps to forecast after each origin, at the series' interval.
        #[arg(long)]
        horizon: usize,
        /// Where to write the forecasts (CSV).
        #[arg(long)]
        out: PathBuf,
        /// Central coverage of the interval.
        #[arg(long, default_value_t = 0.9)]
        coverage: f64,
        /// Refit the model every N origins (1 = at every origin).
        #[arg(long, default_value_t = 1)]
        refit_every: usize,
    },
}

#[derive(Subcommand)]
enum NotifyCommand {
    /// Send a sample notification (one firing test alert) through every
    /// channel of RECEIVER in the config's `notify.receivers`, with the
    /// configured timeout and retries, and report each channel's outcome.
    /// Nothing else starts; no daemon is needed. Exit status: 0 when every
    /// channel delivered, 1 otherwise (or when the config is invalid or has
    /// no such receiver).
    Test {
        /// Name of a receiver in `notify.receivers`.
        receiver: String,
        /// Config file (default: the embedded default config).
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum PlaybookCommand {
    /// Validate playbook files: YAML, known actions and their parameters,
    /// templates, PromQL, triggers, guards. Every error is printed with file,
    /// line and field. Exit status: 0 when all are valid, 1 otherwise.
    Check {
        /// Playbook files, e.g. playbooks/*.yml
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// List the playbooks of a running daemon, with pause and breaker state.
    List(ApiArgs),
    /// Start a run by hand on a running daemon. Prints the run as JSON.
    Run {
        /// Playbook name.
        name: String,
        /// What to act on (fills $target); default: the playbook's target
        /// template rendered with --label values.
        #[arg(long)]
        target: Option<String>,
        /// A label for the templates, `name=value`; repeatable.
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// Describe and record every step without touching anything.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// List recent runs (newest first).
    Runs {
        #[arg(long)]
        playbook: Option<String>,
        /// Only runs in these states, comma-separated (e.g. awaiting_approval).
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Show one run with its steps and audit trail.
    Show {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Approve a run that is awaiting approval.
    Approve {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Deny a run that is awaiting approval.
    Deny {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Pause automatic runs of one playbook, or of all when no name is given.
    Pause {
        name: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Resume automatic runs (for one playbook this also resets its own
    /// breaker).
    Resume {
        name: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?} is not name=value"))
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
    /// Check Prometheus rule files like `promtool check rules`: YAML
    /// structure, PromQL, label and annotation templates, and the
    /// duplicate-rule lint. Errors name the file, line and column.
    ///
    /// Exit status: 0 when all files are valid (lint findings are printed
    /// but do not fail unless --lint-fatal), 1 when any file has errors, 3
    /// when only lint findings were made fatal.
    Rules(CheckRulesArgs),
}

#[derive(Args)]
struct CheckRulesArgs {
    /// Rule files to check.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Linting checks to apply: `duplicate-rules` (same name and labels
    /// twice), `all`, or `none`.
    #[arg(long, default_value = "duplicate-rules", value_parser = ["all", "duplicate-rules", "none"])]
    lint: String,
    /// Make lint findings fail with exit status 3.
    #[arg(long = "lint-fatal")]
    lint_fatal: bool,
}

#[derive(Subcommand)]
enum TestCommand {
    /// Run promtool-format rule unit tests (`rule_files`,
    /// `evaluation_interval`, `tests` with `input_series`,
    /// `alert_rule_test` and `promql_expr_test`) with homeostat's own rule
    /// evaluation. Prints `Unit Testing:  FILE` then SUCCESS or FAILED with
    /// the differences, like `promtool test rules`.
    ///
    /// Exit status: 0 when every test passed, 1 otherwise.
    Rules {
        /// Test files, e.g. rules/*.test.yml
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// Prints an error of a one-shot command and maps it to exit status 1.
fn report(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
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

fn hash_password(token: bool) -> ExitCode {
    use homeostat::web::auth;
    if token {
        let t = auth::random_hex(32);
        println!("token:  {t}");
        println!("sha256: {}", auth::token_digest(&t));
        return ExitCode::SUCCESS;
    }
    use std::io::IsTerminal;
    // On a terminal, ask without echoing; from a pipe, take the first line.
    let read = if std::io::stdin().is_terminal() {
        rpassword::prompt_password("password: ")
    } else {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    };
    let line = match read {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot read the password: {e}");
            return ExitCode::from(2);
        }
    };
    let pw = line.trim_end_matches(['\n', '\r']);
    if pw.is_empty() {
        eprintln!("error: empty password (type it on standard input)");
        return ExitCode::from(2);
    }
    match auth::hash_password(pw) {
        Ok(h) => {
            println!("{h}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot hash: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::HashPassword { token } => hash_password(token),
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
        Command::Forecast(ForecastCommand::Backtest {
            input,
            origins,
            horizon,
            out,
            coverage,
            refit_every,
        }) => report(cmd::forecast::backtest(
            &input,
            &origins,
            horizon,
            coverage,
            refit_every,
            &out,
        )),
        Command::Replay {
            input,
            autoscale,
            out,
            details,
        } => report(cmd::forecast::replay(&input, &autoscale, &out, details)),
        Command::Playbook(cmd) => playbook(cmd),
        Command::Notify(NotifyCommand::Test { receiver, config }) => {
            init_logging(&cli.log);
            notify_test(&receiver, config)
        }
        Command::Check(CheckCommand::Rules(args)) => check_rules(&args),
        Command::Test(TestCommand::Rules { files }) => test_rules(&files),
        Command::Check(CheckCommand::Config { files }) => {
            let mut failed = false;
            for f in &files {
                match Config::load_file(f) {
                    Ok(c) => {
                        // Like `promtool check config`, the rule files the
                        // config lists are checked too.
                        let rules = homeostat::rules::file::expand_globs(
                            &c.config.rule_files,
                            &c.source.base_dir(),
                        )
                        .map_err(|e| vec![e])
                        .and_then(|files| {
                            homeostat::rules::file::load_files(&files)
                                .map_err(|es| es.iter().map(ToString::to_string).collect())
                        });
                        let books = homeostat::daemon::load_playbooks(
                            &c,
                            &homeostat::act::Actions::default(),
                        );
                        match (rules, books) {
                            (Ok(groups), Ok(books)) => println!(
                                "SUCCESS: {} is valid ({} scrape job{}, {} rule group{}, {} playbook{})",
                                f.display(),
                                c.config.scrape_configs.len(),
                                plural(c.config.scrape_configs.len()),
                                groups.len(),
                                plural(groups.len()),
                                books.len(),
                                plural(books.len()),
                            ),
                            (_, Err(e)) => {
                                failed = true;
                                println!("FAILED: {}: playbook files:", f.display());
                                for line in e.lines() {
                                    println!("  {line}");
                                }
                            }
                            (Err(errs), _) => {
                                failed = true;
                                println!("FAILED: {}: rule files:", f.display());
                                for e in errs {
                                    println!("  {e}");
                                }
                            }
                        }
                    }
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

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// `promtool check rules`, output and exit codes included.
fn check_rules(args: &CheckRulesArgs) -> ExitCode {
    use homeostat::rules::file;
    let lint = args.lint != "none";
    let (mut failed, mut has_errors) = (false, false);
    for f in &args.files {
        println!("Checking {}", f.display());
        match file::parse_file(f) {
            Ok(groups) => {
                let dups = if lint {
                    file::duplicates(&groups)
                } else {
                    Vec::new()
                };
                if dups.is_empty() {
                    let n: usize = groups.iter().map(|g| g.rules.len()).sum();
                    println!("  SUCCESS: {n} rules found");
                } else {
                    failed = true;
                    eprintln!("  FAILED:");
                    let mut msg = format!("lint error {} duplicate rule(s) found.\n", dups.len());
                    for d in &dups {
                        msg.push_str(&format!("Metric: {}\nLabel(s):\n", d.metric));
                        for (k, v) in &d.labels {
                            msg.push_str(&format!("\t{k}: {v}\n"));
                        }
                    }
                    msg.push_str("Might cause inconsistency while recording expressions");
                    eprintln!("{msg}");
                }
            }
            Err(e) => {
                failed = true;
                has_errors = true;
                eprintln!("  FAILED:");
                eprintln!("{e}");
            }
        }
        println!();
    }
    if failed && has_errors {
        ExitCode::from(1)
    } else if failed && args.lint_fatal {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    }
}

/// `promtool test rules`, output and exit codes included.
fn test_rules(files: &[PathBuf]) -> ExitCode {
    let mut failed = false;
    for f in files {
        println!("Unit Testing:  {}", f.display());
        let report = homeostat::rules::unittest::run_file(f);
        if report.passed() {
            println!("  SUCCESS");
        } else {
            failed = true;
            eprintln!("  FAILED:");
            // promtool's exact split: errors on stderr, the blank line
            // after each on stdout.
            for e in &report.errors {
                eprintln!("{e}");
                println!();
            }
        }
        println!();
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
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

fn playbook(cmd: PlaybookCommand) -> ExitCode {
    use serde_json::json;
    let (api, method, path, body) = match cmd {
        PlaybookCommand::Check { files } => {
            let actions = homeostat::act::Actions::default();
            let mut failed = false;
            for f in &files {
                match homeostat::playbooks::load_file(f, &actions) {
                    Ok(p) => println!(
                        "SUCCESS: {} is valid (playbook {:?}, {} step{}, {} trigger)",
                        f.display(),
                        p.spec.name,
                        p.spec.steps.len(),
                        plural(p.spec.steps.len()),
                        p.trigger.kind()
                    ),
                    Err(e) => {
                        failed = true;
                        println!("FAILED: {e}");
                    }
                }
            }
            return if failed {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
        PlaybookCommand::List(api) => (api, "GET", "/api/v1/playbooks".to_string(), None),
        PlaybookCommand::Run {
            name,
            target,
            labels,
            dry_run,
            api,
        } => {
            let labels: serde_json::Map<String, serde_json::Value> = labels
                .into_iter()
                .map(|(k, v)| (k, serde_json::Value::String(v)))
                .collect();
            (
                api,
                "POST",
                format!("/api/v1/playbooks/{}/run", encode(&name)),
                Some(json!({ "target": target, "labels": labels, "dry_run": dry_run })),
            )
        }
        PlaybookCommand::Runs {
            playbook,
            state,
            limit,
            api,
        } => {
            let mut q = format!("/api/v1/runs?limit={limit}");
            if let Some(p) = playbook {
                q.push_str(&format!("&playbook={}", encode(&p)));
            }
            if let Some(s) = state {
                q.push_str(&format!("&state={}", encode(&s)));
            }
            (api, "GET", q, None)
        }
        PlaybookCommand::Show { id, api } => {
            (api, "GET", format!("/api/v1/runs/{}", encode(&id)), None)
        }
        PlaybookCommand::Approve { id, api } => (
            api,
            "POST",
            format!("/api/v1/runs/{}/approve", encode(&id)),
            None,
        ),
        PlaybookCommand::Deny { id, api } => (
            api,
            "POST",
            format!("/api/v1/runs/{}/deny", encode(&id)),
            None,
        ),
        PlaybookCommand::Pause { name, api } => {
            let path = match name {
                Some(n) => format!("/api/v1/playbooks/{}/pause", encode(&n)),
                None => "/api/v1/pause".into(),
            };
            (api, "POST", path, None)
        }
        PlaybookCommand::Resume { name, api } => {
            let path = match name {
                Some(n) => format!("/api/v1/playbooks/{}/resume", encode(&n)),
                None => "/api/v1/resume".into(),
            };
            (api, "POST", path, None)
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()?;
        let url = format!("{}{path}", api.url.trim_end_matches('/'));
        let mut req = if method == "POST" {
            client.post(&url).json(&body.unwrap_or(json!({})))
        } else {
            client.get(&url)
        };
        req = req.header("X-Homeostat-User", &api.user);
        if let Some(t) = &api.token {
            req = req.bearer_auth(t);
        }
        let rsp = req.send().await?;
        let status = rsp.status();
        let text = rsp.text().await?;
        Ok::<_, reqwest::Error>((status, text))
    });
    match result {
        Ok((status, text)) => {
            let pretty = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or(text);
            println!("{pretty}");
            if status.is_success() {
                ExitCode::SUCCESS
            } else {
                eprintln!("homeostat answered {status}");
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("cannot reach {}: {e}", api.url);
            ExitCode::from(2)
        }
    }
}

/// Percent-encodes a path segment or query value.
fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// `homeostat notify test RECEIVER`.
fn notify_test(receiver: &str, config: Option<PathBuf>) -> ExitCode {
    let loaded = match (homeostat::daemon::RunOptions {
        config_path: config,
        listen: None,
    })
    .load()
    {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    let cfg = &loaded.config.notify;
    let Some(rc) = cfg.receivers.iter().find(|r| r.name == receiver) else {
        let names: Vec<&str> = cfg.receivers.iter().map(|r| r.name.as_str()).collect();
        eprintln!(
            "receiver {receiver:?} is not in notify.receivers of {} (there: {})",
            loaded.source.name(),
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        );
        return ExitCode::from(1);
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let external = loaded.config.web.external_url();
    let failed = runtime.block_on(async {
        let http = match reqwest::Client::builder()
            .user_agent(concat!("homeostat/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(std::time::Duration::from_secs(5))
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!("cannot build the HTTP client: {e}");
                return 1;
            }
        };
        let notifiers = cfg.notifiers(rc, &http);
        if notifiers.is_empty() {
            eprintln!("receiver {receiver:?} has no channels");
            return 1;
        }
        let sample = homeostat::notify::channel::Notification::sample(receiver, &external);
        let mut failed = 0;
        for n in notifiers {
            let kind = n.kind();
            let ch = homeostat::notify::channel::Channel::start(
                n,
                1,
                cfg.retry.clone(),
                cfg.timeout.0,
                Default::default(),
            );
            match ch.send_now(sample.clone()).await {
                Ok(()) => println!("OK: {receiver}: {kind}: sample notification delivered"),
                Err(e) => {
                    failed += 1;
                    println!("FAILED: {receiver}: {kind}: {e}");
                }
            }
        }
        failed
    });
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
