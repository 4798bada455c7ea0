"""The papers' evaluation studies as functions: each writes a CSV, a PNG plot and a markdown section.

Studies (``run_evaluation`` runs any subset, ``impasto evaluate`` is its CLI):

1. style-loss distributions (classic Gram loss and balanced loss, real VGG-19 relu1_1..relu3_1) over
   content x style pairs per method, and the max/min spread of the classic loss across styles
   (balanced-loss paper, Cheng et al. CVPR 2021, Sec. 3-4, eq. 6-7 and 13);
2. the classic loss against its supremum ``(||G_S||^2 + ||G_P||^2) / N`` (the same paper, eq. 11):
   Pearson r per layer;
3. AdaIN trained with the classic vs the balanced style loss: both losses, Magenta-embedding retrieval
   rate (Table 6's deception rate, see :mod:`impasto.evaluation.retrieval`), SSIM and edge correlation;
4. encoder latent consistency (contrastive encoder refinement paper, Figure 1; :func:`latent_consistency`);
5. video stability: warping error (Lai et al. 2018) per method on short clips, plus the unstylised floor;
6. seconds per 300 x 500 image per method (style-swap paper, Table 1).

Everything is deterministic for a seed except the timings of study 6.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from impasto.errors import ConfigError
from impasto.evaluation import report as rp
from impasto.evaluation.latent import latent_consistency
from impasto.evaluation.metrics import (
    balanced_style_distance,
    edge_correlation,
    gram_matrix,
    gram_style_distance,
    grid_artifact_score,
    ssim,
)
from impasto.modelfile import load_model

__all__ = [
    "ALL_STUDIES",
    "EvalContext",
    "make_context",
    "parse_studies",
    "run_evaluation",
    "study_encoder_consistency",
    "study_loss_distributions",
    "study_loss_vs_supremum",
    "study_timing",
    "study_trained_adain",
    "study_video_stability",
]

ALL_STUDIES = (1, 2, 3, 4, 5, 6)
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1")
DEFAULT_METHODS = ("adain", "wct", "microast", "magenta", "style-swap")
Progress = Callable[[str, int], None]  # (description of the next step, number of steps of this study)


def _noop(_: str, __: int = 0) -> None:
    return None


@dataclass
class EvalContext:
    """Inputs shared by the studies: image lists, sampled pairs, sizes and caches.

    ``pairs`` are (content index, style index) tuples drawn with a seeded generator; images are loaded once,
    long side capped at ``max_size``, as 1 x 3 x H x W tensors in [0, 1].
    """

    contents: list[Path]
    styles: list[Path]
    methods: list[str]
    pairs: list[tuple[int, int]]
    max_size: int = 256
    seed: int = 0
    video_dir: Path | None = None
    sources_csv: Path | None = None
    progress: Progress = _noop
    _images: dict[Path, torch.Tensor] = field(default_factory=dict)
    _stylizers: dict[tuple[str, str], Any] = field(default_factory=dict)
    _outputs: dict[tuple[str, str, int], torch.Tensor] = field(default_factory=dict)

    def image(self, path: Path, max_size: int | None = None) -> torch.Tensor:
        """The image at ``path``, long side <= ``max_size`` (default the context's), 1 x 3 x H x W."""
        from impasto.io.images import image_to_tensor, load_image, resize_max

        size = max_size or self.max_size
        key = Path(f"{path}@{size}")
        if key not in self._images:
            self._images[key] = image_to_tensor(resize_max(load_image(path), size))
        return self._images[key]

    def stylizer(self, method: str, checkpoint: str | None = None, **options: Any) -> Any:
        """A cached :class:`impasto.pipeline.Stylizer` (CPU, styles encoded at ``max_size``)."""
        from impasto.pipeline import Stylizer

        key = (method, f"{checkpoint}|{sorted(options.items())}")
        if key not in self._stylizers:
            if checkpoint is not None:
                options = {**options, "checkpoint": str(checkpoint)}
            # fp32: the studies measure the models, not bf16 rounding
            self._stylizers[key] = Stylizer(
                method, device="cpu", precision="fp32", style_size=self.max_size, **options
            )
        return self._stylizers[key]

    def stylize(self, method: str, pair_idx: int, checkpoint: str | None = None) -> torch.Tensor:
        """Output of ``method`` on pair ``pair_idx`` (cached), 1 x 3 x H x W in [0, 1], content's size."""
        key = (method, str(checkpoint), pair_idx)
        if key not in self._outputs:
            ci, si = self.pairs[pair_idx]
            content, style = self.image(self.contents[ci]), self.image(self.styles[si])
            torch.manual_seed(self.seed)
            with torch.no_grad():
                out = self.stylizer(method, checkpoint).stylize_tensor(content, style)
            self._outputs[key] = _match_size(out.float().clamp(0, 1), content.shape[-2:])
        return self._outputs[key]


def _match_size(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False).clamp(0, 1)


def _sample_pairs(n_content: int, n_style: int, n: int, seed: int) -> list[tuple[int, int]]:
    """``n`` distinct (content, style) index pairs, drawn without replacement by a seeded generator."""
    total = n_content * n_style
    n = min(n, total)
    gen = torch.Generator().manual_seed(seed)
    flat = torch.randperm(total, generator=gen)[:n].tolist()
    return [(i // n_style, i % n_style) for i in flat]


def make_context(
    content_dir: str | Path,
    style_dir: str | Path,
    methods: Sequence[str] | None = None,
    *,
    pairs: int = 24,
    seed: int = 0,
    max_size: int = 256,
    video_dir: str | Path | None = None,
    sources_csv: str | Path | None = None,
    progress: Progress | None = None,
) -> EvalContext:
    """Check the options and build an :class:`EvalContext` (images are loaded lazily).

    Raises ConfigError naming the option for: missing folders, fewer than 2 images, unknown or unavailable
    methods, ``pairs < 2``, ``max_size < 32``.
    """
    from impasto.io.images import iter_image_files
    from impasto.methods import availability, method_names

    if not isinstance(pairs, int) or pairs < 2:
        raise ConfigError(f"--pairs must be an integer >= 2, got {pairs!r}")
    if not isinstance(max_size, int) or max_size < 32:
        raise ConfigError(f"--max-size must be an integer >= 32, got {max_size!r}")
    lists = []
    for opt, d in (("--content", content_dir), ("--style", style_dir)):
        p = Path(d)
        if not p.is_dir():
            raise ConfigError(f"{opt} {p} is not a folder; pass a folder of images")
        files = iter_image_files(p)
        if len(files) < 2:
            raise ConfigError(f"{opt} {p} holds {len(files)} image(s); the evaluation needs at least 2")
        lists.append(list(files))
    methods = list(DEFAULT_METHODS if methods is None else methods)
    if not methods:
        raise ConfigError("--methods is empty; name at least one method, e.g. --methods adain,wct")
    known = method_names()
    for m in methods:
        if m not in known:
            raise ConfigError(f"--methods: unknown method {m!r}; known methods: {', '.join(known)}")
        ok, why = availability(m)
        if not ok:
            raise ConfigError(f"--methods: {m} cannot run here: {why}")
    vdir = None
    if video_dir is not None:
        vdir = Path(video_dir)
        if not vdir.is_dir():
            raise ConfigError(f"--video {vdir} is not a folder; pass a folder of video files or frame folders")
    src = Path(sources_csv) if sources_csv is not None else Path(style_dir).parent / "SOURCES.csv"
    return EvalContext(
        contents=lists[0], styles=lists[1], methods=methods,
        pairs=_sample_pairs(len(lists[0]), len(lists[1]), pairs, seed),
        max_size=max_size, seed=seed, video_dir=vdir, sources_csv=src if src.is_file() else None,
        progress=progress or _noop,
    )


# ----------------------------------------------------------------------------------------------- helpers


def _vgg() -> Any:
    from impasto.backbones import load_encoder

    return load_encoder("vgg19", "relu3_1")


@torch.no_grad()
def _style_terms(out: torch.Tensor, style: torch.Tensor) -> dict[str, dict[str, float]]:
    """Classic Gram loss, its supremum and the balanced loss per layer (real VGG relu1_1..relu3_1).

    Supremum (balanced-loss paper eq. 11, N = C^2 Gram entries, the MSE's divisor; see
    :func:`impasto.evaluation.metrics.balanced_style_distance`): ``(||G_S||^2 + ||G_P||^2) / C^2``.
    """
    enc = _vgg()
    fo, fs = enc(out, list(STYLE_LAYERS)), enc(style, list(STYLE_LAYERS))
    classic = gram_style_distance(fo, fs, STYLE_LAYERS)
    balanced = balanced_style_distance(fo, fs, STYLE_LAYERS)
    res: dict[str, dict[str, float]] = {}
    for layer in STYLE_LAYERS:
        go, gs = gram_matrix(fo[layer]), gram_matrix(fs[layer])
        c = go.shape[-1]
        sup = float((go.pow(2).sum() + gs.pow(2).sum()) / (c * c))
        res[layer] = {"classic": float(classic[layer][0]), "balanced": float(balanced[layer][0]), "sup": sup}
    res["total"] = {"classic": float(classic["total"][0]), "balanced": float(balanced["total"][0]),
                    "sup": sum(res[k]["sup"] for k in STYLE_LAYERS)}
    return res


def _pearson(x: Sequence[float], y: Sequence[float]) -> float:
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if a.size < 2 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def _per_style_spread(rows: list[dict[str, Any]], key: str) -> tuple[float, float, float]:
    """(min, max, max/min) over styles of the mean of ``key`` per style."""
    by: dict[str, list[float]] = {}
    for r in rows:
        by.setdefault(r["style"], []).append(float(r[key]))
    means = [float(np.mean(v)) for v in by.values()]
    lo, hi = min(means), max(means)
    return lo, hi, (hi / lo if lo > 0 else float("inf"))


def _loss_rows(ctx: EvalContext, method: str, checkpoint: str | None = None, label: str | None = None
               ) -> list[dict[str, Any]]:
    rows = []
    for k, (ci, si) in enumerate(ctx.pairs):
        ctx.progress(f"{label or method}: pair {k + 1}/{len(ctx.pairs)}", 0)
        out = ctx.stylize(method, k, checkpoint)
        terms = _style_terms(out, ctx.image(ctx.styles[si]))
        row: dict[str, Any] = {"method": label or method, "content": ctx.contents[ci].name,
                               "style": ctx.styles[si].name}
        for layer, t in terms.items():
            for name, v in t.items():
                row[f"{name}_{layer}"] = v
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------------------------- study 1


def study_loss_distributions(ctx: EvalContext, out_dir: str | Path) -> dict[str, Any]:
    """Study 1: classic vs balanced style loss over the sampled pairs, per method.

    Writes ``study1_losses.csv`` (one row per method x pair: classic_/balanced_/sup_ per layer and total),
    ``study1_hist.png``. Returns ``{"rows", "summary" (per method: medians, spread), "markdown"}``.
    """
    out = Path(out_dir)
    rows: list[dict[str, Any]] = []
    for m in ctx.methods:
        rows += _loss_rows(ctx, m)
    rp.write_csv(rows, out / "study1_losses.csv")
    summary = []
    for m in ctx.methods:
        r = [x for x in rows if x["method"] == m]
        c_lo, c_hi, c_sp = _per_style_spread(r, "classic_total")
        b_lo, b_hi, b_sp = _per_style_spread(r, "balanced_total")
        cl = [x["classic_total"] for x in r]
        summary.append({
            "method": m, "n": len(r), "classic_median": float(np.median(cl)),
            "classic_pair_spread": max(cl) / min(cl) if min(cl) > 0 else float("inf"),
            "classic_style_spread": c_sp, "balanced_median": float(np.median([x["balanced_total"] for x in r])),
            "balanced_min": min(x["balanced_total"] for x in r), "balanced_max": max(x["balanced_total"] for x in r),
            "balanced_layer_max": max(x[f"balanced_{k}"] for x in r for k in STYLE_LAYERS),
            "balanced_style_spread": b_sp,
        })
    rp.write_csv(summary, out / "study1_summary.csv")
    rp.histogram_png(
        {"classic Gram loss (sum relu1_1..3_1)": {m: [x["classic_total"] for x in rows if x["method"] == m]
                                                   for m in ctx.methods},
         "balanced loss (sum, each layer in [0,1])": {m: [x["balanced_total"] for x in rows
                                                          if x["method"] == m] for m in ctx.methods}},
        out / "study1_hist.png", "Study 1: style-loss distributions over content x style pairs")
    md = [
        "## Study 1: style-loss distributions across content x style pairs",
        f"{len(ctx.pairs)} (content, style) pairs per method; losses on the real VGG-19 at relu1_1, relu2_1, "
        "relu3_1 (summed), output vs style image, Gram G = F F^T / (C H W). *Style spread* = max/min over "
        "styles of the per-style mean loss; *pair spread* = max/min over pairs. Raw: `study1_losses.csv`.",
        rp.md_table(["method", "pairs", "classic median", "classic pair spread", "classic style spread",
                     "balanced median", "balanced min", "balanced max", "max balanced per layer",
                     "balanced style spread"],
                    [[s["method"], s["n"], s["classic_median"], s["classic_pair_spread"],
                      s["classic_style_spread"], s["balanced_median"], s["balanced_min"], s["balanced_max"],
                      s["balanced_layer_max"], s["balanced_style_spread"]] for s in summary]),
        "![study 1](study1_hist.png)",
    ]
    return {"rows": rows, "summary": summary, "markdown": "\n\n".join(md)}


# ----------------------------------------------------------------------------------------------- study 2


def study_loss_vs_supremum(ctx: EvalContext, out_dir: str | Path, rows: list[dict[str, Any]] | None = None
                           ) -> dict[str, Any]:
    """Study 2: classic loss vs its supremum per layer (Pearson r on raw and on log values), all methods.

    Reuses study 1's rows when given. Writes ``study2_correlation.csv`` and ``study2_scatter.png``.
    """
    out = Path(out_dir)
    if rows is None:
        rows = []
        for m in ctx.methods:
            rows += _loss_rows(ctx, m)
    res = []
    panels = {}
    for layer in (*STYLE_LAYERS, "total"):
        x = [r[f"sup_{layer}"] for r in rows]
        y = [r[f"classic_{layer}"] for r in rows]
        ratio = [b / a for a, b in zip(x, y, strict=True) if a > 0]
        res.append({"layer": layer, "n": len(x), "pearson_r": _pearson(x, y),
                    "pearson_r_log": _pearson(np.log10(np.maximum(x, 1e-30)), np.log10(np.maximum(y, 1e-30))),
                    "classic_over_sup_max": max(ratio) if ratio else float("nan")})
        panels[layer] = (x, y)
    rp.write_csv(res, out / "study2_correlation.csv")
    rp.scatter_png(panels, out / "study2_scatter.png", "Study 2: classic Gram loss vs its supremum",
                   "supremum (||G_S||^2+||G_P||^2)/C^2", "classic loss")
    md = [
        "## Study 2: classic loss vs its supremum",
        f"All {len(rows)} (method, pair) outputs of study 1. Supremum per the balanced-loss paper eq. 11 "
        "with N = C^2 (the MSE's divisor), so classic / supremum = balanced loss <= 1.",
        rp.md_table(["layer", "n", "Pearson r", "Pearson r (log-log)", "max classic/sup"],
                    [[r["layer"], r["n"], r["pearson_r"], r["pearson_r_log"], r["classic_over_sup_max"]]
                     for r in res]),
        "![study 2](study2_scatter.png)",
    ]
    return {"rows": res, "markdown": "\n\n".join(md)}


# ----------------------------------------------------------------------------------------------- study 3


def _to_np(x: torch.Tensor) -> np.ndarray:
    return x[0].permute(1, 2, 0).cpu().numpy()


def study_trained_adain(ctx: EvalContext, out_dir: str | Path, checkpoint_classic: str | Path,
                        checkpoint_balanced: str | Path, magenta: str | Path | None = None,
                        labels: tuple[str, str] = ("classic", "balanced")) -> dict[str, Any]:
    """Study 3: AdaIN decoders trained with the classic vs the balanced style loss, on the same pairs.

    Per model: classic and balanced losses (median), Magenta retrieval top-1/top-5 and same-artist rate
    (gallery = every style image), SSIM and edge correlation against the content, grid artefacts
    (:func:`~impasto.evaluation.metrics.grid_artifact_score`). Writes
    ``study3_pairs.csv``, ``study3_summary.csv`` and ``study3_grid.png`` (the 4 pairs whose balanced loss
    differs most between the two models).
    """
    from impasto.evaluation.retrieval import MagentaStyleEncoder, load_artists, retrieval_rate

    out = Path(out_dir)
    models = {}
    for opt, p in (("--checkpoint-classic", checkpoint_classic), ("--checkpoint-balanced", checkpoint_balanced)):
        if p is None or not Path(p).is_file():
            raise ConfigError(f"{opt}: {p} is not a file; pass an AdaIN model.pt from 'impasto train adain'")
    models = {labels[0]: str(checkpoint_classic), labels[1]: str(checkpoint_balanced)}
    steps = {}
    for name, ck in models.items():
        state = load_model(ck)
        steps[name] = state.get("step")
    enc = MagentaStyleEncoder(magenta, intra_op_num_threads=1)
    gallery_imgs = [ctx.image(p) for p in ctx.styles]
    gallery = enc.embed(gallery_imgs)
    artists = load_artists(ctx.sources_csv) if ctx.sources_csv is not None else {}
    style_artist = [artists.get(f"style/{p.name}") for p in ctx.styles]
    rows: list[dict[str, Any]] = []
    summary = []
    for name, ck in models.items():
        lrows = _loss_rows(ctx, "adain", ck, label=f"adain-{name}")
        outs = [ctx.stylize("adain", k, ck) for k in range(len(ctx.pairs))]
        for k, ((ci, _), r) in enumerate(zip(ctx.pairs, lrows, strict=True)):
            c = ctx.image(ctx.contents[ci])
            r["ssim"] = float(ssim(outs[k], c)[0])
            r["edge_corr"] = float(edge_correlation(outs[k], c)[0])
            r["grid"] = float(grid_artifact_score(outs[k])[0])
        ret = retrieval_rate(enc.embed(outs), gallery, [si for _, si in ctx.pairs], style_artist)
        for r, rank in zip(lrows, ret["rank"], strict=True):
            r["retrieval_rank"] = int(rank)
        rows += lrows
        summary.append({"model": name, "checkpoint": ck, "step": steps[name],
                        "classic_median": float(np.median([r["classic_total"] for r in lrows])),
                        "balanced_median": float(np.median([r["balanced_total"] for r in lrows])),
                        "retrieval_top1": ret["top1"], "retrieval_top5": ret["top5"],
                        "same_artist": ret["same_artist"], "n_artist": ret["n_artist"],
                        "ssim": float(np.mean([r["ssim"] for r in lrows])),
                        "edge_corr": float(np.mean([r["edge_corr"] for r in lrows])),
                        "grid": float(np.mean([r["grid"] for r in lrows]))})
    rp.write_csv(rows, out / "study3_pairs.csv")
    rp.write_csv(summary, out / "study3_summary.csv")
    n = len(ctx.pairs)
    diff = [abs(rows[k]["balanced_total"] - rows[n + k]["balanced_total"]) for k in range(n)]
    top = sorted(range(n), key=lambda k: -diff[k])[:4]
    grid = [[_to_np(ctx.image(ctx.contents[ctx.pairs[k][0]])), _to_np(ctx.image(ctx.styles[ctx.pairs[k][1]])),
             _to_np(ctx.stylize("adain", k, models[labels[0]])), _to_np(ctx.stylize("adain", k, models[labels[1]]))]
            for k in top]
    rp.grid_png(grid, ["content", "style", f"{labels[0]} AdaIN", f"{labels[1]} AdaIN"], out / "study3_grid.png",
                [f"{ctx.styles[ctx.pairs[k][1]].name[:28]}" for k in top])
    md = [
        f"## Study 3: AdaIN trained two ways: {labels[0]} vs {labels[1]}",
        f"Checkpoints: {labels[0]} `{models[labels[0]]}` (step {steps[labels[0]]}), {labels[1]} "
        f"`{models[labels[1]]}` (step {steps[labels[1]]}); the {n} pairs of "
        "study 1. Retrieval: Magenta style embedding of each output, nearest of all "
        f"{len(ctx.styles)} style images (top-1/top-5 = exact painting; same-artist over pairs whose artist is "
        "known in SOURCES.csv). SSIM and edge correlation against the content photo. Grid: "
        "`grid_artifact_score` (share of the fine detail locked to the 8-pixel grid of the decoder's up-sampling; "
        "lower is cleaner), mean over the pairs.",
        rp.md_table(["model", "classic median", "balanced median", "retrieval top-1", "top-5",
                     "same artist (n)", "SSIM", "edge corr.", "grid"],
                    [[s["model"], s["classic_median"], s["balanced_median"], s["retrieval_top1"],
                      s["retrieval_top5"], f"{rp.fmt(s['same_artist'])} ({s['n_artist']})", s["ssim"],
                      s["edge_corr"], s["grid"]] for s in summary]),
        "Pairs where the two models' balanced losses differ most:\n\n![study 3](study3_grid.png)",
    ]
    return {"rows": rows, "summary": summary, "markdown": "\n\n".join(md)}


# ----------------------------------------------------------------------------------------------- study 4


def _encoder_fn(enc: Any, layers: Sequence[str]) -> Callable[[torch.Tensor], dict[str, torch.Tensor]]:
    return lambda x: enc(x, list(layers))


def study_encoder_consistency(ctx: EvalContext, out_dir: str | Path, refined_checkpoint: str | Path | None = None,
                              n: int = 4, max_styles: int = 24) -> dict[str, Any]:
    """Study 4: latent consistency (fraction of painting pairs closer than a painting and its reshuffle).

    Encoders: the real VGG-19 (relu1_1..relu3_1), the distilled 16x VGG (relu1_1..relu3_1 and
    relu1_1..relu5_1) and, if ``refined_checkpoint`` holds ``encoder_state``, that refined encoder.
    Styles: the first ``max_styles`` distinct styles of the sampled pairs. Writes ``study4_consistency.csv``
    and ``study4_distances.png`` (self vs pair distance distributions).
    """
    from impasto.backbones import load_encoder

    out = Path(out_dir)
    idx = list(dict.fromkeys(si for _, si in ctx.pairs))[:max_styles]
    if len(idx) < 2:
        raise ConfigError("study 4 needs at least 2 different style images; raise --pairs")
    styles = [ctx.image(ctx.styles[i]) for i in idx]
    encoders: list[tuple[str, Any, Sequence[str]]] = [
        ("vgg19 relu1_1-3_1", load_encoder("vgg19", "relu3_1"), STYLE_LAYERS),
        ("vgg19-16x relu1_1-3_1", load_encoder("vgg19-16x", "relu3_1"), STYLE_LAYERS),
        ("vgg19-16x relu1_1-5_1", load_encoder("vgg19-16x", "relu5_1"), (*STYLE_LAYERS, "relu4_1", "relu5_1")),
    ]
    if refined_checkpoint is not None:
        p = Path(refined_checkpoint)
        if not p.is_file():
            raise ConfigError(f"--checkpoint-refined {p} is not a file")
        ck = load_model(p)
        if "encoder_state" not in ck:
            raise ConfigError(f"{p} has no 'encoder_state'; pass a model.pt from 'impasto train refine-encoder'")
        from impasto.methods.common import checkpoint_encoder

        try:
            # SANet-based models read relu4_1 and relu5_1: their encoder reaches relu5_1 whatever "depth" says
            reach = "relu5_1" if ck.get("method") in ("sanet", "iecontraast") else ck["depth"]
            enc = checkpoint_encoder(ck["encoder"], reach, ck)
        except KeyError as exc:
            raise ConfigError(f"{p} is not an impasto model file (missing {exc})") from None
        layers = [x for x in (*STYLE_LAYERS, "relu4_1", "relu5_1") if x in enc.layer_names]
        span = f"{layers[0][4:]}-{layers[-1][4:]}"
        # the same encoder before refinement, on the same layers, so the two rows compare like with like
        encoders.append((f"pretrained {ck['encoder']} {span}", load_encoder(ck["encoder"], reach), layers))
        encoders.append((f"refined {ck['encoder']} {span}", enc.eval(), layers))
    rows, panels = [], {}
    for name, enc, layers in encoders:
        ctx.progress(f"latent consistency: {name}", 0)
        res = latent_consistency(_encoder_fn(enc, layers), styles, n=n, layers=layers, seed=ctx.seed)
        off = ~torch.eye(len(styles), dtype=torch.bool)
        rows.append({"encoder": name, "paintings": len(styles), "n_pairs": res["n_pairs"], "blocks": n,
                     "fraction": res["fraction"], "mean_self_distance": res["mean_self_distance"],
                     "mean_pair_distance": res["mean_pair_distance"],
                     "median_pair_over_self": float(
                         (res["pair_distance"] / res["self_distance"].clamp_min(1e-30).view(-1, 1))[off].median())})
        panels[name] = (res["self_distance"].tolist(), res["pair_distance"][off].view(len(styles), -1)
                        .mean(1).tolist())
    rp.write_csv(rows, out / "study4_consistency.csv")
    rp.scatter_png(panels, out / "study4_distances.png",
                   "Study 4: painting vs its reshuffle (x) and mean distance to other paintings (y)",
                   "Gram distance to own reshuffle", "mean Gram distance to other paintings")
    md = [
        "## Study 4: encoder latent consistency (encoder-refinement paper, Figure 1)",
        f"{len(styles)} paintings (long side {ctx.max_size}), each reshuffled in {n} x {n} blocks (seed "
        f"{ctx.seed}); *fraction* = share of the {len(styles) * (len(styles) - 1)} ordered pairs of different "
        "paintings whose Gram distance is smaller than the first painting's distance to its own reshuffle "
        "(0 = perfectly consistent). Points below the diagonal of the plot are inconsistent paintings.",
        rp.md_table(["encoder", "paintings", "fraction", "mean d(self, reshuffle)", "mean d(painting, other)",
                     "median d(pair)/d(self)"],
                    [[r["encoder"], r["paintings"], r["fraction"], r["mean_self_distance"],
                      r["mean_pair_distance"], r["median_pair_over_self"]] for r in rows]),
        "![study 4](study4_distances.png)",
    ]
    return {"rows": rows, "markdown": "\n\n".join(md)}


# ----------------------------------------------------------------------------------------------- study 5


def _clips(video_dir: Path) -> list[Path]:
    from impasto.io.images import iter_image_files

    items = []
    for p in sorted(video_dir.iterdir()):
        if p.is_dir() and iter_image_files(p):
            items.append(p)
        elif p.is_file() and p.suffix.lower() in (".mp4", ".mov", ".avi", ".mkv", ".webm", ".gif"):
            items.append(p)
    return items


def _frames(src: Path, n: int, size: int) -> np.ndarray:
    from PIL import Image

    from impasto.io.images import resize_max
    from impasto.io.video import read_frames

    frames = read_frames(src, max_frames=n)
    return np.stack([np.asarray(resize_max(Image.fromarray(f), size)) for f in frames])


def study_video_stability(ctx: EvalContext, out_dir: str | Path, n_frames: int = 8, size: int = 192
                          ) -> dict[str, Any]:
    """Study 5: warping error (Lai et al. 2018, L1 over RGB in [0, 1]) per method and clip, per frame.

    Each clip is cut to ``n_frames`` frames with long side ``size``; the style is the first sampled pair's
    style. The floor is the error of the unstylised frames. Writes ``study5_warping.csv`` and
    ``study5_warping.png``.
    """
    from impasto.temporal import warping_error

    out = Path(out_dir)
    if ctx.video_dir is None:
        raise ConfigError("study 5 needs --video DIR (a folder of video files or frame folders)")
    clips = _clips(ctx.video_dir)
    if not clips:
        raise ConfigError(f"--video {ctx.video_dir} holds no video files (.mp4, .mov, ...) or frame folders")
    style_path = ctx.styles[ctx.pairs[0][1]]
    style = ctx.image(style_path)
    rows = []
    for clip in clips:
        frames = _frames(clip, n_frames, min(size, ctx.max_size))
        rows.append({"clip": clip.name, "method": "unstylised (floor)", "frames": len(frames),
                     "warping_error": warping_error(frames, frames)})
        for m in ctx.methods:
            ctx.progress(f"video {clip.name}: {m}", 0)
            st = ctx.stylizer(m)
            outs = []
            for f in frames:
                x = torch.from_numpy(f).permute(2, 0, 1)[None].float() / 255.0
                torch.manual_seed(ctx.seed)
                with torch.no_grad():
                    y = _match_size(st.stylize_tensor(x, style).float().clamp(0, 1), x.shape[-2:])
                outs.append((y[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
            rows.append({"clip": clip.name, "method": m, "frames": len(frames),
                         "warping_error": warping_error(np.stack(outs), frames)})
    rp.write_csv(rows, out / "study5_warping.csv")
    methods = ["unstylised (floor)", *ctx.methods]
    means = {m: float(np.mean([r["warping_error"] for r in rows if r["method"] == m])) for m in methods}
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.bar(range(len(methods)), [means[m] for m in methods])
    ax.set_xticks(range(len(methods)), methods, rotation=30, fontsize=7)
    ax.set_ylabel("warping error (mean over clips)")
    fig.tight_layout()
    rp.save_figure(fig, out / "study5_warping.png")
    clip_names = [c.name for c in clips]
    table = [[m, *[next(r["warping_error"] for r in rows if r["method"] == m and r["clip"] == c)
                   for c in clip_names], means[m]] for m in methods]
    md = [
        "## Study 5: video stability (warping error)",
        f"Each clip cut to its first {n_frames} frames, long side {min(size, ctx.max_size)}; every frame stylised "
        f"independently with style `{style_path.name}` (no temporal smoothing). Warping error = mean absolute "
        "RGB difference (in [0, 1]) between output frame t and the flow-warped output frame t-1 over "
        "non-occluded pixels (DIS flow on the input frames); lower is more stable.",
        rp.md_table(["method", *clip_names, "mean"], table),
        "![study 5](study5_warping.png)",
    ]
    return {"rows": rows, "markdown": "\n\n".join(md)}


# ----------------------------------------------------------------------------------------------- study 6


def study_timing(ctx: EvalContext, out_dir: str | Path, size: tuple[int, int] = (300, 500),
                 gatys_steps: int | None = 20, repeats: int = 2) -> dict[str, Any]:
    """Study 6: seconds per ``size`` (H x W) image per method (first call = warm-up, not counted).

    Methods: the context's methods, plus gatys with ``gatys_steps`` L-BFGS steps (None: left out). The style
    image is encoded once (cached by the Stylizer), as in a batch run. Writes ``study6_timing.csv`` and
    ``study6_timing.png``.
    """
    out = Path(out_dir)
    h, w = size
    content = F.interpolate(ctx.image(ctx.contents[ctx.pairs[0][0]], 1024), size=(h, w), mode="bilinear",
                            align_corners=False, antialias=True).clamp(0, 1)
    style = ctx.image(ctx.styles[ctx.pairs[0][1]])
    runs: list[tuple[str, dict[str, Any]]] = [(m, {}) for m in ctx.methods]
    if gatys_steps is not None and "gatys" not in ctx.methods:
        runs.append(("gatys", {"steps": int(gatys_steps)}))
    rows = []
    threads = torch.get_num_threads()
    for m, opts in runs:
        ctx.progress(f"timing {m}", 0)
        st = ctx.stylizer(m, **opts)
        times = []
        with torch.no_grad() if m != "gatys" else torch.enable_grad():
            for i in range(repeats + 1):
                torch.manual_seed(ctx.seed)
                t0 = time.perf_counter()
                st.stylize_tensor(content, style, max_size=max(h, w))
                if i > 0:
                    times.append(time.perf_counter() - t0)
        label = f"gatys ({opts['steps']} steps)" if m == "gatys" else m
        rows.append({"method": label, "height": h, "width": w, "threads": threads,
                     "seconds": float(np.median(times)), "seconds_min": float(min(times))})
    rp.write_csv(rows, out / "study6_timing.csv")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.barh([r["method"] for r in rows], [r["seconds"] for r in rows])
    ax.set_xscale("log")
    ax.set_xlabel(f"seconds per {h}x{w} image ({threads} CPU thread(s))")
    fig.tight_layout()
    rp.save_figure(fig, out / "study6_timing.png")
    md = [
        "## Study 6: time per image",
        f"Content {h} x {w}, style long side {ctx.max_size} (encoded once, cached), CPU, {threads} torch "
        f"thread(s), median of {repeats} runs after a warm-up run. Gatys runs only {gatys_steps} L-BFGS steps "
        "here (a real Gatys run uses hundreds), so its time is a lower bound. Timings depend on machine load.",
        rp.md_table(["method", "seconds / image", "fastest"], [[r["method"], r["seconds"], r["seconds_min"]]
                                                                 for r in rows]),
        "![study 6](study6_timing.png)",
    ]
    return {"rows": rows, "markdown": "\n\n".join(md)}


# ----------------------------------------------------------------------------------------------- driver


def parse_studies(spec: str | Sequence[int] | None) -> list[int]:
    """``"1,2,5"`` (or a list) -> sorted study numbers; ConfigError for anything outside 1..6."""
    if spec is None:
        return list(ALL_STUDIES)
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out = set()
    for it in items:
        s = str(it).strip()
        if not s:
            continue
        if not s.isdigit() or int(s) not in ALL_STUDIES:
            raise ConfigError(f"--studies: {s!r} is not a study number; choose from 1,2,3,4,5,6 (e.g. --studies 1,2)")
        out.add(int(s))
    if not out:
        raise ConfigError("--studies is empty; choose from 1,2,3,4,5,6")
    return sorted(out)


def _findings(results: dict[int, dict[str, Any]]) -> str:
    """Plain statements of which paper findings these numbers reproduce."""
    lines = ["## Findings: reproduced or not", ""]
    if 1 in results:
        summ = results[1]["summary"]
        sp = [s["classic_style_spread"] for s in summ]
        bmax = max(s["balanced_layer_max"] for s in summ)
        big = [s["method"] for s in summ if s["classic_style_spread"] > 1000]
        verdict = ("reproduced for every method" if len(big) == len(summ) else
                   f"reproduced only for {', '.join(big)}" if big else "not reproduced")
        lines.append(f"- **Classic loss varies > 1000x across styles** (balanced-loss paper): {verdict} with "
                     f"{len(results[1]['rows']) // max(1, len(summ))} pairs per method: max/min of the per-style "
                     f"mean classic loss is " + ", ".join(f"{s['method']} {rp.fmt(v, 3)}x"
                                                         for s, v in zip(summ, sp, strict=True))
                     + " (the spread grows with the number of styles sampled; the balanced loss spreads "
                     + ", ".join(f"{rp.fmt(s['balanced_style_spread'], 3)}x" for s in summ) + ").")
        lines.append(f"- **Balanced loss bounded by 1 per layer**: {'reproduced' if bmax <= 1 else 'NOT reproduced'}"
                     f" (largest per-layer value {rp.fmt(bmax, 3)}; by construction, Cauchy-Schwarz on PSD Grams).")
    if 2 in results:
        r = {x["layer"]: x["pearson_r"] for x in results[2]["rows"]}
        strong = all(v > 0.5 for k, v in r.items() if k != "total")
        lines.append(f"- **Classic loss follows its supremum** (so it measures the style's Gram magnitude more "
                     f"than the match): Pearson r per layer "
                     f"{', '.join(f'{k} {rp.fmt(v, 3)}' for k, v in r.items())}: "
                     f"{'reproduced' if strong else 'only partly reproduced'}.")
    if 3 in results:
        s = {x["model"]: x for x in results[3]["summary"]}
        npairs = len(results[3]["rows"]) // 2
        gain = round((s["balanced"]["retrieval_top1"] - s["classic"]["retrieval_top1"]) * npairs)
        verdict = ("consistent with the paper" if gain > 2 else "opposite to the paper" if gain < -2
                   else f"no clear difference ({gain:+d} of {npairs} pairs)")
        lines.append(f"- **Balanced-loss training gives more faithful style** (Table 6 deception rate): Magenta "
                     f"retrieval top-1 {rp.fmt(s['classic']['retrieval_top1'], 3)} (classic, step "
                     f"{s['classic'].get('step')}) vs {rp.fmt(s['balanced']['retrieval_top1'], 3)} (balanced, "
                     f"step {s['balanced'].get('step')}), same-artist {rp.fmt(s['classic']['same_artist'], 3)} vs "
                     f"{rp.fmt(s['balanced']['same_artist'], 3)}: {verdict}; SSIM "
                     f"{rp.fmt(s['classic']['ssim'], 3)} vs {rp.fmt(s['balanced']['ssim'], 3)}.")
    if 4 in results:
        r = results[4]["rows"][0]
        lines.append(f"- **VGG puts different paintings closer than a painting's own reshuffle** (encoder-refinement "
                     f"paper, Fig. 1): real VGG-19 relu1_1..3_1 does so for {rp.fmt(100 * r['fraction'], 3)}% of "
                     f"ordered pairs: {'reproduced' if r['fraction'] > 0 else 'not reproduced'}"
                     f"{' (the effect exists but is a minority of pairs)' if 0 < r['fraction'] < 0.5 else ''}.")
    if 5 in results:
        rows5 = results[5]["rows"]
        floor = {x["clip"]: x["warping_error"] for x in rows5 if x["method"].startswith("unstyl")}
        above = [x["method"] for x in rows5 if not x["method"].startswith("unstyl")
                 and x["warping_error"] > floor[x["clip"]]]
        n_st = sum(1 for x in rows5 if not x["method"].startswith("unstyl"))
        lines.append(f"- **Per-frame stylisation is less stable than the input video**: {len(above)} of {n_st} "
                     f"(method, clip) warping errors are above the unstylised floor (mean floor "
                     f"{rp.fmt(float(np.mean(list(floor.values()))), 3)}).")
    if 6 in results:
        t = {x["method"]: x["seconds"] for x in results[6]["rows"]}
        lines.append("- **Feed-forward methods are orders of magnitude faster than optimisation** (style-swap "
                     "paper, Table 1): " + ", ".join(f"{k} {rp.fmt(v, 3)} s" for k, v in t.items()) + ".")
    return "\n".join(lines)


def run_evaluation(
    ctx: EvalContext,
    out_dir: str | Path,
    studies: Sequence[int] = ALL_STUDIES,
    *,
    checkpoint_classic: str | Path | None = None,
    checkpoint_balanced: str | Path | None = None,
    checkpoint_refined: str | Path | None = None,
    command: str = "",
    time_size: tuple[int, int] = (300, 500),
    gatys_steps: int | None = 20,
    video_frames: int = 8,
) -> dict[int, dict[str, Any]]:
    """Run the chosen studies into ``out_dir`` and write ``out_dir/report.md``; returns {study: result}.

    Study 3 needs both checkpoints (ConfigError otherwise); study 5 needs ``ctx.video_dir``.
    """
    studies = parse_studies(list(studies))
    if 3 in studies and (checkpoint_classic is None or checkpoint_balanced is None):
        raise ConfigError("study 3 needs --checkpoint-classic and --checkpoint-balanced (AdaIN model.pt files); "
                          "pass them or leave 3 out of --studies")
    if 5 in studies and ctx.video_dir is None:
        raise ConfigError("study 5 needs --video DIR; pass it or leave 5 out of --studies")
    out = rp.prepare_report_dir(out_dir)
    results: dict[int, dict[str, Any]] = {}
    for s in studies:
        ctx.progress(f"study {s}", 1)
        if s == 1:
            results[1] = study_loss_distributions(ctx, out)
        elif s == 2:
            results[2] = study_loss_vs_supremum(ctx, out, results[1]["rows"] if 1 in results else None)
        elif s == 3:
            results[3] = study_trained_adain(ctx, out, checkpoint_classic, checkpoint_balanced)  # type: ignore[arg-type]
        elif s == 4:
            results[4] = study_encoder_consistency(ctx, out, checkpoint_refined)
        elif s == 5:
            results[5] = study_video_stability(ctx, out, n_frames=video_frames)
        elif s == 6:
            results[6] = study_timing(ctx, out, size=time_size, gatys_steps=gatys_steps)
    preamble = "\n\n".join(filter(None, [
        f"Command:\n\n```\n{command}\n```" if command else "",
        f"Settings: {len(ctx.contents)} content images, {len(ctx.styles)} style images, {len(ctx.pairs)} "
        f"sampled (content, style) pairs (seed {ctx.seed}), long side {ctx.max_size}, methods "
        f"{', '.join(ctx.methods)}, studies {', '.join(map(str, studies))}. Raw numbers: the CSV files here.",
        _findings(results),
    ]))
    rp.write_report(out, "impasto evaluation report", preamble, [results[s]["markdown"] for s in studies])
    return results
