"""Text token features: RoBERTa (transformers) or CLIP text tokens (open_clip).

Both return, per caption, a (n_tokens, D) float32 array: RoBERTa's last hidden state without
the special tokens; CLIP's per-token outputs after ``ln_final`` and the text projection, from the
first word to the last (start and end tokens dropped).
"""

from __future__ import annotations

import numpy as np
import torch

from prvr_cli.errors import PrvrError
from prvr_cli.features.backbones import offline_hint


class RobertaText:
    def __init__(
        self,
        model: str = "roberta-large",
        device="cpu",
        batch_size: int = 64,
        tiny: bool = False,
        max_tokens: int = 64,
        advice: str | None = None,
    ):
        """``advice`` replaces the how-to-fix sentence of the error when the model cannot be loaded."""
        from transformers import AutoModel, AutoTokenizer

        if tiny:
            from prvr_cli.features.tiny import tiny_roberta

            self.model, self.tokenizer = tiny_roberta()
            self.model_name = "tiny-roberta (test only)"
        else:
            from prvr_cli.features.hub import offline_unless_reachable

            offline_unless_reachable()
            try:
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
        self.device, self.batch_size, self.max_tokens, self.tiny = device, batch_size, max_tokens, tiny
        self.dim = int(self.model.config.hidden_size)
        self.name = "roberta"

    @torch.no_grad()
    def encode(self, texts: list[str]) -> list[np.ndarray]:
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
            "tiny": self.tiny,
            "tokens": "last hidden state, special tokens dropped",
            "max_tokens": self.max_tokens,
        }


class ClipText:
    def __init__(
        self,
        model: str = "ViT-L-14",
        pretrained: str = "openai",
        device="cpu",
        batch_size: int = 64,
        tiny: bool = False,
        advice: str | None = None,
    ):
        import open_clip

        from prvr_cli.features.clip_model import load_clip

        self.model, self.model_name, self.pretrained = load_clip(model, pretrained, device, tiny, advice)
        if not hasattr(self.model, "token_embedding"):
            raise PrvrError(f"open_clip {model}: its text tower gives no per-token features this version can read")
        self.tokenizer = open_clip.get_tokenizer(self.model_name)
        self.device, self.batch_size, self.tiny = device, batch_size, tiny
        proj = self.model.text_projection
        self.dim = int(proj.out_features if isinstance(proj, torch.nn.Linear) else proj.shape[1])
        self.name = "clip_" + self.model_name.lower().replace("-", "_").replace("/", "_")

    @torch.no_grad()
    def encode(self, texts: list[str]) -> list[np.ndarray]:
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
            "tiny": self.tiny,
            "tokens": "per-token ln_final + text projection, start/end dropped",
        }


def search_advice(rec: dict) -> str:
    """How to make the text model that ``extract.json`` recorded available to ``prvr search``,
    which, unlike extract, has no option to point elsewhere."""
    model = rec["model"]
    said = "prvr search encodes queries with the text model recorded in the dataset's extract.json"
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
    """Rebuild the text backbone that ``extract.json`` recorded, to encode new queries."""
    tiny = rec.get("tiny", False)
    if rec["backbone"] == "roberta":
        return RobertaText(
            rec["model"], device, tiny=tiny, max_tokens=rec.get("max_tokens", 64), advice=search_advice(rec)
        )
    return ClipText(rec["model"], rec.get("pretrained"), device, tiny=tiny, advice=search_advice(rec))


def build_text(
    kind: str,
    *,
    model: str | None = None,
    clip_model="ViT-L-14",
    clip_pretrained="openai",
    device="cpu",
    batch_size=64,
    tiny=False,
):
    if kind == "roberta":
        return RobertaText(model or "roberta-large", device, batch_size, tiny)
    if kind == "clip":
        return ClipText(model or clip_model, clip_pretrained, device, batch_size, tiny)
    raise PrvrError(f"unknown --text {kind!r}: use roberta or clip")
