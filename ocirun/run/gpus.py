"""GPUs in the container: the host driver's devices, libraries and tools bound in.

`--gpus all|N|device=ID[,ID...]` (docker's syntax) and `--nv` (Apptainer's, = all)
ask for NVIDIA GPUs, `--rocm` for AMD ones. As nvidia-container-cli and Apptainer do,
the driver's user-space libraries are found through the dynamic linker's cache
(`ldconfig -p`; without a cache, the usual library directories), bound read-only into
GUEST_LIB_DIR under their sonames, and the guest's LD_LIBRARY_PATH starts there; the
tools (nvidia-smi, rocm-smi) are bound into /usr/bin and the device files into /dev.
Device selection is told to the guest's runtime: NVIDIA_VISIBLE_DEVICES and
CUDA_VISIBLE_DEVICES (a scheduler's CUDA_VISIBLE_DEVICES is kept), ROCR_VISIBLE_DEVICES.
Everything is looked up under OCIRUN_GPU_ROOT (default /), so a tree of stub libraries
and device files can stand for a driver. No GPU: one `ocirun:` line, exit 125.
"""

from __future__ import annotations

import glob
import os
import re

from ocirun.errors import EXIT_OCIRUN, OcirunError
from ocirun.util.records import dataclass, field

GUEST_LIB_DIR = "/.ocirun/gpu/lib"
LIB_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/lib64",
            "/opt/rocm/lib", "/opt/rocm/lib64")


@dataclass(frozen=True)
class Vendor:
    """What one vendor's driver consists of (names as nvidia-container-cli/Apptainer list them)."""

    name: str
    control: tuple[str, ...]  # device globs that must exist for any GPU to be usable
    per_gpu: str  # device glob of one GPU each, numbered (NVIDIA) or "" (AMD: shared nodes)
    shared: tuple[str, ...]  # other device globs bound when present
    libs: tuple[str, ...]  # library base names (before ".so")
    tools: tuple[str, ...]
    visible: tuple[str, ...]  # environment variables that select devices


NVIDIA = Vendor(
    name="NVIDIA",
    control=("/dev/nvidiactl",),
    per_gpu="/dev/nvidia[0-9]*",
    shared=("/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset", "/dev/nvidia-caps/*"),
    libs=("libcuda", "libcudadebugger", "libnvidia-ml", "libnvidia-ptxjitcompiler", "libnvidia-nvvm",
          "libnvidia-opencl", "libnvidia-compiler", "libnvidia-allocator", "libnvidia-cfg", "libnvidia-gpucomp",
          "libnvidia-fatbinaryloader", "libnvidia-encode", "libnvcuvid", "libnvidia-opticalflow",
          "libnvidia-pkcs11", "libnvidia-eglcore", "libnvidia-glcore", "libnvidia-tls", "libnvidia-glsi",
          "libnvidia-fbc", "libnvidia-rtcore", "libnvoptix", "libGLX_nvidia", "libEGL_nvidia",
          "libGLESv2_nvidia", "libGLESv1_CM_nvidia", "libnvidia-glvkspirv"),
    tools=("nvidia-smi", "nvidia-debugdump", "nvidia-persistenced", "nvidia-cuda-mps-control",
           "nvidia-cuda-mps-server"),
    visible=("NVIDIA_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES"),
)

ROCM = Vendor(
    name="AMD",
    control=("/dev/kfd",),
    per_gpu="",
    shared=("/dev/dri",),
    libs=("libamdhip64", "libhsa-runtime64", "libhsakmt", "libamd_comgr", "librocm_smi64", "libhiprtc",
          "libamdocl64", "libdrm_amdgpu", "libdrm", "librocprofiler-register"),
    tools=("rocm-smi", "rocminfo"),
    visible=("ROCR_VISIBLE_DEVICES",),
)


@dataclass(frozen=True)
class GpuRequest:
    """What was asked: a vendor and which GPUs ("all", a count, or device ids)."""

    vendor: str  # "nvidia" | "rocm"
    count: int | None = None  # --gpus N
    devices: tuple[str, ...] = ()  # --gpus device=0,1 (indices or UUIDs)


@dataclass
class GpuSetup:
    """The bindings and environment a request becomes on this host."""

    volumes: list[tuple[str, str, bool]] = field(default_factory=list)  # (host, guest, read-only)
    env: dict[str, str] = field(default_factory=dict)


def parse_gpus(value: str | None, nv: bool = False, rocm: bool = False) -> GpuRequest | None:
    """`--gpus all|N|device=ID[,ID]` / `--nv` / `--rocm` -> a request; bad values exit 125."""
    if rocm:
        return GpuRequest("rocm")
    if value is None:
        return GpuRequest("nvidia") if nv else None
    text = value.strip().strip('"').strip("'")
    if text in ("all", "-1", "count=all"):
        return GpuRequest("nvidia")
    count = text.removeprefix("count=")
    if count.isdigit() and int(count) > 0:
        return GpuRequest("nvidia", count=int(count))
    if text.startswith("device="):
        ids = tuple(i.strip() for i in text[len("device="):].split(",") if i.strip())
        if ids:
            return GpuRequest("nvidia", devices=ids)
    raise OcirunError(f"invalid --gpus {value!r}: expected all, a count or device=ID[,ID...]", EXIT_OCIRUN)


def gpu_root(host_env: dict[str, str]) -> str:
    return os.path.abspath(host_env.get("OCIRUN_GPU_ROOT") or "/")


def _under(root: str, path: str) -> str:
    return os.path.normpath(root + "/" + path) if root != "/" else path


def _inside(root: str, host: str) -> str:
    """The path of host file `host` as seen from `root` (its path with root's prefix removed)."""
    return "/" + os.path.relpath(host, root) if root != "/" else host


def _real(root: str, path: str) -> str:
    """`path` (relative to root) with its symlinks resolved inside root."""
    host = _under(root, path)
    for _ in range(40):
        if not os.path.islink(host):
            return host
        target = os.readlink(host)
        host = _under(root, target) if target.startswith("/") else os.path.normpath(os.path.join(os.path.dirname(host), target))
    return host


def ldcache_libraries(root: str) -> dict[str, str]:
    """soname -> path (relative to root) from `ldconfig -p` of root's cache, this machine's ABI."""
    cache = _under(root, "/etc/ld.so.cache")
    if not os.path.isfile(cache):
        return {}
    import subprocess  # (only with --gpus: start-up time of every run)

    try:
        out = subprocess.run(["ldconfig", "-p", "-C", cache], capture_output=True, text=True, timeout=30,
                             env={"PATH": "/usr/sbin:/sbin:/usr/bin:/bin"}).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    abi = {"x86_64": "x86-64", "aarch64": "AArch64"}.get(os.uname().machine, "")
    found: dict[str, str] = {}
    for m in re.finditer(r"^\s*(\S+) \(([^)]*)\) => (\S+)$", out, re.M):
        if abi in m.group(2) and m.group(1) not in found:
            found[m.group(1)] = m.group(3)
    return found


def scanned_libraries(root: str) -> dict[str, str]:
    """soname-like name -> path, from the usual library directories (no ld.so.cache).

    Of the names of one file (libx.so.5 -> libx.so.5.7.0) the shortest is its soname."""
    by_file: dict[str, str] = {}
    for d in LIB_DIRS:
        for host in sorted(glob.glob(_under(root, d) + "/lib*.so.*")):
            real = _real(root, _inside(root, host))
            name = os.path.basename(host)
            if real not in by_file or len(name) < len(os.path.basename(by_file[real])):
                by_file[real] = host
    return {os.path.basename(h): _inside(root, h) for h in by_file.values()}


def driver_libraries(vendor: Vendor, root: str) -> dict[str, str]:
    """soname -> host file for the vendor's libraries (one per soname, symlinks resolved)."""
    table = ldcache_libraries(root) or scanned_libraries(root)
    out = {}
    for soname, path in table.items():
        if soname.partition(".so")[0] in vendor.libs:
            host = _real(root, path)
            if os.path.isfile(host):
                out[soname] = host
    return out


def _devices(vendor: Vendor, root: str, request: GpuRequest) -> tuple[list[str], list[str]]:
    """(device files to bind, selected GPU indices); raises when there is no usable GPU."""
    control = [p for g in vendor.control for p in glob.glob(_under(root, g))]
    gpus = sorted(glob.glob(_under(root, vendor.per_gpu)), key=_index) if vendor.per_gpu else []
    gpus = [g for g in gpus if re.search(r"\d+$", g)]
    if not control or (vendor.per_gpu and not gpus):
        raise OcirunError(f"no {vendor.name} GPU on this host (no {vendor.control[0]}): "
                          f"drop --gpus/--nv/--rocm or run on a GPU node", EXIT_OCIRUN)
    selected = [str(_index(g)) for g in gpus]
    if request.count is not None:
        if request.count > len(gpus):
            raise OcirunError(f"--gpus {request.count}: this host has {len(gpus)} {vendor.name} GPU(s)", EXIT_OCIRUN)
        selected = selected[: request.count]
    elif request.devices:
        missing = [d for d in request.devices if d.isdigit() and d not in selected]
        if missing:
            raise OcirunError(f"--gpus device={missing[0]}: no such {vendor.name} GPU on this host", EXIT_OCIRUN)
        selected = [d for d in request.devices if d.isdigit()] if all(d.isdigit() for d in request.devices) else selected
    shared = [p for g in vendor.shared for p in glob.glob(_under(root, g))]
    chosen = [g for g in gpus if str(_index(g)) in selected]
    return control + chosen + shared, selected


def _index(path: str) -> int:
    m = re.search(r"(\d+)$", path)
    return int(m.group(1)) if m else -1


def _selection_env(vendor: Vendor, request: GpuRequest, selected: list[str], host_env: dict[str, str]) -> dict[str, str]:
    """NVIDIA_/CUDA_/ROCR_VISIBLE_DEVICES for the guest; a scheduler's choice is kept."""
    if vendor is ROCM:
        return {"ROCR_VISIBLE_DEVICES": host_env["ROCR_VISIBLE_DEVICES"]} if "ROCR_VISIBLE_DEVICES" in host_env else {}
    if request.devices:
        ids = ",".join(request.devices)
        return {"NVIDIA_VISIBLE_DEVICES": ids, "CUDA_VISIBLE_DEVICES": ids}
    if request.count is not None:
        ids = ",".join(selected)
        return {"NVIDIA_VISIBLE_DEVICES": ids, "CUDA_VISIBLE_DEVICES": ids}
    env = {"NVIDIA_VISIBLE_DEVICES": host_env.get("NVIDIA_VISIBLE_DEVICES", "all")}
    if "CUDA_VISIBLE_DEVICES" in host_env:
        env["CUDA_VISIBLE_DEVICES"] = host_env["CUDA_VISIBLE_DEVICES"]
    return env


def gpu_setup(request: GpuRequest, host_env: dict[str, str], image_env: dict[str, str]) -> GpuSetup:
    """The bindings and guest environment for `request` on this host (or OCIRUN_GPU_ROOT)."""
    vendor = ROCM if request.vendor == "rocm" else NVIDIA
    root = gpu_root(host_env)
    devices, selected = _devices(vendor, root, request)
    setup = GpuSetup()
    setup.volumes += [(host, _inside(root, host), False) for host in devices]
    libs = driver_libraries(vendor, root)
    setup.volumes += [(host, f"{GUEST_LIB_DIR}/{soname}", True) for soname, host in sorted(libs.items())]
    for tool in vendor.tools:
        for d in ("/usr/bin", "/usr/local/bin", "/opt/rocm/bin", "/usr/sbin"):
            host = _under(root, f"{d}/{tool}")
            if os.path.isfile(host):
                setup.volumes.append((os.path.realpath(host), f"/usr/bin/{tool}", True))
                break
    old = image_env.get("LD_LIBRARY_PATH", "")
    setup.env["LD_LIBRARY_PATH"] = GUEST_LIB_DIR + (":" + old if old else "")
    setup.env.update(_selection_env(vendor, request, selected, host_env))
    return setup
