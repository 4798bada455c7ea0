"""What the processor can do, and the device and precision a run uses: the one home of these choices.

:func:`resolve_device` and :func:`resolve_precision` turn the ``auto`` / ``cpu`` / ``cuda`` and ``auto`` / ``fp32``
/ ``bf16`` / ``fp16`` options of the Stylizer, the CLI and training into what runs; the checks below tell them what
the hardware can do.

PyTorch's oneDNN runs bfloat16 convolutions on x86 CPUs only with AVX512-BW/VL/DQ or AVX-NE-CONVERT (else it
raises "mkldnn_convolution: bf16 path needs the cpu support ..."), and fast only with AVX512-BF16 or AMX. Check
your own machine with ``python -c "import impasto.hardware as h; print(h.describe())"``.
"""

from __future__ import annotations

import functools
import os

import torch

from impasto.errors import ConfigError

#: Every precision name impasto knows; ``auto`` resolves to one of the others (:func:`resolve_precision`). Training
#: accepts all of them; inference runs in :data:`INFERENCE_PRECISIONS` only (fp16 is training-only, on CUDA).
PRECISIONS = ("fp32", "bf16", "fp16", "auto")
#: The precisions a style-transfer method runs in: fp32, or bf16 autocast (the Stylizer also accepts ``auto``).
INFERENCE_PRECISIONS = ("fp32", "bf16")
#: Device names of a training config (the Stylizer also takes ``cuda:N`` and ``mps``; see :func:`resolve_device`).
DEVICES = ("auto", "cpu", "cuda")

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


def native_bf16(device: str | torch.device) -> bool:
    """True when ``device`` computes bfloat16 natively (CUDA with bf16, or a CPU with AVX512-BF16 or AMX)."""
    device = str(device)
    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device != "cpu":
        return False
    return cpu_native_bf16()


def resolve_device(device: str | torch.device = "auto", local_rank: int | None = None) -> torch.device:
    """The device a run uses: ``auto`` -> CUDA when a GPU is available, else the CPU.

    ``cpu``, ``cuda``, ``cuda:N`` and ``mps`` are checked: ConfigError for CUDA without a GPU and for an unknown name
    (a training config admits only :data:`DEVICES`, checked before this). ``local_rank`` (torchrun workers): a bare
    ``cuda`` becomes ``cuda:LOCAL_RANK`` modulo the GPUs present; without it it stays ``cuda``. A ``torch.device``
    is returned unchanged.
    """
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device} was asked for but no CUDA GPU is available; use device cpu "
                          "(--device cpu) or auto")
    if device == "cuda" and local_rank is not None:
        return torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
    if device in ("cpu", "mps") or device.startswith("cuda"):
        try:
            return torch.device(device)
        except RuntimeError:
            pass
    raise ConfigError(f"unknown device {device!r}; use auto, cpu or cuda")


def resolve_precision(precision: str, device: str | torch.device, *, training: bool = False,
                      supports_bf16: bool = True) -> str:
    """The precision a run uses (``fp32``, ``bf16`` or ``fp16``) for a name of :data:`PRECISIONS` on ``device``.

    Inference (the Stylizer; ``supports_bf16``: whether the method runs bf16 at all): ``auto`` -> bf16 where the
    device computes bfloat16 natively and the method supports it, else fp32; fp32 and bf16 are accepted, bf16 is
    refused on a CPU that cannot run bf16 convolutions (for a method that would use them).
    Training (``training=True``): ``auto`` -> fp32 on the CPU, bf16 on a CUDA GPU with bf16, else fp16 (with a
    GradScaler); bf16 is refused on a GPU or CPU without it, fp16 anywhere but CUDA. The messages name the
    option as each caller spells it (``--precision`` or ``precision=``). Raises ConfigError.
    """
    cuda = str(device).startswith("cuda")
    if not training:
        if precision == "auto":
            return "bf16" if supports_bf16 and native_bf16(device) else "fp32"
        if precision not in INFERENCE_PRECISIONS:
            raise ConfigError(f"unknown precision {precision!r}; use auto, {', '.join(INFERENCE_PRECISIONS)}")
        if precision == "bf16" and str(device) == "cpu" and supports_bf16 and not cpu_bf16_convolutions():
            raise ConfigError(f"--precision bf16: {BF16_MISSING}; use --precision auto (fp32 here) or fp32")
        return precision
    if precision == "fp32":
        return precision
    if precision == "auto":
        if not cuda:
            return "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision == "bf16":
        if cuda and not torch.cuda.is_bf16_supported():
            raise ConfigError("precision=bf16 is not supported by this GPU; use fp16 or fp32")
        if str(device) == "cpu" and not cpu_bf16_convolutions():
            raise ConfigError(f"precision=bf16: {BF16_MISSING}; train with precision=fp32")
        return precision
    if precision == "fp16":
        if not cuda:
            raise ConfigError("precision=fp16 needs a CUDA GPU; on CPU use bf16 or fp32")
        return precision
    raise ConfigError(f"precision={precision!r} is not valid; choose one of {', '.join(PRECISIONS)}")
