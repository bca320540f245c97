"""The optional parts of the video encoder: temporal prior and video context."""

import math

import pytest
import torch

from prvr_cli.config import load_preset
from prvr_cli.errors import PrvrError
from prvr_cli.nets.dual import create_model
from prvr_cli.nets.encoders import temporal_bias


def test_temporal_bias_hand():
    b = temporal_bias((0.0, 2.0), 3)
    assert b.shape == (2, 3, 3)
    assert torch.equal(b[0], torch.zeros(3, 3))  # width 0: an unrestricted head
    # width 2: -(i - j)^2 / 8
    assert b[1, 0].tolist() == pytest.approx([0.0, -1 / 8, -4 / 8])
    # as an additive logit bias it multiplies the attention weights by a Gaussian window
    w = torch.softmax(b[1, 1], -1)
    assert w[0] / w[1] == pytest.approx(math.exp(-1 / 8))


@pytest.mark.parametrize(
    "extra", [[], ["model.attention_widths=0,1.5"], ["model.video_context=mean"], ["model.video_context=attention"]]
)
def test_padded_frames_change_nothing(extra):
    cfg = load_preset("tiny", extra)
    model = create_model(cfg).eval()
    x = torch.randn(3, 10, cfg.model.visual_dim)
    mask = torch.ones(3, 10)
    mask[1, 6:] = 0
    x2 = x.clone()
    x2[1, 6:] = 5.0
    with torch.no_grad():
        a, b = model.encode_video(x, mask, "theta"), model.encode_video(x2, mask, "theta")
    assert torch.allclose(a[1, :6], b[1, :6], atol=1e-5)


def test_temporal_prior_makes_frames_local():
    """With narrow widths a frame's embedding depends much less on distant frames."""

    def influence(extra):
        cfg = load_preset("tiny", extra)
        model = create_model(cfg, max_ctx_l=32).eval()
        torch.manual_seed(0)
        x = torch.randn(1, 32, cfg.model.visual_dim)
        x2 = x.clone()
        x2[0, 31] = torch.randn(cfg.model.visual_dim)  # replace the last frame
        mask = torch.ones(1, 32)
        with torch.no_grad():
            d = model.encode_video(x2, mask, "theta") - model.encode_video(x, mask, "theta")
        return float(d[0, 0].norm())  # effect on the first frame

    assert influence(["model.attention_widths=1,1"]) < 1e-3 * influence([])


def test_video_context_adds_the_same_summary_to_every_frame():
    cfg = load_preset("tiny")
    plain = create_model(cfg).eval()
    ctx = create_model(load_preset("tiny", ["model.video_context=mean"])).eval()
    ctx.load_state_dict(plain.state_dict())  # "mean" adds no parameters
    x, mask = torch.randn(2, 5, cfg.model.visual_dim), torch.ones(2, 5)
    mask[0, 3:] = 0
    with torch.no_grad():
        V, W = plain.encode_video(x, mask, "phi"), ctx.encode_video(x, mask, "phi")
    expected = V[0, :3].mean(0)
    assert torch.allclose(W[0, :3] - V[0, :3], expected.expand(3, -1), atol=1e-5)


def test_model_settings_are_checked():
    with pytest.raises(PrvrError, match="one width per head"):
        load_preset("tiny", ["model.attention_widths=1,2,3"])
    with pytest.raises(PrvrError, match="video_context must be"):
        load_preset("tiny", ["model.video_context=max"])
