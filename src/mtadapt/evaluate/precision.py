"""Which precisions the device runs natively, the default for generation, and a warning when
a requested precision would be emulated.

    CPU   bfloat16 native with AVX512_BF16 or AMX-BF16; float16 with AVX512_FP16 or AMX-FP16;
          int8 (Marian-native models, fbgemm) with AVX2 or better. Otherwise PyTorch emulates
          them: on an AVX2-only EPYC, Marian-native greedy decoding in bfloat16 took 102.8 s
          per 1,000 verses against 22.0 s in float32 (4.6x slower).
    CUDA  bfloat16 native from compute capability 8.0, float16 from 7.0.

Default (no --dtype): bfloat16 where it is native (CUDA >= 8.0, CPUs with bf16 units),
else float32. int8 is never a default: it is for Marian-native models and changes outputs.
"""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path

import torch


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux `/proc/cpuinfo`); empty where they cannot be read."""
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
    return f"capability {torch.backends.cpu.get_cpu_capability()}; flags {' '.join(interesting) or 'unknown'}"


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
    if torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512") or "avx2" in flags:
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
