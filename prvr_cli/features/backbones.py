"""Visual backbones behind one contract, in a registry of names.

Every backbone maps decoded clips (n, m, H, W, 3) uint8 -> (n, dim) float32 features and
describes itself for ``extract.json``. Real weights only: a loader that cannot find its weights
raises a ``PrvrError`` saying which files are needed and how to provide them. Test models with
random weights are chosen by name where a model name or weights file goes (``features/tiny.py``:
``--clip-model prvr-tiny-clip``, ``--i3d-checkpoint prvr-tiny-i3d``, ...).

A backbone is a ``Backbone`` subclass registered under the name ``--visual`` takes::

    @register_visual("dino")
    class DinoVisual(Backbone): ...

torch and numpy are imported inside the functions, so the names are known to ``prvr --help``
without loading them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from prvr_cli.core.registry import Registry
from prvr_cli.errors import PrvrError
from prvr_cli.features.hub import offline_hint

if TYPE_CHECKING:
    import numpy as np
    import torch

    from prvr_cli.features.decode import Sampling

OPENAI_MEAN, OPENAI_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def to_tensor(frames: np.ndarray, size: int, device) -> torch.Tensor:
    """(n, H, W, 3) uint8 -> (n, 3, size, size) float in [0, 1]: short side to ``size``
    (bicubic), centre crop."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(frames)).to(device).permute(0, 3, 1, 2).float() / 255.0
    h, w = x.shape[2:]
    scale = size / min(h, w)
    if scale != 1.0:
        x = F.interpolate(
            x, size=(max(size, round(h * scale)), max(size, round(w * scale))), mode="bicubic", align_corners=False
        ).clamp_(0, 1)
    top, left = (x.shape[2] - size) // 2, (x.shape[3] - size) // 2
    return x[:, :, top : top + size, left : left + size]


def _normalise(x: torch.Tensor, mean, std) -> torch.Tensor:
    return (x - x.new_tensor(mean)[None, :, None, None]) / x.new_tensor(std)[None, :, None, None]


def _no_grad(fn):
    """``torch.no_grad()`` as a decorator that imports torch when called, not when defined."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        import torch

        with torch.no_grad():
            return fn(*args, **kwargs)

    return run


@dataclass(frozen=True, kw_only=True)
class VisualOptions:
    """What ``prvr extract`` knows about the visual side; each backbone takes what it needs."""

    device: object = "cpu"
    batch_size: int = 32
    clip_model: str = "ViT-L-14"
    clip_pretrained: str = "openai"
    i3d_checkpoint: str | None = None
    resnet_checkpoint: str | None = None


VISUAL_BACKBONES: Registry[type[Backbone]] = Registry("visual backbone", where="--visual")


def register_visual(name: str):
    """Class decorator: ``--visual name`` builds this backbone (with ``cls.from_options``)."""
    return VISUAL_BACKBONES.register(name)


def list_visual() -> list[str]:
    """The registered ``--visual`` names, in registration order."""
    return VISUAL_BACKBONES.names()


def visual_class(name: str) -> type[Backbone]:
    """The backbone class registered as ``name``; a one-line ``PrvrError`` listing the names otherwise."""
    return VISUAL_BACKBONES[name]


class Backbone:
    """The contract: ``encode`` (n, m, H, W, 3) uint8 clips -> (n, dim) float32, ``describe`` for
    ``extract.json``. ``from_options`` builds one from ``VisualOptions``; the default passes
    ``device`` and ``batch_size`` to the constructor."""

    name: str = ""
    dim: int = 0
    frames_per_step: int = 1
    short_side: int = 224
    default_step: float = 1.0  # seconds per feature row unless --fps / --clip-seconds say otherwise
    checkpoint_options: tuple[str, ...] = ()  # VisualOptions fields naming local weight files

    @classmethod
    def from_options(cls, options: VisualOptions) -> Backbone:
        return cls(device=options.device, batch_size=options.batch_size)

    def sampling(self, step: float) -> Sampling:
        from prvr_cli.features.decode import Sampling

        return Sampling(step, self.frames_per_step, self.short_side)

    def encode(self, clips: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def describe(self) -> dict:
        raise NotImplementedError


@register_visual("clip")
class ClipVisual(Backbone):
    """One CLIP image embedding per sampled frame (open_clip, any model name and pretrained tag
    or local checkpoint file)."""

    checkpoint_options = ("clip_pretrained",)

    @classmethod
    def from_options(cls, options: VisualOptions) -> ClipVisual:
        o = options
        return cls(o.clip_model, o.clip_pretrained, o.device, o.batch_size)

    def __init__(
        self,
        model: str = "ViT-L-14",
        pretrained: str = "openai",
        device="cpu",
        batch_size: int = 64,
    ):
        from prvr_cli.features.clip_model import load_clip

        self.model, self.model_name, self.pretrained = load_clip(model, pretrained, device)
        cfg = getattr(self.model.visual, "preprocess_cfg", {}) or {}
        size = self.model.visual.image_size
        self.size = size[0] if isinstance(size, (tuple, list)) else int(size)
        self.mean, self.std = tuple(cfg.get("mean", OPENAI_MEAN)), tuple(cfg.get("std", OPENAI_STD))
        self.short_side = self.size
        self.device, self.batch_size = device, batch_size
        self.dim = int(self.model.visual.output_dim)
        tag = self.model_name.lower().replace("-", "_").replace("/", "_")
        self.name = f"clip_{tag}"

    @_no_grad
    def encode(self, clips: np.ndarray) -> np.ndarray:
        import torch

        frames = clips[:, clips.shape[1] // 2]  # (n, H, W, 3)
        out = []
        for s in range(0, len(frames), self.batch_size):
            x = _normalise(to_tensor(frames[s : s + self.batch_size], self.size, self.device), self.mean, self.std)
            with torch.autocast("cuda", enabled=self.device.type == "cuda"):
                out.append(self.model.encode_image(x).float().cpu())
        return torch.cat(out).numpy()

    def describe(self) -> dict:
        return {
            "backbone": "clip",
            "model": self.model_name,
            "pretrained": self.pretrained,
            "dim": self.dim,
            "input": f"{self.size}x{self.size} centre crop, CLIP mean/std",
            "per": "frame (middle of each step)",
        }


@register_visual("i3d")
class I3DVisual(Backbone):
    """Inception-v1 I3D on 16-frame windows: short side 224, centre crop 224, pixels in [-1, 1]."""

    frames_per_step = 16
    default_step = 1.5  # TVR's I3D grid
    checkpoint_options = ("i3d_checkpoint",)

    @classmethod
    def from_options(cls, options: VisualOptions) -> I3DVisual:
        o = options
        return cls(o.i3d_checkpoint, o.device, max(1, o.batch_size // 4))

    def __init__(self, checkpoint: str | None, device="cpu", batch_size: int = 8):
        from prvr_cli.features.i3d import load_i3d
        from prvr_cli.features.tiny import TINY_SIDE, TINY_WEIGHTS, tiny_model

        if (build := tiny_model(checkpoint, "i3d")) is not None:
            self.model, self.checkpoint, self.short_side = build().to(device).eval(), TINY_WEIGHTS, TINY_SIDE
        else:
            self.model, self.checkpoint = load_i3d(checkpoint, device), str(checkpoint)
        self.device, self.batch_size, self.dim, self.name = device, batch_size, 1024, "i3d"

    @_no_grad
    def encode(self, clips: np.ndarray) -> np.ndarray:
        import torch

        n, m = clips.shape[:2]
        out = []
        for s in range(0, n, self.batch_size):
            part = clips[s : s + self.batch_size]
            x = to_tensor(part.reshape(-1, *part.shape[2:]), self.short_side, self.device) * 2 - 1
            x = x.view(len(part), m, 3, self.short_side, self.short_side).permute(0, 2, 1, 3, 4)  # (b, 3, T, H, W)
            with torch.autocast("cuda", enabled=self.device.type == "cuda"):
                out.append(self.model.features(x).float().cpu())
        return torch.cat(out).numpy()

    def describe(self) -> dict:
        return {
            "backbone": "i3d",
            "checkpoint": self.checkpoint,
            "dim": 1024,
            "per": "16-frame window",
            "input": f"short side {self.short_side}, centre crop {self.short_side}, pixels in [-1, 1]",
        }


@register_visual("resnet152")
class ResNetVisual(Backbone):
    """torchvision ResNet-152, global-average-pooled 2048-d feature of the middle frame of each step."""

    checkpoint_options = ("resnet_checkpoint",)

    @classmethod
    def from_options(cls, options: VisualOptions) -> ResNetVisual:
        o = options
        return cls(o.resnet_checkpoint, o.device, o.batch_size)

    def __init__(self, checkpoint: str | None = None, device="cpu", batch_size: int = 32):
        import torch
        import torchvision

        from prvr_cli.features.tiny import TINY_SIDE, TINY_WEIGHTS, tiny_model

        build = tiny_model(checkpoint, "resnet152")
        model = build() if build else torchvision.models.resnet152(weights=None)
        if build:
            self.weights, self.short_side = TINY_WEIGHTS, TINY_SIDE
        elif checkpoint:
            if not Path(checkpoint).is_file():
                raise PrvrError(f"{checkpoint}: file is missing (--resnet-checkpoint)")
            try:
                model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
            except Exception as err:
                raise offline_hint(
                    f"ResNet-152 weights from {checkpoint}", "Pass a torchvision resnet152 state dict.", err
                ) from None
            self.weights = str(checkpoint)
        else:
            weights = torchvision.models.ResNet152_Weights.IMAGENET1K_V1
            try:
                model.load_state_dict(weights.get_state_dict(progress=False))
            except Exception as err:
                raise offline_hint(
                    "torchvision ResNet-152 IMAGENET1K_V1 weights",
                    'Pre-download them on a connected machine (python -c "import torchvision; '
                    "torchvision.models.resnet152(weights='IMAGENET1K_V1')\", which fills ~/.cache/torch/hub) "
                    "or pass --resnet-checkpoint PATH.",
                    err,
                ) from None
            self.weights = "torchvision IMAGENET1K_V1"
        model.fc = torch.nn.Identity()
        self.model = model.to(device).eval()
        self.device, self.batch_size, self.dim, self.name = device, batch_size, 2048, "resnet152"

    @_no_grad
    def encode(self, clips: np.ndarray) -> np.ndarray:
        import torch

        frames = clips[:, clips.shape[1] // 2]
        out = []
        for s in range(0, len(frames), self.batch_size):
            x = _normalise(
                to_tensor(frames[s : s + self.batch_size], self.short_side, self.device), IMAGENET_MEAN, IMAGENET_STD
            )
            with torch.autocast("cuda", enabled=self.device.type == "cuda"):
                out.append(self.model(x).float().cpu())
        return torch.cat(out).numpy()

    def describe(self) -> dict:
        return {
            "backbone": "resnet152",
            "weights": self.weights,
            "dim": 2048,
            "per": "frame (middle of each step)",
            "input": f"short side {self.short_side}, centre crop, ImageNet mean/std",
        }


@register_visual("resnet152+i3d")
class ResNetI3D(Backbone):
    """ResNet-152 (middle frame) and I3D (the window) on one time grid, concatenated: 3072-d,
    the feature type of TVR's MS-SL release (``i3d_resnet``)."""

    frames_per_step = 16
    default_step = I3DVisual.default_step
    checkpoint_options = ResNetVisual.checkpoint_options + I3DVisual.checkpoint_options

    @classmethod
    def from_options(cls, options: VisualOptions) -> ResNetI3D:
        return cls(ResNetVisual.from_options(options), I3DVisual.from_options(options))

    def __init__(self, resnet: ResNetVisual, i3d: I3DVisual):
        self.resnet, self.i3d = resnet, i3d
        self.short_side = max(resnet.short_side, i3d.short_side)
        self.dim, self.name = resnet.dim + i3d.dim, "i3d_resnet"

    def encode(self, clips: np.ndarray) -> np.ndarray:
        import numpy as np

        return np.concatenate([self.resnet.encode(clips), self.i3d.encode(clips)], axis=1)

    def describe(self) -> dict:
        return {
            "backbone": "resnet152+i3d",
            "resnet": self.resnet.describe(),
            "i3d": self.i3d.describe(),
            "dim": self.dim,
        }


def build_visual(kind: str, **options) -> Backbone:
    """The backbone registered as ``kind``, built from ``VisualOptions(**options)``."""
    return visual_class(kind).from_options(VisualOptions(**options))
