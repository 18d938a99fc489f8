"""Which precisions the device runs natively, the default for generation, and a warning when
a requested precision would be emulated.

    CPU   bfloat16 native with AVX512_BF16 or AMX-BF16; float16 with AVX512_FP16 or AMX-FP16;
          int8 (Marian-native models, fbgemm) with AVX2 or better. Otherwise PyTorch emulates
          them: on an AVX2-only EPYC, Marian-native greedy decoding in bfloat16 took 102.8 s
          per 1,000 verses against 22.0 s in float32 (4.6x slower).
    CUDA  bfloat16 native from compute capability 8.0, float16 from 7.0.

The default-precision policy (no --dtype), in one place (`default_inference_dtype`):

    host                                   default    why
    CPU, AVX2 only                         float32    bfloat16 emulated: 4.6x slower (above)
    CPU, AVX-512 without BF16              float32    bfloat16 still emulated
    CPU, avx512_bf16 or AMX-BF16           bfloat16   native: 1.27-1.35x faster than float32,
                                                      same BLEU (docs/precision.md)
    CUDA, compute capability >= 8.0        bfloat16   native tensor cores
    CUDA < 8.0                             float32

int8 is never a default: it is for Marian-native models and changes outputs. Whatever the
default, `--dtype float32` reproduces the float32 outputs on every host, and adapters and
work folders compare the base's weights as stored (`methods.storage.fingerprint`), so an
adapter trained in float32 loads on a base served in any precision.

The host is a test input: MTADAPT_CPU_FLAGS="avx avx2 fma ..." (space-separated
/proc/cpuinfo flags) makes this module see another CPU; `HOST_PROFILES` names the four
kinds the test suite runs under.
"""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path

import torch


CPU_FLAGS_ENV = "MTADAPT_CPU_FLAGS"

# The four host kinds the policy distinguishes, as the flags that decide them; the test suite
# runs every precision-dependent test under each (tests/conftest.py `host_profile`).
HOST_PROFILES: dict[str, str] = {
    "avx2": "fma avx avx2",
    "avx512": "fma avx avx2 avx512f avx512dq avx512bw avx512vl avx512_vnni",
    "avx512-bf16": "fma avx avx2 avx512f avx512dq avx512bw avx512vl avx512_vnni avx512_bf16",
    "amx": "fma avx avx2 avx512f avx512dq avx512bw avx512vl avx512_vnni avx512_bf16 amx_tile amx_bf16 amx_int8",
}


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags: $MTADAPT_CPU_FLAGS when set (a host profile for tests and
    for reproducing another machine's defaults), else Linux `/proc/cpuinfo`; empty where they
    cannot be read."""
    override = os.environ.get(CPU_FLAGS_ENV)
    if override is not None:
        return frozenset(override.split())
    return _proc_cpu_flags()


def host_profile() -> str:
    """Which of `HOST_PROFILES` this host is (or is made to look like), or "other"."""
    flags = cpu_flags()
    if flags & {"amx_bf16"}:
        return "amx"
    if flags & {"avx512_bf16"}:
        return "avx512-bf16"
    if "avx512f" in flags:
        return "avx512"
    if "avx2" in flags:
        return "avx2"
    return "other"


def cpu_capability() -> str:
    """PyTorch's CPU capability ("AVX2", "AVX512", "DEFAULT"), as the flags would give it when
    MTADAPT_CPU_FLAGS stands in for the real CPU."""
    if os.environ.get(CPU_FLAGS_ENV) is None:
        return torch.backends.cpu.get_cpu_capability()
    flags = cpu_flags()
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags:
        return "AVX512"
    return "AVX2" if "avx2" in flags else "DEFAULT"


@functools.lru_cache(maxsize=1)
def _proc_cpu_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.split("\n"):
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def describe_cpu() -> str:
    """One line for logs and benchmarks: PyTorch's CPU capability and the precision flags."""
    interesting = sorted(f for f in cpu_flags() if f.startswith(("avx", "amx", "fma")))
    line = f"capability {cpu_capability()}; flags {' '.join(interesting) or 'unknown'}"
    if os.environ.get(CPU_FLAGS_ENV) is not None:
        line += f"; host profile {host_profile()} from ${CPU_FLAGS_ENV}"
    return line


def describe_machine(device: torch.device | str = "cpu") -> str:
    """The line every benchmark prints with its numbers: CPU model, cores, capability and
    precision flags, torch version and threads, load average, and the GPU when `device` is one."""
    model = platform.processor() or platform.machine()
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        model = next((ln.partition(":")[2].strip() for ln in text.split("\n") if ln.startswith("model name")), model)
    except OSError:
        pass
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "unknown"
    line = (f"{model}, {os.cpu_count()} CPUs, {describe_cpu()}; torch {torch.__version__}, "
            f"{torch.get_num_threads()} thread(s); load average {load}")
    device = torch.device(device)
    if device.type == "cuda":
        line += f"; GPU {torch.cuda.get_device_name(device)}"
    return line


def native_dtypes(device: torch.device | str) -> set[str]:
    """Precisions with hardware support on `device` (float32 always)."""
    device = torch.device(device)
    native = {"float32"}
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        if (major, minor) >= (8, 0):
            native.add("bfloat16")
        if (major, minor) >= (7, 0):
            native.add("float16")
        return native
    flags = cpu_flags()
    if flags & {"avx512_bf16", "amx_bf16"}:
        native.add("bfloat16")
    if flags & {"avx512_fp16", "amx_fp16"}:
        native.add("float16")
    if cpu_capability() in ("AVX2", "AVX512") or "avx2" in flags:
        native.add("int8")
    return native


def default_inference_dtype(device: torch.device | str) -> str:
    """bfloat16 where the device has it natively, else float32."""
    return "bfloat16" if "bfloat16" in native_dtypes(device) else "float32"


def emulation_warning(dtype: str, device: torch.device | str) -> str | None:
    """A one-line warning when `dtype` has no hardware support on `device`, else None."""
    device = torch.device(device)
    if dtype in native_dtypes(device):
        return None
    if device.type == "cuda":
        where = f"this GPU (compute capability {'.'.join(map(str, torch.cuda.get_device_capability(device)))})"
    else:
        where = f"this CPU ({describe_cpu()})"
    return (f"--dtype {dtype} has no hardware support on {where}: PyTorch emulates it, usually slower than float32 "
            f"(bfloat16 measured 4.6x slower on an AVX2-only CPU); use float32"
            + (", or int8 for Marian-native models" if "int8" in native_dtypes(device) else ""))
