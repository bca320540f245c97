"""open_clip loading: a model name with a pretrained tag or a local checkpoint file; and the
test-only tiny configuration, registered at run time."""

from __future__ import annotations

import functools
import json
import tempfile
from pathlib import Path

from prvr_cli.errors import PrvrError
from prvr_cli.features.backbones import offline_hint

TINY_NAME = "prvr-tiny-clip"
TINY_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def register_tiny_clip() -> str:
    import open_clip

    if TINY_NAME not in open_clip.list_models():
        folder = Path(tempfile.mkdtemp(prefix="prvr-clip-cfg-"))
        (folder / f"{TINY_NAME}.json").write_text(json.dumps(TINY_CONFIG))
        open_clip.add_model_config(folder)
    return TINY_NAME


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
    import torch

    if tiny:
        torch.manual_seed(0)
        name = register_tiny_clip()
        return open_clip.create_model(name, pretrained=None).to(device).eval(), name, "random (test only)"
    if model not in open_clip.list_models():
        raise PrvrError(f"unknown open_clip model {model!r} (see open_clip.list_models())")
    if looks_like_path(pretrained) and not Path(pretrained).is_file():
        raise PrvrError(f"{pretrained}: file is missing (open_clip {model} checkpoint)")
    from prvr_cli.features.hub import offline_unless_reachable

    offline_unless_reachable()
    try:
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
