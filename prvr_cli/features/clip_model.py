"""open_clip loading: a model name with a pretrained tag or a local checkpoint file, or the name
of a test model (``prvr-tiny-clip``, ``features/tiny.py``)."""

from __future__ import annotations

import functools
from pathlib import Path

from prvr_cli.errors import PrvrError
from prvr_cli.features.hub import offline_hint, offline_unless_reachable
from prvr_cli.features.tiny import TINY_CLIP, TINY_CLIP_CONFIG, TINY_WEIGHTS, tiny_model


def clip_tokenizer(name: str):
    """The tokenizer of an open_clip model name, the tiny one included."""
    import open_clip

    if name == TINY_CLIP:
        return open_clip.tokenizer.SimpleTokenizer(context_length=TINY_CLIP_CONFIG["text_cfg"]["context_length"])
    return open_clip.get_tokenizer(name)


CHECKPOINT_SUFFIXES = (".bin", ".pt", ".pth", ".safetensors")


def looks_like_path(value: str | None) -> bool:
    """A ``--clip-pretrained`` value meant as a local file rather than an open_clip tag."""
    return bool(value) and ("/" in value or "\\" in value or value.lower().endswith(CHECKPOINT_SUFFIXES))


@functools.lru_cache(maxsize=2)
def load_clip(model: str, pretrained: str | None, device, advice: str | None = None):
    """-> (model in eval mode on ``device``, model name, pretrained description). Cached, so the
    image and text towers of one CLIP (``--visual clip --text clip``) share one load. ``advice``
    replaces the how-to-fix sentence of the error when the weights cannot be loaded. A test
    model's name (``prvr-tiny-clip``) builds it with random weights; ``pretrained`` is ignored."""
    import open_clip

    if (build := tiny_model(model, "clip")) is not None:
        return build().to(device).eval(), model, TINY_WEIGHTS
    if model not in open_clip.list_models():
        raise PrvrError(f"unknown open_clip model {model!r} (see open_clip.list_models())")
    if looks_like_path(pretrained) and not Path(pretrained).is_file():
        raise PrvrError(f"{pretrained}: file is missing (open_clip {model} checkpoint)")
    try:
        with offline_unless_reachable():
            net = open_clip.create_model(model, pretrained=pretrained)
    except Exception as err:
        raise offline_hint(
            f"open_clip {model} weights {pretrained!r}",
            advice
            or f'Pre-download them on a connected machine (python -c "import open_clip; '
            f"open_clip.create_model('{model}', pretrained='{pretrained}')\", which fills the Hugging Face cache "
            "~/.cache/huggingface, then copy it here) or pass --clip-pretrained /path/to/checkpoint.bin.",
            err,
        ) from None
    return net.to(device).eval(), model, str(pretrained)


# Any fixed text: its embedding fingerprints a text tower, so an index can tell whether the
# encoder that search loads is the one it was built with.
PROBE_TEXT = "a person opens a door and walks into a kitchen"
PROBE_MIN_COS = 0.99  # the same weights on another device or build stay far above this


class ClipQueries:
    """A CLIP model's text tower as the query encoder of zero-shot search: per text its pooled,
    projected, unit embedding (open_clip ``encode_text``), the space its image embeddings live in.
    Not the per-token features ``--text clip`` extracts for training."""

    def __init__(self, model: str, pretrained: str | None, device="cpu", advice: str | None = None):
        self._set(*load_clip(model, pretrained, device, advice), device)

    @classmethod
    def from_model(cls, net, model: str, pretrained: str, device="cpu") -> ClipQueries:
        """Wrap an open_clip model already loaded (a notebook's, or a benchmark's)."""
        self = cls.__new__(cls)
        self._set(net.to(device).eval(), model, pretrained, device)
        return self

    def _set(self, net, model_name: str, pretrained: str, device) -> None:
        self.net, self.model_name, self.pretrained = net, model_name, pretrained
        self.tokenizer = clip_tokenizer(model_name)
        self.device = device
        self.dim = int(net.visual.output_dim)

    def encode(self, texts: list[str], batch_size: int = 256):
        """texts -> (B, d) float32 unit embeddings."""
        import torch

        out = []
        with torch.no_grad():
            for s in range(0, len(texts), batch_size):
                ids = self.tokenizer(texts[s : s + batch_size]).to(self.device)
                out.append(self.net.encode_text(ids, normalize=True).float().cpu())
        return torch.cat(out).numpy()

    def probe(self) -> list[float]:
        """The unit embedding of ``PROBE_TEXT``: the text tower's fingerprint."""
        return [round(float(x), 6) for x in self.encode([PROBE_TEXT])[0]]

    def record(self) -> dict:
        """What a zero-shot index stores about its query encoder."""
        return {
            "backbone": "clip",
            "model": self.model_name,
            "pretrained": self.pretrained,
            "dim": self.dim,
            "probe": self.probe(),
        }

    def check(self, rec: dict, where) -> None:
        """Refuse to encode queries for an index (``where``) whose encoder record ``rec`` names
        another model, or whose probe embedding this text tower does not reproduce."""
        import numpy as np

        if rec["model"] != self.model_name or rec["dim"] != self.dim:
            raise PrvrError(
                f"{where}: was built with CLIP {rec['model']} ({rec['dim']}-d), "
                f"not {self.model_name} ({self.dim}-d); search it with the model it was built with"
            )
        cos = float(np.dot(self.probe(), rec["probe"]))
        if cos < PROBE_MIN_COS:
            raise PrvrError(
                f"{where}: CLIP {self.model_name} weights {self.pretrained!r} differ from the {rec['pretrained']!r} "
                f"weights it was built with (their embeddings of a probe text agree to cos {cos:.3f}); "
                "search with those weights or rebuild the index"
            )
