"""Every figure is a real PNG of the size its layout promises, with something drawn on it."""

import typing

import matplotlib.image
import numpy as np
import pytest
import torch

from glassformer.config import POSITION_ACTS_ON, Position, apply_overrides, preset
from glassformer.inspect.plots import (DPI, attention_figure, attention_grid, loss_curves,
                                       next_token_chart, panel_inches, token_label)
from glassformer.inspect.positions import DRAW, SCHEMES, positions_figure
from glassformer.model import build


def read_png(path):
    """(height, width, channels) floats; the picture must not be one flat colour."""
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image[..., :3].std() > 0.01, path
    return image


def test_attention_grid_has_one_panel_per_layer_and_head(tmp_path):
    w = torch.softmax(torch.randn(1, 3, 5, 5), dim=-1)  # (B, H, T, S)
    weights = {"blocks.0.attn": w, "blocks.1.attn": w}
    labels = {name: (list("hello"), list("hello")) for name in weights}
    path = attention_grid(weights, labels, tmp_path / "attention.png", "title")
    assert read_png(path).shape[:2] == (2 * 3.5 * DPI, 3 * 3.5 * DPI)
    assert panel_inches(5) == 3.5 and panel_inches(60) == 6.6 and panel_inches(500) == 12


def test_attention_panels_have_colour_bars_upright_labels_and_a_title_clear_of_them():
    """The encoder-decoder's figure (self-attention T x T, cross-attention T x S): its title
    overlapped the top panels, and its labels were turned on their side."""
    torch.manual_seed(0)
    weights = {"encoder.blocks.0.attn": torch.softmax(torch.randn(1, 2, 7, 7), dim=-1),
               "decoder.blocks.0.cross": torch.softmax(torch.randn(1, 2, 5, 7), dim=-1)}
    labels = {"encoder.blocks.0.attn": (list("40 017 "), list("40 017 ")),
              "decoder.blocks.0.cross": (list("forty"), list("40 017 "))}
    fig = attention_figure(weights, labels, "numbers (trained): attention weights, queries "
                                            "down, keys across")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(panels) == 4 and len(fig.axes) == 8  # a colour bar beside every panel
    title = fig._suptitle.get_window_extent(renderer)
    for ax in panels:
        assert not title.overlaps(ax.get_tightbbox(renderer)), ax.get_title()
        ticks = ax.get_xticklabels()
        assert all(t.get_rotation() == 0 for t in ticks)
    assert "␣" in [t.get_text() for t in panels[0].get_xticklabels()]


def test_a_space_token_has_a_visible_label(tmp_path, recwarn):
    assert token_label(" ") == "␣" and token_label("\n") == "\\n" and token_label("") == "''"
    rows = [{"token": t, "probs": {"T=1": p}} for t, p in ((" ", .6), ("e", .3))]
    read_png(next_token_chart(rows, ["T=1"], tmp_path / "next.png"))
    assert not [w for w in recwarn if "Glyph" in str(w.message)]  # the font has '␣'


@pytest.mark.parametrize("scheme", SCHEMES)
def test_position_figures(tmp_path, scheme):
    cfg = apply_overrides(preset("tiny"), {"model.position": scheme}).model
    path = positions_figure(scheme, cfg, build(cfg), tmp_path / f"{scheme}.png")
    assert read_png(path).shape[:2] == (4 * DPI, 10 * DPI)


def test_next_token_chart_and_loss_curves(tmp_path):
    rows = [{"token": t, "probs": {"T=1": p, "T=0.5": p * p}} for t, p in (("a", .6), ("b", .3))]
    path = next_token_chart(rows, ["T=1", "T=0.5"], tmp_path / "next.png")
    assert read_png(path).shape[:2] == (4 * DPI, 8 * DPI)
    curve = {"train": [(1, 0.1, 3.0), (2, 0.2, 2.5)], "val": [(2, 0.2, 2.6)]}
    path = loss_curves({"a": curve}, tmp_path / "loss.png", "seconds", "seconds")
    image = read_png(path)
    assert image.shape[:2] == (4.5 * DPI, 7 * DPI)
    assert np.isfinite(image).all()


def test_the_cli_lists_the_schemes_positions_draws():
    from glassformer.cli import inspect

    assert inspect.SCHEMES == SCHEMES


def test_every_scheme_that_acts_somewhere_has_a_drawing():
    acting = {s for s in typing.get_args(Position) if POSITION_ACTS_ON[s] != "nowhere"}
    assert set(SCHEMES) == acting == set(DRAW)
