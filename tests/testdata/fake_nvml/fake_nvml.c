/*
 * fake_nvml.c — a stand-in for libnvidia-ml.so.1 with fixed, known values.
 *
 * Build:  cc -shared -fPIC -O0 -o libnvidia-ml.so.1 fake_nvml.c
 * Load:   Nvml::builder().lib_path(OsStr::new("/path/to/libnvidia-ml.so.1")).init()
 *
 * It implements exactly the entry points that nvml-wrapper 0.13
 * (nvml-wrapper-sys 0.10) calls for the methods homeostat's GPU reader
 * (daemon/src/collect/nvml_read.rs) uses, plus nvmlErrorString. nvml-wrapper
 * resolves every symbol lazily: a missing one only fails the method that
 * calls it, with NvmlError::FailedToLoadSymbol — EXCEPT nvmlShutdown (called
 * by `Drop for Nvml`) and nvmlEventSetFree (called by `Drop for EventSet`),
 * whose absence panics. Both are here.
 *
 * Struct layouts and enum values are those of nvml-wrapper-sys 0.10's
 * bindings (nvmlPciInfo_t, nvmlMemory_v2_t, nvmlProcessInfo_t == v2 layout,
 * nvmlEventData_t). Every call made before nvmlInit_v2 (or after the last
 * nvmlShutdown) returns NVML_ERROR_UNINITIALIZED, as the real library does.
 *
 * FAKE_NVML_MODE (read by nvmlInit_v2):
 *   unset or ""   the values below
 *   "init_fail"   nvmlInit_v2 returns NVML_ERROR_DRIVER_NOT_LOADED (9)
 *   "no_permission" nvmlInit_v2 returns NVML_ERROR_NO_PERMISSION (4), as when
 *                 /dev/nvidia* is not accessible to the user
 *   "hang"        nvmlDeviceGetUtilizationRates sleeps 10 s (every device),
 *                 then returns the normal values — for timeout tests
 *   "mig"         GPU 0 has MIG enabled with two MIG devices (see below)
 *   "gpu1_lost"   GPU 1 still answers UUID/name/PCI info, but every other
 *                 query on it returns NVML_ERROR_GPU_IS_LOST (15)
 *   anything else nvmlInit_v2 returns NVML_ERROR_INVALID_ARGUMENT (2) and
 *                 prints a line to stderr (so a typo cannot pass silently)
 *
 * System
 *   nvmlDeviceGetCount_v2              2
 *   nvmlSystemGetDriverVersion         "550.54.15"
 *   nvmlSystemGetCudaDriverVersion_v2  12040  (CUDA 12.4)
 *   nvmlDeviceGetHandleByIndex_v2      index >= 2 -> INVALID_ARGUMENT
 *
 * Value                          GPU 0                          GPU 1
 * -----------------------------  -----------------------------  --------------------------
 * UUID                           GPU-00000000-1111-2222-3333-   GPU-55555555-6666-7777-8888-
 *                                444444444444                   999999999999
 * Name                           NVIDIA H100 80GB HBM3          NVIDIA A100-SXM4-40GB
 * PCI busId                      00000000:17:00.0               00000000:65:00.0
 *   domain/bus/device            0 / 0x17 / 0                   0 / 0x65 / 0
 *   pciDeviceId / subsys         0x233010DE / 0x16C110DE        0x20B010DE / 0x134F10DE
 * Utilization gpu / memory (%)   87 / 43                        5 / 1
 * Memory_v2 total (MiB)          81559                          40960
 *   reserved (MiB)               512                            256
 *   used (MiB)                   61440                          1024
 *   free (MiB)                   19607                          39680
 * Temperature GPU (C)            71                             NVML_ERROR_UNKNOWN (999)
 * Power usage (mW)               312500                         65000
 * Power mgmt limit (mW)          700000                         400000
 * Clock SM / MEM (MHz)           1980 / 2619                    210 / 1215
 * Num fans                       1                              NOT_SUPPORTED (3)
 * Fan speed fan 0 (%)            35                             NOT_SUPPORTED (3)
 * PCIe throughput TX / RX (KB/s) 123456 / 654321                1000 / 2000
 * ECC corrected volatile         3                              NOT_SUPPORTED (3)
 * ECC uncorrected volatile       0                              NOT_SUPPORTED (3)
 * ECC corrected aggregate        17                             NOT_SUPPORTED (3)
 * ECC uncorrected aggregate      1                              NOT_SUPPORTED (3)
 * Clocks throttle reasons        0x4 (SW power cap)             0x1 (GPU idle)
 * Retired pages, multi-SBE       2 (0x1000 @1700000000,         NOT_SUPPORTED (3)
 *                                   0x2000 @1700000100)
 * Retired pages, DBE             0                              NOT_SUPPORTED (3)
 * Retired pages pending          DISABLED (0)                   NOT_SUPPORTED (3)
 * Total energy (mJ)              123456789012                   5000000
 * Compute processes              pid 4242, 64424509440 B        pid 777, usedGpuMemory =
 *                                (60 GiB)                       NVML_VALUE_NOT_AVAILABLE
 * Graphics processes             none                           none
 * MIG mode current / pending     0 / 0  ("mig" mode: 1 / 1)     NOT_SUPPORTED (3)
 * Supported event types          0x1F (SBE|DBE|PState|XID|Clk)  NOT_SUPPORTED (3)
 * nvmlDeviceRegisterEvents       OK for types within 0x1F       NOT_SUPPORTED (3)
 *
 * Events: the first nvmlEventSetWait_v2 on a set that has GPU 0 registered
 * for XID (0x8) delivers one event {device = GPU 0, eventType = 0x8,
 * eventData = 79, gpuInstanceId = computeInstanceId = 0xFFFFFFFF}. That event
 * is delivered once per process. Any other wait returns NVML_ERROR_TIMEOUT
 * after sleeping min(timeout, 1000) ms.
 *
 * "mig" mode only (GPU 0):
 *   nvmlDeviceGetMaxMigDeviceCount        7
 *   nvmlDeviceGetMigDeviceHandleByIndex   0 and 1 -> MIG handles; 2..6 ->
 *                                         NOT_FOUND; >= 7 -> INVALID_ARGUMENT
 *   MIG 0: GPU instance id 1, name "NVIDIA H100 80GB HBM3 MIG 3g.40gb",
 *          memory total 40192 MiB, reserved 0, used 30720 MiB,
 *          free 9472 MiB, utilization gpu / memory 60 / 25 (%)
 *   MIG 1: GPU instance id 2, name "NVIDIA H100 80GB HBM3 MIG 3g.40gb",
 *          memory total 40192 MiB, reserved 0, used 1024 MiB,
 *          free 39168 MiB, utilization NOT_SUPPORTED
 *   GPU 0 itself: utilization NOT_SUPPORTED (as NVML answers on a
 *          MIG-enabled GPU); compute processes pid 4242 (30 GiB) in GPU
 *          instance 1 and pid 4343 (512 MiB) in GPU instance 2, compute
 *          instance 0 for both.
 *   nvmlDeviceGetGpuInstanceId on a full GPU -> INVALID_ARGUMENT.
 *   Outside "mig" mode nvmlDeviceGetMaxMigDeviceCount on GPU 0 returns 0 and
 *   nvmlDeviceGetMigDeviceHandleByIndex returns NOT_FOUND.
 *   Any other query on a MIG handle (temperature, power, clocks, ECC, ...:
 *   properties of the whole GPU) returns NOT_SUPPORTED.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

typedef unsigned int nvmlReturn_t;

enum {
    NVML_SUCCESS = 0,
    NVML_ERROR_UNINITIALIZED = 1,
    NVML_ERROR_INVALID_ARGUMENT = 2,
    NVML_ERROR_NOT_SUPPORTED = 3,
    NVML_ERROR_NO_PERMISSION = 4,
    NVML_ERROR_NOT_FOUND = 6,
    NVML_ERROR_INSUFFICIENT_SIZE = 7,
    NVML_ERROR_DRIVER_NOT_LOADED = 9,
    NVML_ERROR_TIMEOUT = 10,
    NVML_ERROR_GPU_IS_LOST = 15,
    NVML_ERROR_UNKNOWN = 999,
};

#define EV_SBE 0x1ULL
#define EV_DBE 0x2ULL
#define EV_PSTATE 0x4ULL
#define EV_XID 0x8ULL
#define EV_CLOCK 0x10ULL
#define GPU0_EVENTS (EV_SBE | EV_DBE | EV_PSTATE | EV_XID | EV_CLOCK)

#define MIB(x) ((unsigned long long)(x) << 20)
#define NOT_AVAILABLE 0xFFFFFFFFFFFFFFFFULL
#define NO_INSTANCE 0xFFFFFFFFu

/* ---- layouts mirrored from nvml-wrapper-sys 0.10 ------------------------ */

struct nvmlDevice_st {
    int index;      /* physical GPU index, or parent's index for MIG */
    int mig;        /* -1 for a full GPU, else the MIG device index */
    unsigned int gi_id;
};
typedef struct nvmlDevice_st *nvmlDevice_t;

typedef struct {
    char busIdLegacy[16];
    unsigned int domain;
    unsigned int bus;
    unsigned int device;
    unsigned int pciDeviceId;
    unsigned int pciSubSystemId;
    char busId[32];
} nvmlPciInfo_t;

typedef struct {
    unsigned int version;
    unsigned long long total;
    unsigned long long reserved;
    unsigned long long free;
    unsigned long long used;
} nvmlMemory_v2_t;

typedef struct {
    unsigned int gpu;
    unsigned int memory;
} nvmlUtilization_t;

typedef struct {
    unsigned int pid;
    unsigned long long usedGpuMemory;
    unsigned int gpuInstanceId;
    unsigned int computeInstanceId;
} nvmlProcessInfo_t;

struct nvmlEventSet_st {
    unsigned long long registered[2]; /* event mask per physical GPU */
};
typedef struct nvmlEventSet_st *nvmlEventSet_t;

typedef struct {
    nvmlDevice_t device;
    unsigned long long eventType;
    unsigned long long eventData;
    unsigned int gpuInstanceId;
    unsigned int computeInstanceId;
} nvmlEventData_t;

/* ---- state -------------------------------------------------------------- */

enum mode { MODE_DEFAULT, MODE_HANG, MODE_MIG, MODE_GPU1_LOST };

static int init_count = 0;
static enum mode mode = MODE_DEFAULT;
static int xid_delivered = 0;

static struct nvmlDevice_st gpus[2] = {{0, -1, 0}, {1, -1, 0}};
static struct nvmlDevice_st migs[2] = {{0, 0, 1}, {0, 1, 2}};

/* Common checks for a device query. Returns NVML_SUCCESS when the caller
 * should answer with GPU values; *gpu is set to the physical index. MIG
 * handles are rejected with NOT_SUPPORTED unless allow_mig is set. */
static nvmlReturn_t check_dev(nvmlDevice_t d, int allow_mig, int identity, int *gpu) {
    if (init_count == 0)
        return NVML_ERROR_UNINITIALIZED;
    if (d == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (d->mig >= 0 && !allow_mig)
        return NVML_ERROR_NOT_SUPPORTED;
    if (d->index == 1 && mode == MODE_GPU1_LOST && !identity)
        return NVML_ERROR_GPU_IS_LOST;
    *gpu = d->index;
    return NVML_SUCCESS;
}

#define CHECK(d, allow_mig, identity)                                 \
    int gpu;                                                          \
    do {                                                              \
        nvmlReturn_t rc_ = check_dev((d), (allow_mig), (identity), &gpu); \
        if (rc_ != NVML_SUCCESS)                                      \
            return rc_;                                               \
    } while (0);                                                      \
    (void)gpu

#define NEED(p)                                  \
    do {                                         \
        if ((p) == NULL)                         \
            return NVML_ERROR_INVALID_ARGUMENT;  \
    } while (0)

static nvmlReturn_t copy_str(char *dst, unsigned int len, const char *src) {
    NEED(dst);
    if (strlen(src) + 1 > len)
        return NVML_ERROR_INSUFFICIENT_SIZE;
    memcpy(dst, src, strlen(src) + 1);
    return NVML_SUCCESS;
}

/* ---- init / system ------------------------------------------------------ */

EXPORT nvmlReturn_t nvmlInit_v2(void) {
    const char *m = getenv("FAKE_NVML_MODE");
    if (m == NULL || m[0] == '\0')
        mode = MODE_DEFAULT;
    else if (strcmp(m, "init_fail") == 0)
        return NVML_ERROR_DRIVER_NOT_LOADED;
    else if (strcmp(m, "no_permission") == 0)
        return NVML_ERROR_NO_PERMISSION;
    else if (strcmp(m, "hang") == 0)
        mode = MODE_HANG;
    else if (strcmp(m, "mig") == 0)
        mode = MODE_MIG;
    else if (strcmp(m, "gpu1_lost") == 0)
        mode = MODE_GPU1_LOST;
    else {
        fprintf(stderr, "fake_nvml: unknown FAKE_NVML_MODE '%s'\n", m);
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    init_count++;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlShutdown(void) {
    if (init_count == 0)
        return NVML_ERROR_UNINITIALIZED;
    init_count--;
    return NVML_SUCCESS;
}

EXPORT const char *nvmlErrorString(nvmlReturn_t result) {
    switch (result) {
    case NVML_SUCCESS: return "Success";
    case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
    case NVML_ERROR_NO_PERMISSION: return "Insufficient Permissions";
    case NVML_ERROR_NOT_FOUND: return "Not Found";
    case NVML_ERROR_INSUFFICIENT_SIZE: return "Insufficient Size";
    case NVML_ERROR_DRIVER_NOT_LOADED: return "Driver Not Loaded";
    case NVML_ERROR_TIMEOUT: return "Timeout";
    case NVML_ERROR_GPU_IS_LOST: return "GPU is lost";
    default: return "Unknown Error";
    }
}

EXPORT nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    if (init_count == 0)
        return NVML_ERROR_UNINITIALIZED;
    return copy_str(version, length, "550.54.15");
}

EXPORT nvmlReturn_t nvmlSystemGetCudaDriverVersion_v2(int *version) {
    if (init_count == 0)
        return NVML_ERROR_UNINITIALIZED;
    NEED(version);
    *version = 12040;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count) {
    if (init_count == 0)
        return NVML_ERROR_UNINITIALIZED;
    NEED(count);
    *count = 2;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device) {
    if (init_count == 0)
        return NVML_ERROR_UNINITIALIZED;
    NEED(device);
    if (index >= 2)
        return NVML_ERROR_INVALID_ARGUMENT;
    *device = &gpus[index];
    return NVML_SUCCESS;
}

/* ---- identity ----------------------------------------------------------- */

EXPORT nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t d, char *uuid, unsigned int length) {
    CHECK(d, 0, 1);
    return copy_str(uuid, length,
                    gpu == 0 ? "GPU-00000000-1111-2222-3333-444444444444"
                             : "GPU-55555555-6666-7777-8888-999999999999");
}

EXPORT nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t d, char *name, unsigned int length) {
    CHECK(d, 1, 1);
    if (d->mig >= 0)
        return copy_str(name, length, "NVIDIA H100 80GB HBM3 MIG 3g.40gb");
    return copy_str(name, length, gpu == 0 ? "NVIDIA H100 80GB HBM3" : "NVIDIA A100-SXM4-40GB");
}

EXPORT nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t d, nvmlPciInfo_t *pci) {
    CHECK(d, 0, 1);
    NEED(pci);
    memset(pci, 0, sizeof *pci);
    pci->domain = 0;
    pci->device = 0;
    if (gpu == 0) {
        strcpy(pci->busIdLegacy, "0000:17:00.0");
        strcpy(pci->busId, "00000000:17:00.0");
        pci->bus = 0x17;
        pci->pciDeviceId = 0x233010DE;
        pci->pciSubSystemId = 0x16C110DE;
    } else {
        strcpy(pci->busIdLegacy, "0000:65:00.0");
        strcpy(pci->busId, "00000000:65:00.0");
        pci->bus = 0x65;
        pci->pciDeviceId = 0x20B010DE;
        pci->pciSubSystemId = 0x134F10DE;
    }
    return NVML_SUCCESS;
}

/* ---- gauges ------------------------------------------------------------- */

EXPORT nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t d, nvmlUtilization_t *u) {
    CHECK(d, 1, 0);
    NEED(u);
    if (mode == MODE_HANG)
        sleep(10);
    if (d->mig == 0) {
        u->gpu = 60;
        u->memory = 25;
        return NVML_SUCCESS;
    }
    if (d->mig > 0 || (mode == MODE_MIG && gpu == 0))
        return NVML_ERROR_NOT_SUPPORTED;
    u->gpu = gpu == 0 ? 87 : 5;
    u->memory = gpu == 0 ? 43 : 1;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t d, nvmlMemory_v2_t *m) {
    CHECK(d, 1, 0);
    NEED(m);
    if (d->mig == 0) {
        m->total = MIB(40192);
        m->reserved = 0;
        m->used = MIB(30720);
        m->free = MIB(9472);
    } else if (d->mig == 1) {
        m->total = MIB(40192);
        m->reserved = 0;
        m->used = MIB(1024);
        m->free = MIB(39168);
    } else if (gpu == 0) {
        m->total = MIB(81559);
        m->reserved = MIB(512);
        m->used = MIB(61440);
        m->free = MIB(19607);
    } else {
        m->total = MIB(40960);
        m->reserved = MIB(256);
        m->used = MIB(1024);
        m->free = MIB(39680);
    }
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t d, unsigned int sensor, unsigned int *temp) {
    CHECK(d, 0, 0);
    NEED(temp);
    if (sensor != 0)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (gpu == 1)
        return NVML_ERROR_UNKNOWN;
    *temp = 71;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t d, unsigned int *mw) {
    CHECK(d, 0, 0);
    NEED(mw);
    *mw = gpu == 0 ? 312500 : 65000;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetPowerManagementLimit(nvmlDevice_t d, unsigned int *mw) {
    CHECK(d, 0, 0);
    NEED(mw);
    *mw = gpu == 0 ? 700000 : 400000;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetClockInfo(nvmlDevice_t d, unsigned int type, unsigned int *mhz) {
    CHECK(d, 0, 0);
    NEED(mhz);
    switch (type) {
    case 1: /* NVML_CLOCK_SM */
        *mhz = gpu == 0 ? 1980 : 210;
        return NVML_SUCCESS;
    case 2: /* NVML_CLOCK_MEM */
        *mhz = gpu == 0 ? 2619 : 1215;
        return NVML_SUCCESS;
    case 0: /* NVML_CLOCK_GRAPHICS */
        *mhz = gpu == 0 ? 1980 : 210;
        return NVML_SUCCESS;
    default:
        return NVML_ERROR_NOT_SUPPORTED;
    }
}

EXPORT nvmlReturn_t nvmlDeviceGetNumFans(nvmlDevice_t d, unsigned int *n) {
    CHECK(d, 0, 0);
    NEED(n);
    if (gpu == 1)
        return NVML_ERROR_NOT_SUPPORTED;
    *n = 1;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetFanSpeed_v2(nvmlDevice_t d, unsigned int fan, unsigned int *speed) {
    CHECK(d, 0, 0);
    NEED(speed);
    if (gpu == 1)
        return NVML_ERROR_NOT_SUPPORTED;
    if (fan != 0)
        return NVML_ERROR_INVALID_ARGUMENT;
    *speed = 35;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetPcieThroughput(nvmlDevice_t d, unsigned int counter, unsigned int *kbs) {
    CHECK(d, 0, 0);
    NEED(kbs);
    if (counter == 0) /* TX */
        *kbs = gpu == 0 ? 123456 : 1000;
    else if (counter == 1) /* RX */
        *kbs = gpu == 0 ? 654321 : 2000;
    else
        return NVML_ERROR_INVALID_ARGUMENT;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetTotalEccErrors(nvmlDevice_t d, unsigned int error_type,
                                                unsigned int counter_type, unsigned long long *count) {
    CHECK(d, 0, 0);
    NEED(count);
    if (gpu == 1)
        return NVML_ERROR_NOT_SUPPORTED;
    if (error_type > 1 || counter_type > 1)
        return NVML_ERROR_INVALID_ARGUMENT;
    /* [corrected/uncorrected][volatile/aggregate] */
    static const unsigned long long v[2][2] = {{3, 17}, {0, 1}};
    *count = v[error_type][counter_type];
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetCurrentClocksThrottleReasons(nvmlDevice_t d, unsigned long long *reasons) {
    CHECK(d, 0, 0);
    NEED(reasons);
    *reasons = gpu == 0 ? 0x4ULL : 0x1ULL;
    return NVML_SUCCESS;
}

/* ---- retired pages ------------------------------------------------------ */

static const unsigned long long sbe_addr[2] = {0x1000, 0x2000};
static const unsigned long long sbe_time[2] = {1700000000, 1700000100};

static nvmlReturn_t retired(nvmlDevice_t d, unsigned int cause, unsigned int *count,
                            unsigned long long *addrs, unsigned long long *times) {
    CHECK(d, 0, 0);
    NEED(count);
    if (gpu == 1)
        return NVML_ERROR_NOT_SUPPORTED;
    if (cause > 1)
        return NVML_ERROR_INVALID_ARGUMENT;
    unsigned int n = cause == 0 ? 2 : 0; /* 0 = multiple SBE, 1 = DBE */
    if (*count < n) {
        *count = n;
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    for (unsigned int i = 0; i < n; i++) {
        if (addrs)
            addrs[i] = sbe_addr[i];
        if (times)
            times[i] = sbe_time[i];
    }
    *count = n;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetRetiredPages(nvmlDevice_t d, unsigned int cause, unsigned int *count,
                                              unsigned long long *addrs) {
    return retired(d, cause, count, addrs, NULL);
}

EXPORT nvmlReturn_t nvmlDeviceGetRetiredPages_v2(nvmlDevice_t d, unsigned int cause, unsigned int *count,
                                                 unsigned long long *addrs, unsigned long long *times) {
    return retired(d, cause, count, addrs, times);
}

EXPORT nvmlReturn_t nvmlDeviceGetRetiredPagesPendingStatus(nvmlDevice_t d, unsigned int *state) {
    CHECK(d, 0, 0);
    NEED(state);
    if (gpu == 1)
        return NVML_ERROR_NOT_SUPPORTED;
    *state = 0; /* NVML_FEATURE_DISABLED */
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t d, unsigned long long *mj) {
    CHECK(d, 0, 0);
    NEED(mj);
    *mj = gpu == 0 ? 123456789012ULL : 5000000ULL;
    return NVML_SUCCESS;
}

/* ---- processes ---------------------------------------------------------- */

static nvmlReturn_t processes(const nvmlProcessInfo_t *have, unsigned int n, unsigned int *count,
                              nvmlProcessInfo_t *infos) {
    NEED(count);
    if (infos == NULL || *count < n) {
        *count = n;
        return n == 0 ? NVML_SUCCESS : NVML_ERROR_INSUFFICIENT_SIZE;
    }
    for (unsigned int i = 0; i < n; i++)
        infos[i] = have[i];
    *count = n;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t d, unsigned int *count,
                                                            nvmlProcessInfo_t *infos) {
    CHECK(d, 0, 0);
    static const nvmlProcessInfo_t gpu0[1] = {{4242, 64424509440ULL, NO_INSTANCE, NO_INSTANCE}};
    static const nvmlProcessInfo_t gpu1[1] = {{777, NOT_AVAILABLE, NO_INSTANCE, NO_INSTANCE}};
    static const nvmlProcessInfo_t gpu0_mig[2] = {{4242, 32212254720ULL, 1, 0},
                                                  {4343, 536870912ULL, 2, 0}};
    if (gpu == 0 && mode == MODE_MIG)
        return processes(gpu0_mig, 2, count, infos);
    return processes(gpu == 0 ? gpu0 : gpu1, 1, count, infos);
}

EXPORT nvmlReturn_t nvmlDeviceGetGraphicsRunningProcesses_v3(nvmlDevice_t d, unsigned int *count,
                                                             nvmlProcessInfo_t *infos) {
    CHECK(d, 0, 0);
    return processes(NULL, 0, count, infos);
}

/* ---- MIG ---------------------------------------------------------------- */

EXPORT nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t d, unsigned int *current, unsigned int *pending) {
    CHECK(d, 0, 0);
    NEED(current);
    NEED(pending);
    if (gpu == 1)
        return NVML_ERROR_NOT_SUPPORTED;
    *current = *pending = mode == MODE_MIG ? 1 : 0;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetMaxMigDeviceCount(nvmlDevice_t d, unsigned int *count) {
    CHECK(d, 0, 0);
    NEED(count);
    if (gpu == 1)
        return NVML_ERROR_NOT_SUPPORTED;
    *count = mode == MODE_MIG ? 7 : 0;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetMigDeviceHandleByIndex(nvmlDevice_t d, unsigned int index,
                                                        nvmlDevice_t *mig) {
    CHECK(d, 0, 0);
    NEED(mig);
    if (gpu == 1)
        return NVML_ERROR_NOT_SUPPORTED;
    if (mode != MODE_MIG)
        return NVML_ERROR_NOT_FOUND;
    if (index >= 7)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (index >= 2)
        return NVML_ERROR_NOT_FOUND;
    *mig = &migs[index];
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetGpuInstanceId(nvmlDevice_t d, unsigned int *id) {
    CHECK(d, 1, 0);
    NEED(id);
    if (d->mig < 0)
        return NVML_ERROR_INVALID_ARGUMENT;
    *id = d->gi_id;
    return NVML_SUCCESS;
}

/* ---- events ------------------------------------------------------------- */

EXPORT nvmlReturn_t nvmlDeviceGetSupportedEventTypes(nvmlDevice_t d, unsigned long long *types) {
    CHECK(d, 0, 0);
    NEED(types);
    if (gpu == 1)
        return NVML_ERROR_NOT_SUPPORTED;
    *types = GPU0_EVENTS;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlEventSetCreate(nvmlEventSet_t *set) {
    if (init_count == 0)
        return NVML_ERROR_UNINITIALIZED;
    NEED(set);
    *set = calloc(1, sizeof **set);
    return *set ? NVML_SUCCESS : NVML_ERROR_UNKNOWN;
}

EXPORT nvmlReturn_t nvmlDeviceRegisterEvents(nvmlDevice_t d, unsigned long long types, nvmlEventSet_t set) {
    CHECK(d, 0, 0);
    NEED(set);
    if (gpu == 1 || (types & ~GPU0_EVENTS) != 0)
        return NVML_ERROR_NOT_SUPPORTED;
    set->registered[gpu] |= types;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlEventSetWait_v2(nvmlEventSet_t set, nvmlEventData_t *data, unsigned int timeout_ms) {
    if (init_count == 0)
        return NVML_ERROR_UNINITIALIZED;
    NEED(set);
    NEED(data);
    if (!xid_delivered && (set->registered[0] & EV_XID)) {
        xid_delivered = 1;
        data->device = &gpus[0];
        data->eventType = EV_XID;
        data->eventData = 79;
        data->gpuInstanceId = NO_INSTANCE;
        data->computeInstanceId = NO_INSTANCE;
        return NVML_SUCCESS;
    }
    if (timeout_ms > 0)
        usleep((timeout_ms > 1000 ? 1000 : timeout_ms) * 1000);
    return NVML_ERROR_TIMEOUT;
}

EXPORT nvmlReturn_t nvmlEventSetFree(nvmlEventSet_t set) {
    if (init_count == 0)
        return NVML_ERROR_UNINITIALIZED;
    free(set);
    return NVML_SUCCESS;
}
