//! NVML reading: turns NVML device queries into samples named as NVIDIA's
//! DCGM exporter names them (`DCGM_FI_DEV_GPU_UTIL`, `DCGM_FI_DEV_FB_USED`, …),
//! plus a few `homeostat_gpu_*` series that dcgm-exporter has no name for.
//!
//! This module owns only the translation: which NVML call feeds which metric,
//! in which unit, with which labels ([`MAPPING`] is the table), and which
//! errors are "this device can't do that" (skipped silently) versus real
//! faults (reported as warnings). It must not touch the store, know
//! homeostat's types, or do async. Every NVML call blocks, and a wedged driver
//! can block for seconds, so the caller runs [`read_all`] on a thread of its
//! own that owns the [`Nvml`] handle and bounds each round with its own
//! timeout.
//!
//! Labels of every per-device series, in this order: `gpu` (the NVML index),
//! `UUID`, `modelName`, `pci_bus_id` (NVML's `busId`, e.g.
//! `00000000:17:00.0`). Some series add one more label (`reason`, `xid`,
//! `pid`, `GPU_I_ID`, `GPU_I_PROFILE`). `homeostat_gpu_info` has no device
//! labels.
//!
//! Errors, per field: [`NvmlError::NotSupported`], [`NvmlError::FunctionNotFound`]
//! and [`NvmlError::FailedToLoadSymbol`] (an older driver without that entry
//! point) mean "not available here" and drop the field without a word. Any
//! other error drops the field and adds a warning `"gpu 0: temperature: <err>"`.
//! [`NvmlError::GpuLost`] is reported once and ends that device's round. A
//! device that cannot be opened, or whose UUID cannot be read, is one warning
//! and no samples. Only a failing device count makes [`read_all`] fail.
//!
//! XID errors are events, not readings: [`XidTracker`] keeps one NVML event
//! set per GPU registered for critical XID errors, and [`read_all`] drains it
//! (0 ms wait) at the start of each round, so it takes the tracker as an
//! argument rather than the tracker producing samples on its own.
//!
//! MIG: when a GPU's current MIG mode is enabled, each populated MIG device
//! adds the per-instance readings NVML answers on a MIG handle — framebuffer
//! (`DCGM_FI_DEV_FB_*`) and, where the driver reports it, utilization — with
//! the parent's labels plus `GPU_I_ID` and `GPU_I_PROFILE` (`3g.40gb`, the
//! suffix NVML puts after `MIG` in the MIG device's name), as dcgm-exporter
//! labels MIG series. Processes are labelled with the GPU instance NVML
//! reports for them. Properties of the whole board (temperature, power,
//! clocks, fans, PCIe, ECC, throttling, energy, retired pages) stay on the
//! parent's series only, so `sum(DCGM_FI_DEV_POWER_USAGE)` counts a board
//! once.

use std::collections::BTreeMap;
use std::os::raw::c_uint;

use nvml_wrapper::bitmasks::device::ThrottleReasons;
use nvml_wrapper::bitmasks::event::EventTypes;
use nvml_wrapper::enum_wrappers::device::{
    Clock, EccCounter, MemoryError, PcieUtilCounter, RetirementCause, TemperatureSensor,
};
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::enums::event::XidError;
use nvml_wrapper::error::{nvml_sym, nvml_try, NvmlError};
use nvml_wrapper::{Device, EventSet, Nvml};

/// One sample: a metric name, its labels in exposition order, and the value.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuSample {
    pub name: &'static str,
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

/// Metric names, as constants so that code, [`MAPPING`] and tests agree.
pub mod metric {
    pub const GPU_UTIL: &str = "DCGM_FI_DEV_GPU_UTIL";
    pub const MEM_COPY_UTIL: &str = "DCGM_FI_DEV_MEM_COPY_UTIL";
    pub const FB_USED: &str = "DCGM_FI_DEV_FB_USED";
    pub const FB_FREE: &str = "DCGM_FI_DEV_FB_FREE";
    pub const FB_RESERVED: &str = "DCGM_FI_DEV_FB_RESERVED";
    pub const FB_TOTAL: &str = "DCGM_FI_DEV_FB_TOTAL";
    pub const GPU_TEMP: &str = "DCGM_FI_DEV_GPU_TEMP";
    pub const POWER_USAGE: &str = "DCGM_FI_DEV_POWER_USAGE";
    pub const POWER_MGMT_LIMIT: &str = "DCGM_FI_DEV_POWER_MGMT_LIMIT";
    pub const SM_CLOCK: &str = "DCGM_FI_DEV_SM_CLOCK";
    pub const MEM_CLOCK: &str = "DCGM_FI_DEV_MEM_CLOCK";
    pub const FAN_SPEED: &str = "DCGM_FI_DEV_FAN_SPEED";
    pub const PCIE_TX: &str = "DCGM_FI_DEV_PCIE_TX_THROUGHPUT";
    pub const PCIE_RX: &str = "DCGM_FI_DEV_PCIE_RX_THROUGHPUT";
    pub const ECC_SBE_VOL: &str = "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL";
    pub const ECC_DBE_VOL: &str = "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL";
    pub const ECC_SBE_AGG: &str = "DCGM_FI_DEV_ECC_SBE_AGG_TOTAL";
    pub const ECC_DBE_AGG: &str = "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL";
    pub const THROTTLE_REASONS: &str = "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS";
    pub const THROTTLE_ACTIVE: &str = "homeostat_gpu_throttle_active";
    pub const XID_LAST: &str = "DCGM_FI_DEV_XID_ERRORS";
    pub const XID_TOTAL: &str = "homeostat_gpu_xid_errors_total";
    pub const RETIRED_SBE: &str = "DCGM_FI_DEV_RETIRED_SBE";
    pub const RETIRED_DBE: &str = "DCGM_FI_DEV_RETIRED_DBE";
    pub const RETIRED_PENDING: &str = "DCGM_FI_DEV_RETIRED_PENDING";
    pub const ENERGY: &str = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION";
    pub const PROCESS_MEMORY: &str = "homeostat_gpu_process_used_memory_bytes";
    pub const INFO: &str = "homeostat_gpu_info";
}

use metric::*;

/// What each metric is made of: (metric name, unit, NVML call), one row per
/// name. Per-device series come first, in the order [`read_all`] emits them.
/// MIG devices reuse the `DCGM_FI_DEV_FB_*` and utilization rows, read from
/// the MIG handle (`nvmlDeviceGetMigDeviceHandleByIndex`,
/// `nvmlDeviceGetGpuInstanceId`, `nvmlDeviceGetName` for the profile).
#[rustfmt::skip]
pub const MAPPING: &[(&str, &str, &str)] = &[
    (GPU_UTIL, "%", "nvmlDeviceGetUtilizationRates .gpu"),
    (MEM_COPY_UTIL, "%", "nvmlDeviceGetUtilizationRates .memory"),
    (FB_USED, "MiB", "nvmlDeviceGetMemoryInfo_v2 .used"),
    (FB_FREE, "MiB", "nvmlDeviceGetMemoryInfo_v2 .free"),
    (FB_RESERVED, "MiB", "nvmlDeviceGetMemoryInfo_v2 .reserved"),
    (FB_TOTAL, "MiB", "nvmlDeviceGetMemoryInfo_v2 .total"),
    (GPU_TEMP, "C", "nvmlDeviceGetTemperature(NVML_TEMPERATURE_GPU)"),
    (POWER_USAGE, "W", "nvmlDeviceGetPowerUsage (mW / 1000)"),
    (POWER_MGMT_LIMIT, "W", "nvmlDeviceGetPowerManagementLimit (mW / 1000)"),
    (SM_CLOCK, "MHz", "nvmlDeviceGetClockInfo(NVML_CLOCK_SM)"),
    (MEM_CLOCK, "MHz", "nvmlDeviceGetClockInfo(NVML_CLOCK_MEM)"),
    (FAN_SPEED, "%", "nvmlDeviceGetNumFans > 0, then nvmlDeviceGetFanSpeed_v2(fan 0)"),
    (PCIE_TX, "KB/s", "nvmlDeviceGetPcieThroughput(NVML_PCIE_UTIL_TX_BYTES)"),
    (PCIE_RX, "KB/s", "nvmlDeviceGetPcieThroughput(NVML_PCIE_UTIL_RX_BYTES)"),
    (ECC_SBE_VOL, "errors", "nvmlDeviceGetTotalEccErrors(CORRECTED, VOLATILE)"),
    (ECC_DBE_VOL, "errors", "nvmlDeviceGetTotalEccErrors(UNCORRECTED, VOLATILE)"),
    (ECC_SBE_AGG, "errors", "nvmlDeviceGetTotalEccErrors(CORRECTED, AGGREGATE)"),
    (ECC_DBE_AGG, "errors", "nvmlDeviceGetTotalEccErrors(UNCORRECTED, AGGREGATE)"),
    (THROTTLE_REASONS, "bitmask", "nvmlDeviceGetCurrentClocksThrottleReasons"),
    (THROTTLE_ACTIVE, "0/1, label reason", "nvmlDeviceGetCurrentClocksThrottleReasons bit"),
    (RETIRED_SBE, "pages", "nvmlDeviceGetRetiredPages(_v2)(MULTIPLE_SINGLE_BIT_ECC_ERRORS) count"),
    (RETIRED_DBE, "pages", "nvmlDeviceGetRetiredPages(_v2)(DOUBLE_BIT_ECC_ERROR) count"),
    (RETIRED_PENDING, "0/1", "nvmlDeviceGetRetiredPagesPendingStatus"),
    (ENERGY, "mJ", "nvmlDeviceGetTotalEnergyConsumption"),
    (PROCESS_MEMORY, "bytes, label pid", "nvmlDeviceGet{Compute,Graphics}RunningProcesses_v3 .usedGpuMemory"),
    (XID_LAST, "xid (0 = none)", "nvmlEventSetWait_v2 XID event data, last per GPU"),
    (XID_TOTAL, "events, label xid", "nvmlEventSetWait_v2 XID events, counted since start"),
    (INFO, "1, labels driver_version, cuda_driver_version", "nvmlSystemGetDriverVersion, nvmlSystemGetCudaDriverVersion_v2"),
];

/// The named throttle reasons behind `homeostat_gpu_throttle_active{reason}`.
const THROTTLE_NAMES: &[(&str, ThrottleReasons)] = &[
    ("hw_slowdown", ThrottleReasons::HW_SLOWDOWN),
    ("sw_thermal", ThrottleReasons::SW_THERMAL_SLOWDOWN),
    ("hw_thermal", ThrottleReasons::HW_THERMAL_SLOWDOWN),
    ("hw_power_brake", ThrottleReasons::HW_POWER_BRAKE_SLOWDOWN),
    ("sw_power_cap", ThrottleReasons::SW_POWER_CAP),
    ("sync_boost", ThrottleReasons::SYNC_BOOST),
    ("gpu_idle", ThrottleReasons::GPU_IDLE),
    (
        "applications_clocks_setting",
        ThrottleReasons::APPLICATIONS_CLOCKS_SETTING,
    ),
    (
        "display_clocks_setting",
        ThrottleReasons::DISPLAY_CLOCK_SETTING,
    ),
];

/// `nvmlEventData_t.eventData` 999 ("unknown XID") is counted under this code.
const XID_UNKNOWN: u64 = 999;

/// Upper bound on events drained from one GPU's set per poll, so a storm of
/// XIDs cannot keep a round busy forever.
const MAX_EVENTS_PER_POLL: usize = 1024;

/// Errors that mean "this device, driver or product can't report that".
fn is_unsupported(e: &NvmlError) -> bool {
    matches!(
        e,
        NvmlError::NotSupported | NvmlError::FunctionNotFound | NvmlError::FailedToLoadSymbol(_)
    )
}

/// Reads every device into `out` (see the module doc for names, labels and
/// the skip-versus-warn rule). Drains `xid` first, so its counts are current.
/// `xid` must come from the same `nvml`.
///
/// Returns `Err` only when the device count itself cannot be read; then
/// nothing is appended.
pub fn read_all(
    nvml: &Nvml,
    xid: &mut XidTracker<'_>,
    out: &mut Vec<GpuSample>,
    warnings: &mut Vec<String>,
) -> Result<(), NvmlError> {
    debug_assert!(std::ptr::eq(nvml, xid.nvml), "XidTracker from another Nvml");
    let count = nvml.device_count()?;
    read_info(nvml, out, warnings);
    xid.poll(warnings);
    for index in 0..count {
        read_device(nvml, index, xid, out, warnings);
    }
    Ok(())
}

/// `homeostat_gpu_info{driver_version, cuda_driver_version} 1`, once.
fn read_info(nvml: &Nvml, out: &mut Vec<GpuSample>, warnings: &mut Vec<String>) {
    let driver = match nvml.sys_driver_version() {
        Ok(v) => v,
        Err(e) => {
            if !is_unsupported(&e) {
                warnings.push(format!("nvml: driver version: {e}"));
            }
            return;
        }
    };
    let mut labels = vec![("driver_version", driver)];
    match nvml.sys_cuda_driver_version() {
        Ok(v) => labels.push((
            "cuda_driver_version",
            format!(
                "{}.{}",
                nvml_wrapper::cuda_driver_version_major(v),
                nvml_wrapper::cuda_driver_version_minor(v)
            ),
        )),
        Err(e) if is_unsupported(&e) => {}
        Err(e) => warnings.push(format!("nvml: cuda driver version: {e}")),
    }
    out.push(GpuSample {
        name: INFO,
        labels,
        value: 1.0,
    });
}

/// One device's series; state for the skip-versus-warn rule.
struct DeviceReader<'a> {
    gpu: u32,
    labels: Vec<(&'static str, String)>,
    out: &'a mut Vec<GpuSample>,
    warnings: &'a mut Vec<String>,
    /// Set by the first `GpuLost`: later queries of this round are not made.
    lost: bool,
}

impl DeviceReader<'_> {
    /// Runs one query, unless the device was found lost this round, and sorts
    /// its error: unsupported is `None` silently, anything else `None` plus a
    /// warning naming `what`.
    fn get<T>(&mut self, what: &str, query: impl FnOnce() -> Result<T, NvmlError>) -> Option<T> {
        if self.lost {
            return None;
        }
        match query() {
            Ok(v) => Some(v),
            Err(e) if is_unsupported(&e) => None,
            Err(e) => {
                self.lost = matches!(e, NvmlError::GpuLost);
                self.warnings.push(format!("gpu {}: {what}: {e}", self.gpu));
                None
            }
        }
    }

    fn push(&mut self, name: &'static str, value: f64) {
        self.push_with(name, Vec::new(), value);
    }

    fn push_with(&mut self, name: &'static str, extra: Vec<(&'static str, String)>, value: f64) {
        let mut labels = Vec::with_capacity(self.labels.len() + extra.len());
        labels.extend(self.labels.iter().cloned());
        labels.extend(extra);
        self.out.push(GpuSample {
            name,
            labels,
            value,
        });
    }
}

/// Bytes to whole MiB, as DCGM reports framebuffer sizes.
fn mib(bytes: u64) -> f64 {
    (bytes >> 20) as f64
}

fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

fn read_device(
    nvml: &Nvml,
    index: u32,
    xid: &XidTracker<'_>,
    out: &mut Vec<GpuSample>,
    warnings: &mut Vec<String>,
) {
    let device = match nvml.device_by_index(index) {
        Ok(d) => d,
        Err(e) => {
            warnings.push(format!("gpu {index}: open: {e}"));
            return;
        }
    };
    // The UUID is the series' identity: without it there is nothing to label.
    let uuid = match device.uuid() {
        Ok(u) => u,
        Err(e) => {
            warnings.push(format!("gpu {index}: uuid: {e}"));
            return;
        }
    };
    let mut r = DeviceReader {
        gpu: index,
        labels: vec![("gpu", index.to_string()), ("UUID", uuid)],
        out,
        warnings,
        lost: false,
    };
    let model = r.get("name", || device.name()).unwrap_or_default();
    let bus_id = r
        .get("pci info", || device.pci_info())
        .map(|p| p.bus_id)
        .unwrap_or_default();
    r.labels.push(("modelName", model));
    r.labels.push(("pci_bus_id", bus_id));

    if let Some(u) = r.get("utilization", || device.utilization_rates()) {
        r.push(GPU_UTIL, u.gpu.into());
        r.push(MEM_COPY_UTIL, u.memory.into());
    }
    if let Some(m) = r.get("memory", || device.memory_info()) {
        r.push(FB_USED, mib(m.used));
        r.push(FB_FREE, mib(m.free));
        r.push(FB_RESERVED, mib(m.reserved));
        r.push(FB_TOTAL, mib(m.total));
    }
    if let Some(t) = r.get("temperature", || device.temperature(TemperatureSensor::Gpu)) {
        r.push(GPU_TEMP, t.into());
    }
    if let Some(mw) = r.get("power usage", || device.power_usage()) {
        r.push(POWER_USAGE, f64::from(mw) / 1000.0);
    }
    if let Some(mw) = r.get("power limit", || device.power_management_limit()) {
        r.push(POWER_MGMT_LIMIT, f64::from(mw) / 1000.0);
    }
    if let Some(c) = r.get("sm clock", || device.clock_info(Clock::SM)) {
        r.push(SM_CLOCK, c.into());
    }
    if let Some(c) = r.get("memory clock", || device.clock_info(Clock::Memory)) {
        r.push(MEM_CLOCK, c.into());
    }
    if r.get("fan count", || device.num_fans()).unwrap_or(0) > 0 {
        if let Some(s) = r.get("fan speed", || device.fan_speed(0)) {
            r.push(FAN_SPEED, s.into());
        }
    }
    if let Some(kb) = r.get("pcie tx", || device.pcie_throughput(PcieUtilCounter::Send)) {
        r.push(PCIE_TX, kb.into());
    }
    if let Some(kb) = r.get("pcie rx", || {
        device.pcie_throughput(PcieUtilCounter::Receive)
    }) {
        r.push(PCIE_RX, kb.into());
    }
    for (name, what, kind, counter) in [
        (
            ECC_SBE_VOL,
            "ecc sbe volatile",
            MemoryError::Corrected,
            EccCounter::Volatile,
        ),
        (
            ECC_DBE_VOL,
            "ecc dbe volatile",
            MemoryError::Uncorrected,
            EccCounter::Volatile,
        ),
        (
            ECC_SBE_AGG,
            "ecc sbe aggregate",
            MemoryError::Corrected,
            EccCounter::Aggregate,
        ),
        (
            ECC_DBE_AGG,
            "ecc dbe aggregate",
            MemoryError::Uncorrected,
            EccCounter::Aggregate,
        ),
    ] {
        if let Some(n) = r.get(what, || device.total_ecc_errors(kind, counter)) {
            r.push(name, n as f64);
        }
    }
    // nvml-wrapper truncates bits it has no flag for; in 0.13 its flags cover
    // every reason NVML defines (0x1..=0x100).
    if let Some(t) = r.get("throttle reasons", || device.current_throttle_reasons()) {
        r.push(THROTTLE_REASONS, t.bits() as f64);
        for (reason, bit) in THROTTLE_NAMES {
            r.push_with(
                THROTTLE_ACTIVE,
                vec![("reason", (*reason).to_string())],
                flag(t.contains(*bit)),
            );
        }
    }
    for (name, what, cause) in [
        (
            RETIRED_SBE,
            "retired pages sbe",
            RetirementCause::MultipleSingleBitEccErrors,
        ),
        (
            RETIRED_DBE,
            "retired pages dbe",
            RetirementCause::DoubleBitEccError,
        ),
    ] {
        if let Some(pages) = r.get(what, || device.retired_pages(cause)) {
            r.push(name, pages.len() as f64);
        }
    }
    if let Some(p) = r.get("retired pages pending", || {
        device.are_pages_pending_retired()
    }) {
        r.push(RETIRED_PENDING, flag(p));
    }
    if let Some(mj) = r.get("energy", || device.total_energy_consumption()) {
        r.push(ENERGY, mj as f64);
    }
    read_processes(&mut r, &device);
    if let Some(last) = xid.last_xid(index) {
        r.push(XID_LAST, last as f64);
        for (code, n) in xid.xid_counts(index) {
            r.push_with(XID_TOTAL, vec![("xid", code.to_string())], n as f64);
        }
    }
    // NVML_DEVICE_MIG_ENABLE == 1
    if r.get("mig mode", || device.mig_mode()).map(|m| m.current) == Some(1) {
        read_mig(&mut r, nvml, &device);
    }
}

/// Compute and graphics processes, one series per pid (and GPU instance, on
/// a MIG-enabled GPU, where NVML says which instance a process runs in). A
/// process with both contexts is listed by both calls with the same figure:
/// kept once (max). Processes whose memory NVML cannot attribute
/// (`Unavailable`) are left out.
fn read_processes(r: &mut DeviceReader<'_>, device: &Device<'_>) {
    let mut by_pid: BTreeMap<(u32, Option<u32>), u64> = BTreeMap::new();
    let compute = r.get("compute processes", || device.running_compute_processes());
    let graphics = r.get("graphics processes", || device.running_graphics_processes());
    for p in compute.into_iter().chain(graphics).flatten() {
        if let UsedGpuMemory::Used(bytes) = p.used_gpu_memory {
            let slot = by_pid.entry((p.pid, p.gpu_instance_id)).or_insert(0);
            *slot = (*slot).max(bytes);
        }
    }
    for ((pid, gi), bytes) in by_pid {
        let mut labels = vec![("pid", pid.to_string())];
        if let Some(gi) = gi {
            labels.push(("GPU_I_ID", gi.to_string()));
        }
        r.push_with(PROCESS_MEMORY, labels, bytes as f64);
    }
}

/// The MIG profile in a MIG device's NVML name (`NVIDIA A100-SXM4-40GB MIG
/// 3g.20gb` → `3g.20gb`); empty when the name carries none.
fn mig_profile(name: &str) -> &str {
    name.rsplit_once(" MIG ")
        .map(|(_, profile)| profile.trim())
        .unwrap_or("")
}

/// Per-instance series for each populated MIG device of a MIG-enabled GPU.
/// An empty slot answers `NotFound` and is skipped silently; a MIG device
/// whose GPU instance id cannot be read is skipped (its series would collide
/// with the parent's).
fn read_mig(r: &mut DeviceReader<'_>, nvml: &Nvml, device: &Device<'_>) {
    let Some(max) = r.get("mig device count", || device.mig_device_count()) else {
        return;
    };
    for i in 0..max {
        let mig = match device.mig_device_by_index(i) {
            Err(NvmlError::NotFound) => continue,
            res => match r.get(&format!("mig device {i}"), || res) {
                Some(m) => m,
                None => continue,
            },
        };
        let Some(gi) = r.get(&format!("mig device {i}: gpu instance id"), || {
            gpu_instance_id(nvml, &mig)
        }) else {
            continue;
        };
        let name = r
            .get(&format!("mig device {i}: name"), || mig.name())
            .unwrap_or_default();
        let labels = vec![
            ("GPU_I_ID", gi.to_string()),
            ("GPU_I_PROFILE", mig_profile(&name).to_string()),
        ];
        if let Some(u) = r.get(&format!("mig device {i}: utilization"), || {
            mig.utilization_rates()
        }) {
            r.push_with(GPU_UTIL, labels.clone(), u.gpu.into());
            r.push_with(MEM_COPY_UTIL, labels.clone(), u.memory.into());
        }
        if let Some(m) = r.get(&format!("mig device {i}: memory"), || mig.memory_info()) {
            for (name, v) in [
                (FB_USED, m.used),
                (FB_FREE, m.free),
                (FB_RESERVED, m.reserved),
                (FB_TOTAL, m.total),
            ] {
                r.push_with(name, labels.clone(), mib(v));
            }
        }
    }
}

/// `nvmlDeviceGetGpuInstanceId`, which nvml-wrapper 0.13 loads but does not
/// wrap: called through the library's symbol table.
fn gpu_instance_id(nvml: &Nvml, mig: &Device<'_>) -> Result<u32, NvmlError> {
    let sym = nvml_sym(nvml.lib().nvmlDeviceGetGpuInstanceId.as_ref())?;
    let mut id: c_uint = 0;
    // SAFETY: `mig` is a live handle obtained from this `nvml`, whose library
    // `sym` comes from; `id` is a valid out-pointer for the call; the symbol's
    // type is nvml-wrapper-sys's binding of the C prototype.
    nvml_try(unsafe { sym(mig.handle(), &mut id) })?;
    Ok(id)
}

/// Watch state of one GPU.
enum Watch<'nvml> {
    /// Not registered yet, or the last try failed: try again next poll.
    Pending,
    /// The device does not deliver critical XID events; never retried.
    Unsupported,
    /// An event set registered for critical XID events on this GPU only.
    Watching(EventSet<'nvml>),
}

/// Tracks XID errors between rounds.
///
/// Holds one NVML event set per GPU (so a failed registration, which frees
/// the set in nvml-wrapper, costs only that GPU), registered for
/// [`EventTypes::CRITICAL_XID_ERROR`] on devices that support it. Registration
/// happens lazily in [`poll`](Self::poll), which is also where new devices are
/// picked up and failed registrations retried (with a warning each time).
/// Each poll drains every set with a 0 ms wait. Counts are cumulative from
/// the tracker's creation: an XID raised while nobody listened is not seen.
///
/// The tracker borrows the [`Nvml`] it reads: keep both on the thread that
/// owns NVML.
pub struct XidTracker<'nvml> {
    nvml: &'nvml Nvml,
    watches: Vec<Watch<'nvml>>,
    /// Last XID per watched GPU; 0 until the first one.
    last: BTreeMap<u32, u64>,
    /// Events per (gpu, xid).
    counts: BTreeMap<(u32, u64), u64>,
}

impl<'nvml> XidTracker<'nvml> {
    /// Makes no NVML call: registration happens in the first [`poll`](Self::poll).
    pub fn new(nvml: &'nvml Nvml) -> Self {
        Self {
            nvml,
            watches: Vec::new(),
            last: BTreeMap::new(),
            counts: BTreeMap::new(),
        }
    }

    /// Registers devices not yet watched, then drains every set without
    /// waiting. Problems become warnings (`"gpu 0: xid events: <err>"`).
    pub fn poll(&mut self, warnings: &mut Vec<String>) {
        let count = match self.nvml.device_count() {
            Ok(c) => c,
            Err(e) => {
                warnings.push(format!("nvml: xid events: device count: {e}"));
                return;
            }
        };
        if self.watches.len() < count as usize {
            self.watches.resize_with(count as usize, || Watch::Pending);
        }
        for (gpu, watch) in (0u32..).zip(self.watches.iter_mut()) {
            if matches!(watch, Watch::Pending) {
                *watch = register(self.nvml, gpu, warnings);
                if matches!(watch, Watch::Watching(_)) {
                    self.last.entry(gpu).or_insert(0);
                }
            }
            if let Watch::Watching(set) = watch {
                for _ in 0..MAX_EVENTS_PER_POLL {
                    match set.wait(0) {
                        Ok(event) => {
                            let code = match event.event_data {
                                Some(XidError::Value(v)) => v,
                                Some(XidError::Unknown) => XID_UNKNOWN,
                                None => continue,
                            };
                            self.last.insert(gpu, code);
                            *self.counts.entry((gpu, code)).or_insert(0) += 1;
                        }
                        Err(NvmlError::Timeout) => break,
                        Err(e) => {
                            warnings.push(format!("gpu {gpu}: xid events: {e}"));
                            break;
                        }
                    }
                }
            }
        }
    }

    /// The last XID seen on `gpu`, 0 when none yet; `None` when the GPU is
    /// not watched (unsupported, or not registered) and has never had one.
    pub fn last_xid(&self, gpu: u32) -> Option<u64> {
        self.last.get(&gpu).copied()
    }

    /// `(xid, events)` for `gpu`, by ascending xid.
    pub fn xid_counts(&self, gpu: u32) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.counts
            .range((gpu, 0)..=(gpu, u64::MAX))
            .map(|(&(_, code), &n)| (code, n))
    }
}

fn register<'nvml>(nvml: &'nvml Nvml, gpu: u32, warnings: &mut Vec<String>) -> Watch<'nvml> {
    // A device that cannot be opened is reported by `read_all`; retry later.
    let Ok(device) = nvml.device_by_index(gpu) else {
        return Watch::Pending;
    };
    match device.supported_event_types() {
        Ok(t) if t.contains(EventTypes::CRITICAL_XID_ERROR) => {}
        Ok(_) => return Watch::Unsupported,
        Err(e) if is_unsupported(&e) => return Watch::Unsupported,
        // Reported by `read_all` already; retry once the GPU is back.
        Err(NvmlError::GpuLost) => return Watch::Pending,
        Err(e) => {
            warnings.push(format!("gpu {gpu}: xid events: {e}"));
            return Watch::Pending;
        }
    }
    let set = match nvml.create_event_set() {
        Ok(s) => s,
        Err(e) => {
            warnings.push(format!("gpu {gpu}: xid events: {e}"));
            return Watch::Pending;
        }
    };
    match device.register_events(EventTypes::CRITICAL_XID_ERROR, set) {
        Ok(set) => Watch::Watching(set),
        Err(e) if is_unsupported(&e.error) => Watch::Unsupported,
        Err(e) => {
            let source = e.source.map(|s| format!(" ({s})")).unwrap_or_default();
            warnings.push(format!("gpu {gpu}: xid events: {}{source}", e.error));
            Watch::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mig_profile_is_the_suffix_after_mig() {
        assert_eq!(mig_profile("NVIDIA A100-SXM4-40GB MIG 3g.20gb"), "3g.20gb");
        assert_eq!(
            mig_profile("NVIDIA H100 80GB HBM3 MIG 1g.10gb+me"),
            "1g.10gb+me"
        );
        assert_eq!(mig_profile("NVIDIA H100 80GB HBM3"), "");
    }

    #[test]
    fn every_metric_has_one_mapping_row() {
        let mut names: Vec<&str> = MAPPING.iter().map(|(n, _, _)| *n).collect();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n, "a metric is listed twice in MAPPING");
    }
}
