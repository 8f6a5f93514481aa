//! Wires the stages together: load config, open state, build the store, start
//! scraping, serve HTTP; reload on request; stop in order.
//!
//! The only place that knows every stage. Stages get handles injected here and
//! never reach for each other. Start order is the data flow (state → store →
//! collect → web); stop order is its reverse, commented in [`Daemon::stop`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::act::{ActDeps, BreakerRegistry, Escalator};
use crate::collect::native::NativeSpec;
use crate::collect::{now_ms, ScrapeManager};
use crate::config::{Config, ConfigError, LoadedConfig};
use crate::notify::channel::ChannelMetrics;
use crate::notify::silence::Silences;
use crate::notify::{AlertmanagerSender, Dispatcher};
use crate::playbooks::{Playbook, PlaybookEngine};
use crate::query::Engine;
use crate::rules::file::GroupSpec;
use crate::rules::{RuleManager, RuleSettings};
use crate::state::{ReloadRecord, StateDb, StateError};
use crate::store::Store;
use crate::telemetry::Telemetry;
use crate::web::{self, AppState};

/// How `homeostat run` was asked to start.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Config file; `None` runs the embedded default.
    pub config_path: Option<PathBuf>,
    /// Overrides `web.listen_address` (and, in the embedded default, the
    /// self-scrape target).
    pub listen: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    State(#[from] StateError),
    #[error("{0}")]
    Rules(String),
    #[error("{0}")]
    Playbooks(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("HTTP server failed: {0}")]
    Serve(std::io::Error),
}

impl RunOptions {
    /// Loads the config this run uses, applying the command-line overrides.
    pub fn load(&self) -> Result<LoadedConfig, ConfigError> {
        let listen = self.listen.clone();
        let lookup = move |k: &str| match (k, &listen) {
            ("HOMEOSTAT_LISTEN", Some(l)) => Some(l.clone()),
            _ => std::env::var(k).ok(),
        };
        let mut loaded = match &self.config_path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| ConfigError {
                    file: p.display().to_string(),
                    issues: vec![crate::config::ConfigIssue {
                        path: None,
                        line: None,
                        column: None,
                        message: format!("cannot read config file: {e}"),
                    }],
                })?;
                Config::load_with_env(&text, crate::config::ConfigSource::File(p.clone()), &lookup)?
            }
            None => Config::load_with_env(
                crate::config::EMBEDDED_DEFAULT,
                crate::config::ConfigSource::Embedded,
                &lookup,
            )?,
        };
        if let Some(l) = &self.listen {
            loaded.config.web.listen_address = l.clone();
        }
        Ok(loaded)
    }
}

/// An autoscaler whose playbook is missing cannot act; say so at load, not at the
/// first scale-up.
fn warn_missing_playbooks(list: &[crate::autoscale::AutoscaleConfig], books: &PlaybookEngine) {
    for a in list {
        if books.playbook(&a.playbook).is_none() {
            tracing::error!(autoscale = %a.name, playbook = %a.playbook, "autoscale names a playbook that is not loaded; its decisions cannot be applied");
        }
    }
}

/// Reads every rule file the config lists; all errors together.
pub fn load_rules(loaded: &LoadedConfig) -> Result<Vec<GroupSpec>, String> {
    let files =
        crate::rules::file::expand_globs(&loaded.config.rule_files, &loaded.source.base_dir())?;
    crate::rules::file::load_files(&files).map_err(|errs| {
        errs.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    })
}

/// Reads every playbook file the config lists; all errors together.
pub fn load_playbooks(
    loaded: &LoadedConfig,
    actions: &crate::act::Actions,
) -> Result<Vec<Playbook>, String> {
    crate::playbooks::load_all(
        &loaded.config.playbook_files,
        &loaded.source.base_dir(),
        actions,
    )
}

/// What actions reach, from the config: collectors' servers by name, the
/// `act:` section, shared services.
fn act_deps(
    cfg: &Config,
    breakers: &BreakerRegistry,
    escalator: &Escalator,
    http: &reqwest::Client,
) -> Arc<ActDeps> {
    let mut deps = ActDeps::empty(breakers.clone(), escalator.clone());
    deps.act = cfg.act.clone();
    deps.http = http.clone();
    if let Some(a) = &cfg.collectors.azure {
        if let Some(e) = &a.management_endpoint {
            deps.azure_endpoint = e.clone();
        }
        deps.azure_authority = a.authority_host.clone();
    }
    for job in cfg.collectors.jobs(&cfg.global) {
        for t in job.targets {
            match t.spec {
                NativeSpec::Postgres(s) => {
                    deps.postgres.insert(t.instance.clone(), s.dsn.clone());
                }
                NativeSpec::Redis(s) => {
                    deps.redis.insert(t.instance.clone(), s.url.clone());
                }
                _ => {}
            }
        }
    }
    Arc::new(deps)
}

fn rule_settings(cfg: &Config, engine: &Engine) -> RuleSettings {
    RuleSettings {
        engine: engine.clone(),
        default_interval: cfg.global.evaluation_interval.0,
        external_labels: cfg
            .global
            .external_labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        external_url: cfg.web.external_url(),
        resend_delay: cfg.rules.resend_delay.0,
        evaluate_after_scrape: cfg.rules.evaluate_after_scrape,
        outage_tolerance: cfg.rules.outage_tolerance.0,
    }
}

/// A reload asked for by `trigger` (`sighup`, `api`), with where to answer.
pub type ReloadRequest = (String, oneshot::Sender<Result<(), String>>);

/// Asks the daemon to re-read its config; answers with the outcome.
#[derive(Clone)]
pub struct ReloadHandle {
    tx: mpsc::Sender<ReloadRequest>,
}

impl ReloadHandle {
    /// A handle and the receiving end the reloader (or a test) serves.
    pub fn channel() -> (ReloadHandle, mpsc::Receiver<ReloadRequest>) {
        let (tx, rx) = mpsc::channel(4);
        (ReloadHandle { tx }, rx)
    }

    pub async fn reload(&self, trigger: &str) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send((trigger.to_string(), tx))
            .await
            .map_err(|_| "daemon is shutting down".to_string())?;
        rx.await
            .map_err(|_| "daemon is shutting down".to_string())?
    }
}

/// A running daemon.
pub struct Daemon {
    pub addr: SocketAddr,
    pub store: Arc<Store>,
    pub reload: ReloadHandle,
    pub rules: RuleManager,
    shutdown: CancellationToken,
    http_stop: CancellationToken,
    tracker: TaskTracker,
    server: tokio::task::JoinHandle<Result<(), std::io::Error>>,
    state: StateDb,
}

impl Daemon {
    /// Starts every stage and returns once the HTTP server is listening.
    pub async fn start(opts: RunOptions) -> Result<Daemon, DaemonError> {
        let loaded = opts.load()?;
        let cfg = &loaded.config;
        tracing::info!(source = %loaded.source.name(), jobs = cfg.scrape_configs.len(), "config loaded");

        let groups = load_rules(&loaded).map_err(DaemonError::Rules)?;
        let state = StateDb::open(&loaded.resolve_path(&cfg.state.path)).await?;
        let store = Arc::new(Store::new(cfg.storage.store_config()));
        let mut telemetry = Telemetry::new(store.clone());
        telemetry.config.last_reload_successful.set(1);
        telemetry
            .config
            .last_reload_success_timestamp
            .set(now_ms() as f64 / 1000.0);
        record(&state, &loaded, "start", None).await;

        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let scrape = ScrapeManager::start(
            store.clone(),
            telemetry.scrape.clone(),
            tracker.clone(),
            shutdown.clone(),
        );
        scrape
            .apply(
                cfg.scrape_configs.clone(),
                cfg.collectors.jobs(&cfg.global),
                loaded.source.base_dir(),
            )
            .await;

        let retention = Arc::new(Mutex::new(cfg.storage.retention.0));
        spawn_retention(&tracker, &shutdown, store.clone(), retention.clone());

        let engine = Arc::new(RwLock::new(Engine::new(cfg.query.engine_options())));

        let sender = AlertmanagerSender::new(&mut telemetry.registry);
        sender.apply(&cfg.alerting);
        let client = reqwest::Client::builder()
            .user_agent(concat!("homeostat/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| DaemonError::Serve(std::io::Error::other(e.to_string())))?;
        tracker.spawn(sender.clone().run(client.clone(), shutdown.clone()));
        let settings = rule_settings(cfg, &engine.read());
        let rules = RuleManager::new(
            store.clone(),
            state.clone(),
            sender.clone(),
            &mut telemetry.registry,
            settings.clone(),
            tracker.clone(),
            shutdown.clone(),
        )
        .await;
        rules.watch_scrapes(scrape.subscribe());

        let breakers = BreakerRegistry::new(&mut telemetry.registry);
        breakers.apply(&cfg.breakers);
        breakers.restore(&state.load_breakers().await?);
        tracker.spawn(breakers.clone().run(state.clone(), shutdown.clone()));
        let silences = Silences::new(Some(state.clone()));
        let restored = silences.restore().await?;
        let dispatcher =
            Dispatcher::new(silences, ChannelMetrics::register(&mut telemetry.registry));
        dispatcher.apply(&cfg.notify, &cfg.web.external_url(), &client);
        tracing::info!(
            silences = restored,
            receivers = cfg.notify.receivers.len(),
            "notify router ready"
        );
        tracker.spawn(dispatcher.clone().run(shutdown.clone()));
        sender.route_locally(dispatcher.clone());
        let escalator = Escalator::new(
            &mut telemetry.registry,
            Some(sender.clone()),
            Some(dispatcher.clone()),
        );
        escalator.apply(
            &cfg.playbooks.escalation,
            &cfg.web.external_url(),
            cfg.playbooks.notify_lifecycle,
        );
        let deps = act_deps(cfg, &breakers, &escalator, &client);
        let playbooks = PlaybookEngine::new(
            state.clone(),
            store.clone(),
            engine.clone(),
            deps.clone(),
            &mut telemetry.registry,
            tracker.clone(),
            shutdown.clone(),
        );
        let books = load_playbooks(&loaded, playbooks.actions()).map_err(DaemonError::Playbooks)?;
        tracing::info!(playbooks = books.len(), "playbooks loaded");
        playbooks.apply(
            books,
            cfg.playbooks.clone(),
            deps,
            cfg.global.evaluation_interval.0,
        );
        playbooks.recover().await?;
        // Subscribed before the first evaluation, so no firing is missed.
        tracker.spawn(playbooks.clone().watch_alerts(rules.subscribe()));
        rules.apply(groups, settings).await;
        let remote: crate::forecast::remote::SharedRemote = Arc::new(parking_lot::RwLock::new(
            crate::forecast::remote::RemoteHistory::from_config(&cfg.history, &client),
        ));
        let history = crate::forecast::history::Sources {
            db: state.clone(),
            store: store.clone(),
            engine: engine.clone(),
            remote: remote.clone(),
        };
        let forecasts = crate::forecast::Forecasts::new(
            &mut telemetry.registry,
            history.clone(),
            tracker.clone(),
            shutdown.clone(),
        );
        forecasts.apply(&cfg.forecasts);
        let autoscalers = crate::autoscale::runner::Autoscalers::new(
            &mut telemetry.registry,
            crate::autoscale::runner::Deps {
                history,
                playbooks: playbooks.clone(),
                tracker: tracker.clone(),
                shutdown: shutdown.clone(),
            },
        );
        warn_missing_playbooks(&cfg.autoscale, &playbooks);
        autoscalers.apply(&cfg.autoscale);
        let hooks =
            web::hooks::Hooks::new(cfg.hooks.clone(), &mut telemetry.registry, client.clone());
        let telemetry = Arc::new(telemetry);
        let (reload, reload_rx) = ReloadHandle::channel();
        let ready = Arc::new(AtomicBool::new(false));
        let auth = web::auth::Auth::new(cfg.web.admin_token.clone(), cfg.web.auth.clone());
        let app = web::router(
            AppState {
                store: store.clone(),
                engine: engine.clone(),
                targets: scrape.registry.clone(),
                rules: rules.clone(),
                telemetry: telemetry.clone(),
                reload: reload.clone(),
                ready: ready.clone(),
                playbooks: playbooks.clone(),
                breakers: breakers.clone(),
                auth: auth.clone(),
                forecasts: Some(forecasts.clone()),
                autoscalers: Some(autoscalers.clone()),
                dispatcher: dispatcher.clone(),
                hooks: hooks.clone(),
            },
            &cfg.web,
        );
        let listener = tokio::net::TcpListener::bind(&cfg.web.listen_address)
            .await
            .map_err(|source| DaemonError::Listen {
                addr: cfg.web.listen_address.clone(),
                source,
            })?;
        let addr = listener.local_addr().map_err(DaemonError::Serve)?;
        let http_stop = CancellationToken::new();
        let stop = http_stop.clone();
        let server = tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
        });

        let reloader = Reloader {
            opts,
            current: loaded,
            scrape,
            state: state.clone(),
            telemetry,
            retention,
            store: store.clone(),
            engine,
            rules: rules.clone(),
            sender,
            playbooks: playbooks.clone(),
            breakers,
            escalator,
            dispatcher,
            client: client.clone(),
            hooks,
            forecasts,
            autoscalers,
            auth,
            remote,
        };
        tracker.spawn(reloader.run(reload_rx, shutdown.clone()));

        ready.store(true, Ordering::Release);
        tracing::info!(%addr, "homeostat is ready");
        Ok(Daemon {
            addr,
            store,
            reload,
            rules,
            shutdown,
            http_stop,
            tracker,
            server,
            state,
        })
    }

    /// Stops in reverse data-flow order.
    pub async fn stop(self) -> Result<(), DaemonError> {
        // 1. Stop taking requests; in-flight ones finish (bounded by the
        //    request timeout layer).
        self.http_stop.cancel();
        let served = self.server.await;
        // 2. Stop scrape loops, discovery and the reloader; wait for them so
        //    no stage writes after the state database closes.
        self.shutdown.cancel();
        self.tracker.close();
        self.tracker.wait().await;
        // 3. Close the state database last: every stage above may write to it.
        self.state.close().await;
        match served {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(DaemonError::Serve(e)),
            Err(e) => Err(DaemonError::Serve(std::io::Error::other(e.to_string()))),
        }
    }
}

/// Runs until SIGTERM or Ctrl-C; SIGHUP reloads the config.
pub async fn run(opts: RunOptions) -> Result<(), DaemonError> {
    let daemon = Daemon::start(opts).await?;
    let reload = daemon.reload.clone();
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(DaemonError::Serve)?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(DaemonError::Serve)?;
    loop {
        tokio::select! {
            _ = hup.recv() => {
                // The outcome is logged and exported by the reloader.
                let _ = reload.reload("sighup").await;
            }
            _ = term.recv() => { tracing::info!("received SIGTERM, shutting down"); break; }
            _ = tokio::signal::ctrl_c() => { tracing::info!("received interrupt, shutting down"); break; }
        }
    }
    daemon.stop().await?;
    tracing::info!("stopped cleanly");
    Ok(())
}

async fn record(state: &StateDb, loaded: &LoadedConfig, trigger: &str, error: Option<String>) {
    let rec = ReloadRecord {
        at_ms: now_ms(),
        source: loaded.source.name(),
        trigger: trigger.to_string(),
        success: error.is_none(),
        error,
    };
    if let Err(e) = state.record_reload(&rec).await {
        tracing::warn!(error = %e, "cannot record config load in the state database");
    }
}

fn spawn_retention(
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
    store: Arc<Store>,
    retention: Arc<Mutex<Duration>>,
) {
    let stop = shutdown.clone();
    tracker.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            let keep = *retention.lock();
            let mint = now_ms() - keep.as_millis() as i64;
            let s = store.clone();
            let stats = tokio::task::spawn_blocking(move || s.truncate_before(mint)).await;
            if let Ok(st) = stats {
                tracing::debug!(?st, "retention pass");
            }
        }
    });
}

/// Owns the current config and applies new ones; one reload at a time.
struct Reloader {
    opts: RunOptions,
    current: LoadedConfig,
    scrape: ScrapeManager,
    state: StateDb,
    telemetry: Arc<Telemetry>,
    retention: Arc<Mutex<Duration>>,
    store: Arc<Store>,
    engine: Arc<RwLock<Engine>>,
    rules: RuleManager,
    sender: AlertmanagerSender,
    playbooks: PlaybookEngine,
    breakers: BreakerRegistry,
    escalator: Escalator,
    dispatcher: Dispatcher,
    client: reqwest::Client,
    hooks: web::hooks::Hooks,
    forecasts: crate::forecast::Forecasts,
    autoscalers: crate::autoscale::runner::Autoscalers,
    auth: web::auth::Auth,
    remote: crate::forecast::remote::SharedRemote,
}

impl Reloader {
    async fn run(mut self, mut rx: mpsc::Receiver<ReloadRequest>, stop: CancellationToken) {
        loop {
            let (trigger, reply) = tokio::select! {
                _ = stop.cancelled() => break,
                r = rx.recv() => match r { Some(r) => r, None => break },
            };
            let result = self.reload(&trigger).await;
            let _ = reply.send(result);
        }
    }

    async fn reload(&mut self, trigger: &str) -> Result<(), String> {
        let loaded = self
            .opts
            .load()
            .map_err(|e| e.to_string())
            .and_then(|l| load_rules(&l).map(|g| (l, g)))
            .and_then(|(l, g)| load_playbooks(&l, self.playbooks.actions()).map(|p| (l, g, p)));
        let (loaded, groups, books) = match loaded {
            Ok(l) => l,
            Err(e) => {
                // Keep running on the old config; say so everywhere an
                // engineer might look.
                self.telemetry.config.last_reload_successful.set(0);
                tracing::error!(trigger, error = %e, "config reload failed; keeping the running config and rules");
                let msg = e;
                record(&self.state, &self.current, trigger, Some(msg.clone())).await;
                return Err(msg);
            }
        };
        let (old, new) = (&self.current.config, &loaded.config);
        // Credentials (admin_token, auth) apply now; the listener and limits
        // are fixed at start.
        let strip = |w: &web::WebConfig| web::WebConfig {
            admin_token: None,
            auth: Default::default(),
            ..w.clone()
        };
        if strip(&old.web) != strip(&new.web) {
            tracing::warn!("web settings changed; the listener, limits and external_url take effect after a restart (credentials apply now)");
        }
        if old.state != new.state {
            tracing::warn!("state settings changed; they take effect after a restart");
        }
        *self.retention.lock() = new.storage.retention.0;
        self.store.set_max_series(new.storage.max_series);
        if old.query != new.query {
            *self.engine.write() = Engine::new(new.query.engine_options());
        }
        self.scrape
            .apply(
                new.scrape_configs.clone(),
                new.collectors.jobs(&new.global),
                loaded.source.base_dir(),
            )
            .await;
        self.sender.apply(&new.alerting);
        let settings = {
            let engine = self.engine.read();
            rule_settings(new, &engine)
        };
        self.rules.apply(groups, settings).await;
        self.breakers.apply(&new.breakers);
        self.escalator.apply(
            &new.playbooks.escalation,
            &new.web.external_url(),
            new.playbooks.notify_lifecycle,
        );
        if old.notify != new.notify {
            self.dispatcher
                .apply(&new.notify, &new.web.external_url(), &self.client);
        }
        self.hooks.apply(&new.hooks);
        self.auth.apply(new.web.admin_token.clone(), &new.web.auth);
        let deps = act_deps(new, &self.breakers, &self.escalator, &self.client);
        self.playbooks.apply(
            books,
            new.playbooks.clone(),
            deps,
            new.global.evaluation_interval.0,
        );
        if old.history != new.history {
            *self.remote.write() =
                crate::forecast::remote::RemoteHistory::from_config(&new.history, &self.client);
        }
        self.forecasts.apply(&new.forecasts);
        warn_missing_playbooks(&new.autoscale, &self.playbooks);
        self.autoscalers.apply(&new.autoscale);
        self.current = loaded;
        self.telemetry.config.last_reload_successful.set(1);
        self.telemetry
            .config
            .last_reload_success_timestamp
            .set(now_ms() as f64 / 1000.0);
        record(&self.state, &self.current, trigger, None).await;
        tracing::info!(trigger, "config reloaded");
        Ok(())
    }
}
