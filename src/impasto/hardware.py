"""What the processor can do: the capability checks behind impasto's hardware-specific paths.

PyTorch's oneDNN runs bfloat16 convolutions on x86 CPUs only with AVX512-BW/VL/DQ or AVX-NE-CONVERT (else it
raises "mkldnn_convolution: bf16 path needs the cpu support ..."), and fast only with AVX512-BF16 or AMX. Check
your own machine with ``python -c "import impasto.hardware as h; print(h.describe())"``.
"""

from __future__ import annotations

import functools
import os

import torch

#: Set to 1 to make impasto treat the CPU as one without bfloat16 (auto precision picks fp32, forced bf16 is refused).
NO_BF16_ENV = "IMPASTO_NO_BF16"
BF16_MISSING = ("this CPU cannot run bfloat16 convolutions (PyTorch's oneDNN needs AVX512-BW/VL/DQ or AVX-NE-CONVERT)")


@functools.lru_cache(maxsize=1)
def _cpu_bf16_convolutions() -> bool:
    try:
        if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return False
    except (AttributeError, RuntimeError):
        pass  # no such probe in this torch: the trial conv decides
    try:  # a trial conv through the same path the models take (channels-last, 3x3)
        x = torch.ones(1, 16, 8, 8, dtype=torch.bfloat16).contiguous(memory_format=torch.channels_last)
        w = torch.ones(16, 16, 3, 3, dtype=torch.bfloat16)
        y = torch.nn.functional.conv2d(x, w, padding=1)
        return bool(float(y[0, 0, 4, 4]) == 144.0)
    except RuntimeError:
        return False


def cpu_bf16_convolutions() -> bool:
    """True when this CPU can run bfloat16 convolutions at all (emulated or native); ``IMPASTO_NO_BF16=1`` -> False."""
    if os.environ.get(NO_BF16_ENV, "") not in ("", "0"):
        return False
    return _cpu_bf16_convolutions()


def cpu_native_bf16() -> bool:
    """True when this CPU computes bfloat16 natively (AVX512-BF16 or AMX tiles), so bf16 is faster than fp32."""
    if not cpu_bf16_convolutions():
        return False
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # older torch without these probes: assume emulated (slow) bf16
        return False


def describe() -> str:
    """One line: the CPU's bf16 support as impasto sees it."""
    if cpu_native_bf16():
        return "bf16: native (AVX512-BF16 or AMX); --precision auto uses bf16"
    if cpu_bf16_convolutions():
        return "bf16: emulated (slower than fp32); --precision auto uses fp32, --precision bf16 works"
    return f"bf16: not available ({BF16_MISSING}); --precision auto uses fp32, --precision bf16 is refused"


def cpu_name() -> str:
    """The processor's model name (from /proc/cpuinfo on Linux), for benchmark tables and model cards."""
    import platform

    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"
