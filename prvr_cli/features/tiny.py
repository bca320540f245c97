"""Test models: random weights, nothing downloaded, registered by name (as timm registers its
test models). A name goes where the loader of its family takes a model name or a weights file:

    prvr-tiny-clip        --clip-model (--visual clip, --text clip): an open_clip CLIP, 32 px, 2 layers
    prvr-tiny-roberta     --text-model (--text roberta): 2 layers, a BPE tokenizer trained in memory
    prvr-tiny-i3d         --i3d-checkpoint: the Inception-v1 I3D architecture, decoded at 64 px
    prvr-tiny-resnet152   --resnet-checkpoint: torchvision's ResNet-152 architecture, decoded at 64 px

Each builder seeds its own RNG: the same bytes on every call, the caller's global RNG left as it
was. A new one is a builder and a decorator line::

    @register_tiny_model("prvr-tiny-dino", family="dino")
    def tiny_dino(): ...

and its backbone asks ``tiny_model(name, "dino")`` before loading real weights.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

from prvr_cli.core.registry import Registry
from prvr_cli.errors import PrvrError

TINY_SEED = 0
TINY_SIDE = 64  # the short side the tiny video backbones decode at: the architecture is real, the input small
TINY_CLIP = "prvr-tiny-clip"
TINY_ROBERTA = "prvr-tiny-roberta"
TINY_I3D = "prvr-tiny-i3d"
TINY_RESNET = "prvr-tiny-resnet152"
TINY_WEIGHTS = "random (test only)"  # what a tiny model's description records as its weights
WORDS = (
    "the a red blue green yellow white black square circle ball box moves left right up down "
    "spins falls appears grows shrinks slowly quickly then and on in of to from screen corner"
).split()
TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


@dataclass(frozen=True)
class TinyModel:
    family: str  # the loader that takes the name: clip | roberta | i3d | resnet152
    build: Callable[[], object]


TINY_MODELS: Registry[TinyModel] = Registry("test model")


def register_tiny_model(name: str, family: str):
    """Decorator: ``build()`` makes the test model ``name``, which ``family``'s loader accepts."""

    def add(build):
        TINY_MODELS.register(name, TinyModel(family, build))
        return build

    return add


def tiny_model(name: str | None, family: str) -> Callable[[], object] | None:
    """The builder of the test model ``name`` for a ``family`` loader; None when ``name`` is no
    test model (a real model name or weights file). A test model of another family is refused."""
    entry = TINY_MODELS.get(name) if isinstance(name, str) else None
    if entry is None:
        return None
    if entry.family != family:
        raise PrvrError(f"{name!r} is a {entry.family} test model, not a {family} one")
    return entry.build


def _seeded(build):
    """``build`` under its own seeded RNG: deterministic, and the caller's RNG state is kept."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        return build()


@register_tiny_model(TINY_CLIP, family="clip")
def tiny_clip():
    """An open_clip CLIP built from its config dict (nothing added to open_clip's registry)."""
    import open_clip

    return _seeded(lambda: open_clip.model.CLIP(**copy.deepcopy(TINY_CLIP_CONFIG)))


@register_tiny_model(TINY_ROBERTA, family="roberta")
def tiny_roberta():
    """-> (RobertaModel, tokenizer): a small RobertaConfig and a byte-level BPE tokenizer trained
    in memory on a fixed word list."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast, RobertaConfig, RobertaModel

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    special = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=special,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([" ".join(WORDS)] * 4, trainer=trainer)
    tok.post_processor = processors.RobertaProcessing(
        ("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>"))
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        sep_token="</s>",
        cls_token="<s>",
    )
    config = RobertaConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=130,
        pad_token_id=tok.token_to_id("<pad>"),
        bos_token_id=tok.token_to_id("<s>"),
        eos_token_id=tok.token_to_id("</s>"),
    )
    return _seeded(lambda: RobertaModel(config, add_pooling_layer=False)), tokenizer


@register_tiny_model(TINY_I3D, family="i3d")
def tiny_i3d():
    """The I3D architecture with random weights."""
    from prvr_cli.features.i3d import InceptionI3d

    return _seeded(InceptionI3d)


@register_tiny_model(TINY_RESNET, family="resnet152")
def tiny_resnet152():
    """torchvision's ResNet-152 with random weights (its 1000-way head is left on; the backbone drops it)."""
    import torchvision

    return _seeded(lambda: torchvision.models.resnet152(weights=None))
