"""nets/layers.py: the CPU dropout, the valid rows of a padded batch, and the encoder layer that
stands in for nn.TransformerEncoderLayer."""

import pytest
import torch
from torch import nn

from prvr_cli.config import load_preset
from prvr_cli.nets.dual import create_model
from prvr_cli.nets.encoders import SequenceEncoder, temporal_bias
from prvr_cli.nets.layers import Dropout, EncoderLayer, Rows, dropout, keep_mask


def test_keep_mask_rate_and_seed():
    torch.manual_seed(3)
    a = keep_mask((400, 1000), 0.2)
    assert a.dtype == torch.bool and a.shape == (400, 1000)
    # 400k Bernoulli(0.8) draws: the standard error of the rate is 6.3e-4
    assert abs(float(a.float().mean()) - 0.8) < 4e-3
    # no position is favoured: the four 16-bit draws of a 64-bit word each keep at 0.8
    lanes = a.reshape(-1, 4).float().mean(0)
    assert torch.all((lanes - 0.8).abs() < 8e-3)
    torch.manual_seed(3)
    assert torch.equal(keep_mask((400, 1000), 0.2), a)  # the default generator's stream
    assert not torch.equal(keep_mask((400, 1000), 0.2), a)
    assert keep_mask((7,), 0.0).all()  # p = 0 keeps all: every 16-bit draw is >= its minimum
    assert keep_mask((5, 3), 0.5).shape == (5, 3)  # a size that is not a multiple of 4


def test_dropout_zeroes_scales_and_passes_the_gradient_through_the_kept():
    torch.manual_seed(0)
    x = torch.arange(1.0, 13.0).reshape(3, 4).requires_grad_()
    y = dropout(x, 0.5)
    kept = y != 0
    assert 0 < int(kept.sum()) < 12
    # kept entries scaled by 1 / (1 - p) = 2, the rest zero
    assert torch.equal(y[kept], 2 * x.detach()[kept])
    y.sum().backward()
    assert torch.equal(x.grad, 2.0 * kept)
    assert dropout(x, 0.5, training=False) is x
    assert dropout(x, 0.0) is x


def test_dropout_module_is_nn_dropout_with_no_state():
    m = Dropout(0.3)
    assert isinstance(m, nn.Dropout) and m.p == 0.3 and not m.state_dict()
    x = torch.ones(100, 100)
    assert torch.equal(m.eval()(x), x)
    y = m.train()(x)
    assert torch.all((y == 0) | (y == torch.tensor(1 / 0.7)))
    assert abs(float((y == 0).float().mean()) - 0.3) < 0.03


def test_rows_pack_unpack_and_positions():
    valid = torch.tensor([[True, True, False], [True, False, False]])
    rows = Rows.of(valid)
    assert rows.index.tolist() == [0, 1, 3]
    assert rows.positions().tolist() == [0, 1, 0]
    x = torch.arange(12.0).reshape(2, 3, 2)
    packed = rows.pack(x)
    assert packed.tolist() == [[0, 1], [2, 3], [6, 7]]
    back = rows.unpack(packed)
    assert back.shape == (2, 3, 2)
    assert torch.equal(back[valid], x[valid]) and torch.equal(back[~valid], torch.zeros(3, 2))


def _twins(p: float = 0.1):
    """Our layer and torch's, built from the same seed."""
    torch.manual_seed(5)
    ours = EncoderLayer(16, 4, 16, p)
    torch.manual_seed(5)
    ref = nn.TransformerEncoderLayer(16, 4, 16, p, activation="gelu", batch_first=True)
    return ours, ref


def test_encoder_layer_has_torch_layers_weights_and_output():
    ours, ref = _twins()
    a, b = ours.state_dict(), ref.state_dict()
    assert list(a) == list(b)  # a checkpoint of either loads into the other
    assert all(torch.equal(a[k], b[k]) for k in a)  # same seed, same initial weights
    ours.eval(), ref.eval()
    torch.manual_seed(1)
    x = torch.randn(3, 6, 16)
    pad = torch.zeros(3, 6, dtype=torch.bool)
    pad[1, 4:] = pad[2, 1:] = True
    bias = torch.zeros(3, 6).masked_fill(pad, float("-inf"))[:, None, None, :]
    with torch.no_grad():
        want = ref(x, src_key_padding_mask=pad)
        got = ours(x, bias)
        packed = ours(Rows.of(~pad).pack(x), bias, Rows.of(~pad))
    assert torch.allclose(got[~pad], want[~pad], atol=1e-5)
    assert torch.allclose(packed, want[~pad], atol=1e-5)  # the packed rows, in order


def test_encoder_layer_training_without_dropout_matches_torch_and_its_gradients():
    ours, ref = _twins(p=0.0)
    x = torch.randn(2, 5, 16)
    pad = torch.tensor([[False] * 5, [False, False, False, True, True]])
    bias = torch.zeros(2, 5).masked_fill(pad, float("-inf"))[:, None, None, :]
    rows = Rows.of(~pad)
    out = ours(rows.pack(x), bias, rows)
    want = ref(x, src_key_padding_mask=pad)[~pad]
    assert torch.allclose(out, want, atol=1e-5)
    (out**2).sum().backward()
    (want**2).sum().backward()
    g_ours = dict(ours.named_parameters())
    for name, param in ref.named_parameters():
        assert torch.allclose(g_ours[name].grad, param.grad, atol=1e-4), name


def test_encoder_layer_drops_attention_weights_in_training():
    """With dropout, two passes differ (the masks); in eval they are the same."""
    ours, _ = _twins(p=0.5)
    x = torch.randn(2, 5, 16)
    ours.train()
    assert not torch.allclose(ours(x), ours(x))
    ours.eval()
    assert torch.equal(ours(x), ours(x))


@pytest.mark.parametrize("extra", [[], ["model.attention_widths=0,1.5"]])
def test_sequence_encoder_packed_equals_the_padded_reference(extra):
    """The packed encoder gives, on the valid rows, what torch's layer gives over the padded
    batch, and exact zeros on the padding; its state dict is the old one's. The reference runs
    torch's slow path (train mode, dropout 0): in eval its fast path gives another result for a
    per-head (N * heads, L, L) float mask (torch 2.14.1; compare pytorch/pytorch#118628), the
    mask the old encoder passed for ``attention_widths``."""
    cfg = load_preset("tiny", extra).model
    torch.manual_seed(2)
    enc = SequenceEncoder(12, cfg, 10, cfg.attention_widths).eval()
    ref = nn.ModuleList(
        nn.TransformerEncoderLayer(cfg.hidden, cfg.heads, cfg.hidden, 0.0, activation="gelu", batch_first=True)
        for _ in range(cfg.layers)
    )
    ref.load_state_dict(enc.layers.state_dict())
    x = torch.randn(3, 7, 12)
    mask = torch.ones(3, 7)
    mask[0, 5:] = mask[2, 2:] = 0
    pad = mask == 0
    src_mask, key_pad = None, pad
    if cfg.attention_widths:  # the old encoder's (N * heads, L, L) mask, padding keys at -inf
        prior = temporal_bias(cfg.attention_widths, 7)[None].masked_fill(pad[:, None, None, :], float("-inf"))
        src_mask, key_pad = prior.reshape(-1, 7, 7), None
    with torch.no_grad():
        got = enc(x, mask)
        h = enc.pos(enc.proj(x))
        for layer in ref:
            h = layer(h, src_mask=src_mask, src_key_padding_mask=key_pad)
    assert torch.allclose(got[~pad], h[~pad], atol=1e-5)
    assert torch.equal(got[pad], torch.zeros(int(pad.sum()), cfg.hidden))


def test_training_step_is_seeded():
    """Two models from one seed, trained one step each from the same seed: identical weights."""

    def step():
        torch.manual_seed(0)
        model = create_model("tiny").train()
        x, m = torch.randn(2, 6, model.cfg.visual_dim), torch.ones(2, 6)
        t, tm = torch.randn(3, 4, model.cfg.text_dim), torch.ones(3, 4)
        m[1, 3:] = 0
        emb = model(t, tm, x, m)
        loss = sum(e.q.sum() + e.V.sum() for e in emb.values())
        loss.backward()
        return [p.grad.clone() for p in model.parameters() if p.grad is not None]

    a, b = step(), step()
    assert len(a) == len(b) > 0
    assert all(torch.equal(u, v) for u, v in zip(a, b))
