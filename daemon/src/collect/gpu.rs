//! The GPU collector: runs [`nvml_read`](super::nvml_read) on a thread of its
//! own and hands each round's samples to the scrape loop.
//!
//! Owns the NVML handle's lifetime and the thread it lives on. NVML calls
//! block, and a wedged driver can block for seconds, so they never run on the
//! async threads: the loop's timeout abandons a slow round, and while the
//! thread is still stuck, later rounds fail at once ("still waiting for the
//! driver") instead of queueing behind it. No GPU or no driver is `up 0` with
//! the reason; the scrape loop logs it once. Never touches the store.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, LazyLock};

use nvml_wrapper::Nvml;

use super::native::{NativeSpec, NativeTarget};
use super::nvml_read::{self, GpuSample, XidTracker};
use super::{CollectError, Collector, ScrapeBatch};

/// What `collectors.gpu` resolves to.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GpuConfig {
    /// `libnvidia-ml.so` to load; `None`: the system's `libnvidia-ml.so.1`.
    pub library_path: Option<PathBuf>,
}

impl GpuConfig {
    pub(crate) fn target(&self) -> NativeTarget {
        let lib = self
            .library_path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "libnvidia-ml.so.1".into());
        NativeTarget {
            instance: "localhost".into(),
            display: format!("nvml://{lib}"),
            labels: Default::default(),
            spec: NativeSpec::Gpu(self.clone()),
        }
    }
}

/// Metric families, from the NVML mapping table: (name, type, help).
pub static FAMILIES: LazyLock<Vec<(&'static str, &'static str, &'static str)>> =
    LazyLock::new(|| {
        nvml_read::MAPPING
            .iter()
            .map(|(name, unit, call)| {
                let counter = name.ends_with("_total")
                    || name.contains("_ECC_")
                    || name.ends_with("ENERGY_CONSUMPTION");
                // Built once per process for the metadata table.
                let help: &'static str =
                    Box::leak(format!("{unit}, from {call}.").into_boxed_str());
                (*name, if counter { "counter" } else { "gauge" }, help)
            })
            .collect()
    });

type Reply = Result<(Vec<GpuSample>, Vec<String>), String>;

/// Talks to the NVML thread.
pub struct GpuCollector {
    config: GpuConfig,
    requests: Option<mpsc::Sender<tokio::sync::oneshot::Sender<Reply>>>,
    busy: Arc<AtomicBool>,
}

impl GpuCollector {
    pub fn new(config: GpuConfig) -> Self {
        GpuCollector {
            config,
            requests: None,
            busy: Arc::new(AtomicBool::new(false)),
        }
    }

    fn start_thread(&mut self) -> Result<(), CollectError> {
        let (tx, rx) = mpsc::channel::<tokio::sync::oneshot::Sender<Reply>>();
        let lib = self.config.library_path.clone();
        let busy = self.busy.clone();
        std::thread::Builder::new()
            .name("homeostat-nvml".into())
            .spawn(move || nvml_thread(lib, rx, busy))
            .map_err(|e| CollectError::Other(format!("cannot start the NVML thread: {e}")))?;
        self.requests = Some(tx);
        Ok(())
    }
}

/// Initialises NVML (retried each round until it works: a driver may be
/// installed or loaded after homeostat starts), then answers one request per
/// round. Ends when the collector is dropped.
fn nvml_thread(
    lib: Option<PathBuf>,
    rx: mpsc::Receiver<tokio::sync::oneshot::Sender<Reply>>,
    busy: Arc<AtomicBool>,
) {
    let init = || {
        let mut b = Nvml::builder();
        if let Some(p) = &lib {
            b.lib_path(p.as_os_str());
        }
        b.init()
            .map_err(|e| describe_init_error(&e, lib.as_deref()))
    };
    while let Ok(reply) = rx.recv() {
        match init() {
            Ok(nvml) => {
                let mut xid = XidTracker::new(&nvml);
                let _ = reply.send(read(&nvml, &mut xid));
                busy.store(false, Ordering::Release);
                serve(&nvml, &mut xid, &rx, &busy);
                return;
            }
            Err(e) => {
                let _ = reply.send(Err(e));
                busy.store(false, Ordering::Release);
            }
        }
    }
}

fn serve(
    nvml: &Nvml,
    xid: &mut XidTracker<'_>,
    rx: &mpsc::Receiver<tokio::sync::oneshot::Sender<Reply>>,
    busy: &AtomicBool,
) {
    while let Ok(reply) = rx.recv() {
        let _ = reply.send(read(nvml, xid));
        busy.store(false, Ordering::Release);
    }
}

fn read(nvml: &Nvml, xid: &mut XidTracker<'_>) -> Reply {
    let mut samples = Vec::new();
    let mut warnings = Vec::new();
    nvml_read::read_all(nvml, xid, &mut samples, &mut warnings)
        .map_err(|e| format!("NVML cannot count devices: {e}"))?;
    Ok((samples, warnings))
}

/// The reason an on-call engineer reads in the target list.
fn describe_init_error(
    e: &nvml_wrapper::error::NvmlError,
    lib: Option<&std::path::Path>,
) -> String {
    use nvml_wrapper::error::NvmlError;
    match e {
        NvmlError::LibloadingError(_) => format!(
            "no NVIDIA driver: cannot load {} ({e})",
            lib.map(|p| p.display().to_string())
                .unwrap_or_else(|| "libnvidia-ml.so.1".into())
        ),
        NvmlError::DriverNotLoaded => {
            "NVIDIA driver is not loaded (NVML_ERROR_DRIVER_NOT_LOADED)".into()
        }
        NvmlError::NoPermission => {
            "no permission to talk to the NVIDIA driver (NVML_ERROR_NO_PERMISSION)".into()
        }
        other => format!("NVML initialisation failed: {other}"),
    }
}

impl Collector for GpuCollector {
    async fn collect(&mut self, out: &mut ScrapeBatch<'_>) -> Result<(), CollectError> {
        if self.requests.is_none() {
            self.start_thread()?;
        }
        if self.busy.swap(true, Ordering::AcqRel) {
            return Err(CollectError::Other(
                "still waiting for the NVIDIA driver to answer the previous round".into(),
            ));
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sent = self
            .requests
            .as_ref()
            .map(|r| r.send(tx).is_ok())
            .unwrap_or(false);
        if !sent {
            self.busy.store(false, Ordering::Release);
            self.requests = None;
            return Err(CollectError::Other("the NVML thread has stopped".into()));
        }
        let (samples, warnings) = rx
            .await
            .map_err(|_| CollectError::Other("the NVML thread has stopped".into()))?
            .map_err(CollectError::Other)?;
        for s in &samples {
            let l: Vec<(&str, &str)> = s.labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
            out.add(s.name, &l, s.value)?;
        }
        if !warnings.is_empty() {
            out.warn(warnings.join("; "));
        }
        Ok(())
    }
}
