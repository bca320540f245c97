"""open_clip loading: a model name with a pretrained tag or a local checkpoint file; and the
test-only tiny configuration, built from its config dict (nothing registered, nothing written)."""

from __future__ import annotations

import copy
import functools
from pathlib import Path

from prvr_cli.errors import PrvrError
from prvr_cli.features.hub import offline_hint, offline_unless_reachable

TINY_NAME = "prvr-tiny-clip"
TINY_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
TINY_SEED = 0


def tiny_clip():
    """The test-only tiny CLIP with random weights, the same bytes on every call. Seeded from its
    own RNG: the caller's global torch RNG state is left as it was."""
    import open_clip
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        return open_clip.model.CLIP(**copy.deepcopy(TINY_CONFIG))


def clip_tokenizer(name: str):
    """The tokenizer of an open_clip model name, the tiny one included."""
    import open_clip

    if name == TINY_NAME:
        return open_clip.tokenizer.SimpleTokenizer(context_length=TINY_CONFIG["text_cfg"]["context_length"])
    return open_clip.get_tokenizer(name)


CHECKPOINT_SUFFIXES = (".bin", ".pt", ".pth", ".safetensors")


def looks_like_path(value: str | None) -> bool:
    """A ``--clip-pretrained`` value meant as a local file rather than an open_clip tag."""
    return bool(value) and ("/" in value or "\\" in value or value.lower().endswith(CHECKPOINT_SUFFIXES))


@functools.lru_cache(maxsize=2)
def load_clip(model: str, pretrained: str | None, device, tiny: bool = False, advice: str | None = None):
    """-> (model in eval mode on ``device``, model name, pretrained description). Cached, so the
    image and text towers of one CLIP (``--visual clip --text clip``) share one load. ``advice``
    replaces the how-to-fix sentence of the error when the weights cannot be loaded."""
    import open_clip

    if tiny:
        return tiny_clip().to(device).eval(), TINY_NAME, "random (test only)"
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
