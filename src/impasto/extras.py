"""Optional dependencies: which pip extra brings which feature, and one clear error when it is missing.

``pip install impasto`` installs the library and the CLI (torch, numpy, pillow, typer, rich, pyyaml,
safetensors). The rest comes with extras (``pip install "impasto[all]"`` for everything):

========  ===============================================  ===================================================
extra     packages                                         for
========  ===============================================  ===================================================
video     av, opencv-python-headless                       ``impasto video``, temporal smoothing, video I/O
server    fastapi, fastapi-offline, uvicorn,               ``impasto serve`` (web app and HTTP API)
          python-multipart
eval      matplotlib                                       ``impasto evaluate`` (report plots)
peers     onnxruntime, opencv-python-headless              the ``magenta`` peer, the style-retrieval metric
export    onnx, onnxscript, onnxruntime                    ``impasto export`` (onnxruntime: ``--int8``)
ray       ray[data]                                        ``--engine ray`` (bulk stylisation and video on Ray)
========  ===============================================  ===================================================

A module of impasto that needs one of them calls :func:`require_extra` where it would import it.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from impasto.errors import MissingExtraError

#: extra -> the feature it brings, for the messages
EXTRAS = {
    "video": "video input/output and temporal smoothing",
    "server": "the web app and HTTP API (impasto serve)",
    "eval": "the evaluation report (impasto evaluate)",
    "peers": "the magenta peer and the style-retrieval metric",
    "export": "ONNX export (impasto export)",
    "ray": "--engine ray (bulk stylisation and video on a Ray cluster)",
}


def missing_extra(module: str, extra: str, feature: str | None = None, reason: str = "is not installed") -> str:
    """The one-line message for a missing optional module."""
    what = feature or EXTRAS.get(extra, "this feature of impasto")
    return f'{what} needs {module}, which {reason}: pip install "impasto[{extra}]"'


def _reason(exc: ImportError, module: str) -> str:
    top = module.split(".")[0]
    if isinstance(exc, ModuleNotFoundError) and exc.name in (module, top):
        return "is not installed"
    return f"cannot be imported ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"


def extra_error(exc: ImportError, extra: str, feature: str | None = None) -> MissingExtraError:
    """The MissingExtraError for a failed import of an optional module: ``except ImportError as exc: raise
    extra_error(exc, "video") from None`` around a module's imports of an extra."""
    module = exc.name or "an optional package"
    return MissingExtraError(missing_extra(module, extra, feature, _reason(exc, module)))


def require_extra(module: str, extra: str, feature: str | None = None) -> ModuleType:
    """Import and return ``module``; if it cannot be imported, raise MissingExtraError naming the pip extra.

    The CLI and the server print the message (one line) without a traceback.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(missing_extra(module, extra, feature, _reason(exc, module))) from None


def check_extra(module: str, extra: str, feature: str | None = None) -> None:
    """Like :func:`require_extra` but without importing ``module`` (only looks whether it is installed)."""
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise MissingExtraError(missing_extra(module, extra, feature))
