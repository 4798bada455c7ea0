"""Tests of impasto.evaluation.retrieval: hand-checked retrieval rates and the real Magenta style encoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from impasto.errors import ConfigError, WeightsError
from impasto.evaluation.retrieval import MagentaStyleEncoder, load_artists, retrieval_rate

# gallery: the three axes of R^3; artists A, B, A
GALLERY = np.eye(3)
ARTISTS = ["A", "B", "A"]
QUERIES = np.array(
    [
        [1.0, 0.1, 0.0],  # style 0: nearest 0          -> rank 0, same artist
        [0.9, 1.0, 0.0],  # style 0: nearest 1 (B)      -> rank 1, wrong artist
        [0.0, 0.0, 1.0],  # style 2: nearest 2          -> rank 0, same artist
        [0.1, 0.0, 1.0],  # style 0: nearest 2 (also A) -> rank 1, same artist
    ]
)
TRUE = np.array([0, 0, 2, 0])


def test_retrieval_rate_hand_case():
    r = retrieval_rate(QUERIES * 7.0, GALLERY, TRUE, style_artist=ARTISTS)  # scale does not matter (cosine)
    assert r["top1"] == pytest.approx(2 / 4)
    assert r["top5"] == pytest.approx(1.0)  # k clipped to the 3 styles
    assert r["same_artist"] == pytest.approx(3 / 4)
    assert r["n"] == 4 and r["n_artist"] == 4
    assert r["rank"].tolist() == [0, 1, 0, 1]
    assert r["nearest"].tolist() == [0, 1, 2, 2]
    r1 = retrieval_rate(QUERIES, GALLERY, TRUE, k=1)
    assert r1["top5"] == r1["top1"] == pytest.approx(0.5)
    assert r1["same_artist"] is None and r1["n_artist"] == 0


def test_retrieval_rate_unknown_artists_and_explicit_true_artist():
    r = retrieval_rate(QUERIES, GALLERY, TRUE, style_artist=["A", None, ""])
    # true artists: A, A, "" (unknown, skipped), A; nearest: 0 (A) hit, 1 (None) miss, 2 ("") miss
    assert r["n_artist"] == 3
    assert r["same_artist"] == pytest.approx(1 / 3)
    r = retrieval_rate(QUERIES, GALLERY, TRUE, style_artist=ARTISTS, true_artist=["B", "B", None, "A"])
    # query 1's nearest is B -> hit; query 0's nearest is A -> miss; query 3 -> hit
    assert r["n_artist"] == 3
    assert r["same_artist"] == pytest.approx(2 / 3)


def test_retrieval_rate_ties_count_against():
    r = retrieval_rate(np.ones((2, 4)), np.ones((3, 4)), [0, 2])
    assert r["top1"] == 0.0
    assert r["rank"].tolist() == [2, 2]


def test_retrieval_rate_rejects_bad_inputs():
    with pytest.raises(ConfigError, match="same D"):
        retrieval_rate(np.ones((2, 3)), np.ones((3, 4)), [0, 1])
    with pytest.raises(ConfigError, match="index"):
        retrieval_rate(np.ones((2, 3)), np.ones((3, 3)), [0, 3])
    with pytest.raises(ConfigError, match="integers"):
        retrieval_rate(np.ones((2, 3)), np.ones((3, 3)), [0])
    with pytest.raises(ConfigError, match="labels"):
        retrieval_rate(np.ones((2, 3)), np.ones((3, 3)), [0, 1], style_artist=["a"])


def test_load_artists(tmp_path: Path):
    csv_path = tmp_path / "SOURCES.csv"
    csv_path.write_text(
        "file,origin_repo,origin_path,artist_from_filename,dims\n"
        "content/a.jpg,x/y,in/a.jpg,,10x10 RGB\n"
        'style/b.jpg,x/y,in/b.jpg,"Turner, J. M. W.",10x10 RGB\n'
        "style/c.jpg,x/y,in/c.jpg,Pablo Picasso,10x10 RGB\n",
        encoding="utf-8",
    )
    assert load_artists(csv_path) == {"style/b.jpg": "Turner, J. M. W.", "style/c.jpg": "Pablo Picasso"}
    with pytest.raises(ConfigError, match="not found"):
        load_artists(tmp_path / "missing.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("file,dims\nx,y\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="artist_from_filename"):
        load_artists(bad)


def test_load_artists_real_file(data_dir: Path):
    artists = load_artists(data_dir / "SOURCES.csv")
    assert artists["style/SANET__Starry.jpg"] == "Vincent van Gogh"
    assert artists["style/pytorch-AdaIN__la_muse.jpg"] == "Pablo Picasso"
    assert all(k.startswith("style/") for k in artists)
    assert len(artists) > 50


def test_magenta_encoder_missing_file_and_lazy_session(tmp_path: Path):
    with pytest.raises(WeightsError, match="not found"):
        MagentaStyleEncoder(tmp_path / "nope.onnx")
    fake = tmp_path / "fake.onnx"
    fake.write_bytes(b"not an onnx model")
    enc = MagentaStyleEncoder(fake)  # constructing does not load the model
    assert enc._session is None
    with pytest.raises(WeightsError, match="corrupt"):
        enc.embed([torch.rand(3, 8, 8)])


# ---------------------------------------------------------------------------------------------- real model
PAINTINGS = [
    "SANET__Starry.jpg",
    "pytorch-AdaIN__mondrian.jpg",
    "SANET__wave.jpg",
    "pytorch-AdaIN__la_muse.jpg",
    "SANET__udnie.jpg",
    "pytorch-AdaIN__woman_with_hat_matisse.jpg",
    "SANET__Composition-VII.jpg",
    "pytorch-AdaIN__contrast_of_forms.jpg",
    "SANET__wreck.jpg",
    "pytorch-AdaIN__goeritz.jpg",
    "SANET__rain_princess.jpg",
    "pytorch-AdaIN__picasso_self_portrait.jpg",
]


@pytest.fixture(scope="module")
def magenta(weights_dir: Path) -> MagentaStyleEncoder:
    return MagentaStyleEncoder(weights_dir / "peers" / "arbitrary_predict.onnx")


@pytest.fixture(scope="module")
def paintings(data_dir: Path) -> list[Image.Image]:
    out = []
    for name in PAINTINGS:
        with Image.open(data_dir / "style" / name) as im:
            im = im.convert("RGB")
            im.thumbnail((512, 512))
            out.append(im)
    return out


@pytest.mark.weights
def test_magenta_io_contract(magenta: MagentaStyleEncoder, paintings: list[Image.Image]):
    inp = magenta.session.get_inputs()[0]
    assert inp.name == "style_image" and list(inp.shape) == [1, 256, 256, 3]
    assert list(magenta.session.get_outputs()[0].shape) == [1, 1, 1, 100]
    x = magenta.preprocess(paintings[0])
    assert x.shape == (1, 256, 256, 3) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    # PIL input and the equivalent tensor input give the same embedding
    t = torch.from_numpy(np.asarray(paintings[0], dtype=np.float32) / 255.0).permute(2, 0, 1)
    e_pil, e_tensor = magenta.embed([paintings[0]]), magenta.embed(t.unsqueeze(0))
    assert e_pil.shape == (1, 100)
    assert np.allclose(e_pil, e_tensor, atol=1e-5)
    assert np.allclose(np.linalg.norm(e_pil, axis=1), 1.0, atol=1e-5)
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        magenta.embed(t.unsqueeze(0) * 255)


@pytest.mark.weights
def test_magenta_retrieval_of_paintings(magenta: MagentaStyleEncoder, paintings: list[Image.Image]):
    gallery = magenta.embed(paintings)
    assert gallery.shape == (len(PAINTINGS), 100)
    # each painting, embedded as a query, retrieves itself
    r = retrieval_rate(gallery, gallery, np.arange(len(PAINTINGS)))
    assert r["top1"] == 1.0
    # a blurred, half-size copy still retrieves its source for most paintings
    copies = []
    for im in paintings[:6]:
        w, h = im.size
        copies.append(im.filter(ImageFilter.GaussianBlur(1.0)).resize((w // 2, h // 2), Image.BILINEAR))
    r = retrieval_rate(magenta.embed(copies), gallery, np.arange(6))
    assert r["top1"] >= 5 / 6, r["rank"]
    assert r["top5"] == 1.0
