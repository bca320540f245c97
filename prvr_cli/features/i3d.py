"""Inception-v1 I3D (Carreira & Zisserman 2017), written for this project.

Module and parameter names follow the widely used PyTorch port's checkpoints
(``rgb_imagenet.pt``, ``rgb_charades.pt``): ``Conv3d_1a_7x7.conv3d.weight``,
``Mixed_3b.b1b.bn.running_mean``, ``logits.conv3d.bias`` ..., so those files load with
``load_state_dict(strict=True)`` unchanged. Convolutions and pools use TensorFlow "SAME" padding,
as the original. ``features`` returns the 1024-d average-pooled ``Mixed_5c`` output.
Input: (B, 3, T, H, W) floats in [-1, 1] (T = 16, 224 x 224 centre crops for the usual features).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _same_pad(x: torch.Tensor, kernel, stride) -> torch.Tensor:
    """Pad (T, H, W) so that out = ceil(in / stride), extra padding at the end (TF SAME)."""
    pads = []
    for size, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride)):
        total = max(k - s, 0) if size % s == 0 else max(k - size % s, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class Unit3D(nn.Module):
    """Conv3d (no bias) + BatchNorm (eps 1e-3) + ReLU; the logits unit has a bias and neither."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel=(1, 1, 1),
        stride=(1, 1, 1),
        norm: bool = True,
        act: bool = True,
        bias: bool = False,
    ):
        super().__init__()
        self.kernel, self.stride, self.act = tuple(kernel), tuple(stride), act
        self.conv3d = nn.Conv3d(c_in, c_out, self.kernel, self.stride, padding=0, bias=bias)
        if norm:
            self.bn = nn.BatchNorm3d(c_out, eps=1e-3, momentum=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(_same_pad(x, self.kernel, self.stride))
        if hasattr(self, "bn"):
            x = self.bn(x)
        return F.relu(x) if self.act else x


class SamePool(nn.Module):
    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(_same_pad(x, self.kernel, self.stride), self.kernel, self.stride)


class Mixed(nn.Module):
    """Inception block: 1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 | pool -> 1x1, concatenated on channels."""

    def __init__(self, c_in: int, c: tuple[int, int, int, int, int, int]):
        super().__init__()
        self.b0 = Unit3D(c_in, c[0])
        self.b1a, self.b1b = Unit3D(c_in, c[1]), Unit3D(c[1], c[2], (3, 3, 3))
        self.b2a, self.b2b = Unit3D(c_in, c[3]), Unit3D(c[3], c[4], (3, 3, 3))
        self.b3a, self.b3b = SamePool((3, 3, 3), (1, 1, 1)), Unit3D(c_in, c[5])
        self.out_channels = c[0] + c[2] + c[4] + c[5]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], 1)


# (name, kind, args): the endpoints in order, named as in the public checkpoints
_LAYOUT = [
    ("Conv3d_1a_7x7", "unit", (3, 64, (7, 7, 7), (2, 2, 2))),
    ("MaxPool3d_2a_3x3", "pool", ((1, 3, 3), (1, 2, 2))),
    ("Conv3d_2b_1x1", "unit", (64, 64)),
    ("Conv3d_2c_3x3", "unit", (64, 192, (3, 3, 3))),
    ("MaxPool3d_3a_3x3", "pool", ((1, 3, 3), (1, 2, 2))),
    ("Mixed_3b", "mixed", (192, (64, 96, 128, 16, 32, 32))),
    ("Mixed_3c", "mixed", (256, (128, 128, 192, 32, 96, 64))),
    ("MaxPool3d_4a_3x3", "pool", ((3, 3, 3), (2, 2, 2))),
    ("Mixed_4b", "mixed", (480, (192, 96, 208, 16, 48, 64))),
    ("Mixed_4c", "mixed", (512, (160, 112, 224, 24, 64, 64))),
    ("Mixed_4d", "mixed", (512, (128, 128, 256, 24, 64, 64))),
    ("Mixed_4e", "mixed", (512, (112, 144, 288, 32, 64, 64))),
    ("Mixed_4f", "mixed", (528, (256, 160, 320, 32, 128, 128))),
    ("MaxPool3d_5a_2x2", "pool", ((2, 2, 2), (2, 2, 2))),
    ("Mixed_5b", "mixed", (832, (256, 160, 320, 32, 128, 128))),
    ("Mixed_5c", "mixed", (832, (384, 192, 384, 48, 128, 128))),
]


class InceptionI3d(nn.Module):
    FEATURE_DIM = 1024

    def __init__(self, num_classes: int = 400):
        super().__init__()
        self.endpoints = [name for name, _, _ in _LAYOUT]
        for name, kind, args in _LAYOUT:
            if kind == "unit":
                module = Unit3D(*args)
            elif kind == "pool":
                module = SamePool(*args)
            else:
                module = Mixed(*args)
            self.add_module(name, module)
        self.logits = Unit3D(self.FEATURE_DIM, num_classes, norm=False, act=False, bias=True)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.endpoints:
            x = getattr(self, name)(x)
        return x  # (B, 1024, T', H', W')

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) in [-1, 1] -> (B, 1024), averaged over time and space."""
        return self.trunk(x).mean(dim=(2, 3, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits averaged over time: (B, num_classes)."""
        h = self.trunk(x)
        pooled = F.adaptive_avg_pool3d(h, (h.shape[2], 1, 1))
        return self.logits(pooled).mean(dim=(2, 3, 4))


def load_i3d(checkpoint: str | None, device="cpu") -> InceptionI3d:
    """Build I3D and load a checkpoint strictly; the class count is read from the file."""
    from prvr_cli.errors import PrvrError

    if not checkpoint:
        raise PrvrError(
            "I3D needs weights: pass --i3d-checkpoint PATH to rgb_imagenet.pt (Kinetics-400) or "
            "rgb_charades.pt, the checkpoints of the public PyTorch I3D port (download them once on a "
            "connected machine)"
        )
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise PrvrError(f"{checkpoint}: I3D checkpoint not found") from None
    except Exception as err:
        raise PrvrError(f"{checkpoint}: not a readable I3D checkpoint ({type(err).__name__})") from None
    if "logits.conv3d.weight" not in state:
        raise PrvrError(f"{checkpoint}: no 'logits.conv3d.weight': not an I3D (rgb_imagenet.pt-style) state dict")
    model = InceptionI3d(num_classes=state["logits.conv3d.weight"].shape[0])
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[1].strip() if len(str(err).splitlines()) > 1 else str(err)
        raise PrvrError(f"{checkpoint}: does not match the I3D architecture ({first})") from None
    return model.to(device).eval()
