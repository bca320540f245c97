"""Text token features: RoBERTa (transformers) or CLIP text tokens (open_clip).

Both return, per caption, a (n_tokens, D) float32 array: RoBERTa's last hidden state without
the special tokens; CLIP's per-token outputs after ``ln_final`` and the text projection, from the
first word to the last (start and end tokens dropped).

A synthetic dataset's queries come from the generator's own word map (``data/synth_words``);
``text_from_record`` rebuilds it from its record, but ``--text`` does not offer it.

Each encoder is registered under the name ``--text`` takes (``@register_text("name")``) and
builds itself from ``TextOptions`` (``from_options``) or from its ``extract.json`` record
(``from_record``). torch and numpy are imported inside the functions, so the names are known to
``prvr --help`` without loading them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from prvr_cli.core.registry import Registry
from prvr_cli.errors import PrvrError
from prvr_cli.features.hub import offline_hint, offline_unless_reachable

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True, kw_only=True)
class TextOptions:
    """What ``prvr extract`` knows about the text side; each encoder takes what it needs."""

    model: str | None = None  # --text-model: a transformers name or local path
    clip_model: str = "ViT-L-14"
    clip_pretrained: str = "openai"
    device: object = "cpu"
    batch_size: int = 64


TEXT_ENCODERS: Registry[type] = Registry("text encoder", where="--text")


def register_text(name: str):
    """Class decorator: ``--text name`` builds this encoder (with ``cls.from_options``), and an
    ``extract.json`` record with ``"backbone": name`` rebuilds it (with ``cls.from_record``)."""
    return TEXT_ENCODERS.register(name)


def list_text() -> list[str]:
    """The registered ``--text`` names, in registration order."""
    return TEXT_ENCODERS.names()


def text_class(name: str) -> type:
    """The encoder class registered as ``name``; a one-line ``PrvrError`` listing the names otherwise."""
    return TEXT_ENCODERS[name]


@register_text("roberta")
class RobertaText:
    def __init__(
        self,
        model: str = "roberta-large",
        device="cpu",
        batch_size: int = 64,
        max_tokens: int = 64,
        advice: str | None = None,
    ):
        """``model``: a transformers name or saved folder, or a test model's name (``prvr-tiny-roberta``).
        ``advice`` replaces the how-to-fix sentence of the error when the model cannot be loaded."""
        from transformers import AutoModel, AutoTokenizer

        from prvr_cli.features.tiny import tiny_model

        if (build := tiny_model(model, "roberta")) is not None:
            self.model, self.tokenizer = build()
        else:
            try:
                with offline_unless_reachable():
                    self.tokenizer = AutoTokenizer.from_pretrained(model)
                    self.model = AutoModel.from_pretrained(model)
            except Exception as err:
                raise offline_hint(
                    f"the text model {model!r}",
                    advice
                    or f"Pre-download it on a connected machine (huggingface-cli download {model}, or "
                    f'python -c "from transformers import AutoModel, AutoTokenizer; '
                    f"AutoModel.from_pretrained('{model}'); AutoTokenizer.from_pretrained('{model}')\"), "
                    "copy ~/.cache/huggingface here, "
                    "or pass --text-model /path/to/a/saved/model.",
                    err,
                ) from None
        self.model_name = model
        self.model = self.model.to(device).eval()
        self.device, self.batch_size, self.max_tokens = device, batch_size, max_tokens
        self.dim = int(self.model.config.hidden_size)
        self.name = "roberta"

    @classmethod
    def from_options(cls, options: TextOptions) -> RobertaText:
        o = options
        return cls(o.model or "roberta-large", o.device, o.batch_size)

    @classmethod
    def from_record(cls, rec: dict, device="cpu", advice: str | None = None) -> RobertaText:
        return cls(rec["model"], device, max_tokens=rec.get("max_tokens", 64), advice=advice)

    def encode(self, texts: list[str]) -> list[np.ndarray]:
        import torch

        with torch.no_grad():
            return self._encode(texts)

    def _encode(self, texts: list[str]) -> list[np.ndarray]:
        out = []
        for s in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(
                texts[s : s + self.batch_size],
                padding=True,
                truncation=True,
                max_length=self.max_tokens,
                return_special_tokens_mask=True,
                return_tensors="pt",
            )
            special = enc.pop("special_tokens_mask").bool()
            enc = {k: v.to(self.device) for k, v in enc.items()}
            hidden = self.model(**enc).last_hidden_state.float().cpu()  # (b, T, D)
            keep = enc["attention_mask"].cpu().bool() & ~special
            for i in range(hidden.shape[0]):
                tokens = hidden[i][keep[i]]
                out.append((tokens if len(tokens) else hidden[i][:1]).numpy())
        return out

    def describe(self) -> dict:
        return {
            "backbone": "roberta",
            "model": self.model_name,
            "dim": self.dim,
            "tokens": "last hidden state, special tokens dropped",
            "max_tokens": self.max_tokens,
        }


@register_text("clip")
class ClipText:
    def __init__(
        self,
        model: str = "ViT-L-14",
        pretrained: str = "openai",
        device="cpu",
        batch_size: int = 64,
        advice: str | None = None,
    ):
        import torch

        from prvr_cli.features.clip_model import clip_tokenizer, load_clip

        self.model, self.model_name, self.pretrained = load_clip(model, pretrained, device, advice)
        if not hasattr(self.model, "token_embedding"):
            raise PrvrError(f"open_clip {model}: its text tower gives no per-token features this version can read")
        self.tokenizer = clip_tokenizer(self.model_name)
        self.device, self.batch_size = device, batch_size
        proj = self.model.text_projection
        self.dim = int(proj.out_features if isinstance(proj, torch.nn.Linear) else proj.shape[1])
        self.name = "clip_" + self.model_name.lower().replace("-", "_").replace("/", "_")

    @classmethod
    def from_options(cls, options: TextOptions) -> ClipText:
        o = options
        return cls(o.model or o.clip_model, o.clip_pretrained, o.device, o.batch_size)

    @classmethod
    def from_record(cls, rec: dict, device="cpu", advice: str | None = None) -> ClipText:
        return cls(rec["model"], rec.get("pretrained"), device, advice=advice)

    def encode(self, texts: list[str]) -> list[np.ndarray]:
        import torch

        with torch.no_grad():
            return self._encode(texts)

    def _encode(self, texts: list[str]) -> list[np.ndarray]:
        import torch

        m, out = self.model, []
        for s in range(0, len(texts), self.batch_size):
            ids = self.tokenizer(texts[s : s + self.batch_size]).to(self.device)  # (b, 77)
            x = m.token_embedding(ids) + m.positional_embedding
            x = m.ln_final(m.transformer(x, attn_mask=m.attn_mask))
            x = m.text_projection(x) if isinstance(m.text_projection, torch.nn.Linear) else x @ m.text_projection
            eot = ids.argmax(dim=-1)  # the end token has the largest id
            for i in range(len(ids)):
                end = max(int(eot[i]), 2)
                out.append(x[i, 1:end].float().cpu().numpy())
        return out

    def describe(self) -> dict:
        return {
            "backbone": "clip",
            "model": self.model_name,
            "pretrained": self.pretrained,
            "dim": self.dim,
            "tokens": "per-token ln_final + text projection, start/end dropped",
        }


def search_advice(rec: dict, said: str | None = None) -> str:
    """How to make the text model that ``extract.json`` (or a zero-shot index) recorded available
    to ``prvr search``; ``said`` replaces the sentence naming where the record is."""
    model = rec["model"]
    said = said or "prvr search encodes queries with the text model recorded in the dataset's extract.json"
    if rec["backbone"] == "roberta" and (model.startswith(("/", ".", "~")) or "\\" in model):
        return f"{said}, a saved model folder: copy it to {model} on this machine."
    if rec["backbone"] == "clip":
        pretrained = rec.get("pretrained")
        get = f"python -c \"import open_clip; open_clip.create_model('{model}', pretrained='{pretrained}')\""
    else:
        get = f"huggingface-cli download {model}"
    return (
        f"{said}: pre-download it on a connected machine ({get}) and copy its Hugging Face cache "
        "(~/.cache/huggingface, or $HF_HOME) to this machine."
    )


def text_from_record(rec: dict, device="cpu"):
    """Rebuild the text backbone that ``extract.json`` (or, for synthetic data, ``synth.json``)
    recorded, to encode new queries."""
    from prvr_cli.data.synth_words import BACKBONE, SynthWords

    if rec["backbone"] == BACKBONE:  # rebuilt from its record only: --text does not offer it
        return SynthWords.from_record(rec, device)
    return text_class(rec["backbone"]).from_record(rec, device, advice=search_advice(rec))


def build_text(kind: str, **options):
    """The text encoder registered as ``kind``, built from ``TextOptions(**options)``."""
    return text_class(kind).from_options(TextOptions(**options))
