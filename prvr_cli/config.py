"""Settings as dataclasses, and the named presets of the model zoo (``models/*.json``).

A preset is one JSON file with a ``card`` (a few lines for humans) and the sections ``data``,
``model``, ``loss`` and ``train``. ``load_preset(name, overrides)`` returns a resolved ``Config``;
overrides are ``section.key=value`` strings (``--set`` on the command line).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from prvr_cli.errors import PrvrError, unknown_name


@dataclass
class DataConfig:
    collection: str = "synth"
    # None: the only one in the collection (training records the name it picks)
    visual_feature: str | None = "synth"  # FeatureData/<name>/ (BigFile) or FeatureData/<name>.hdf5
    text_feature: str | None = "roberta"  # TextData/<name>_<collection>_query_feat.hdf5
    max_ctx_l: int = 128  # videos longer than this are resampled by averaging bins
    max_desc_l: int = 30  # queries are truncated to this many tokens
    batch_size: int = 128  # videos per training batch (with all their queries)
    eval_batch_size: int = 256
    num_workers: int = 0


@dataclass
class ModelConfig:
    visual_dim: int = 1024  # input frame feature size
    text_dim: int = 1024  # input token feature size
    hidden: int = 384  # d
    heads: int = 4
    layers: int = 1
    dropout: float = 0.2
    input_dropout: float = 0.2
    max_ctx_l: int = 128  # positional table sizes
    max_desc_l: int = 30
    seeds: tuple[int, int] = (0, 1)  # theta, phi initialisation seeds
    # temporal prior of the video encoder: one width per attention head, in frames, of a Gaussian
    # bias on the attention logits (0 = that head sees the whole video); () = the paper's layer
    attention_widths: tuple[float, ...] = ()
    video_context: str = "none"  # none | mean | attention: add a pooled video summary to every frame
    # the encoder of each branch, by registry name (nets/encoders.py): frame (the ARL paper's one
    # layer over frames) | gmm (GMMFormer) | gmm2 (GMMFormer v2); encoder_phi: phi's, if different
    encoder: str = "frame"
    encoder_phi: str = ""
    branches: int = 2  # 2: theta and phi (ARL); 1: theta alone (a single-model method such as GMMFormer)
    clips: int = 32  # K clip tokens of the gmm encoders, each an average of an equal run of frames
    clip_weight: float = 0.7  # score = clip_weight * max over clips + (1 - clip_weight) * the frame-scale score
    # gmm2 pads frames to max_ctx_l as its official code does; "zero" scores the padding as zero
    # vectors (a video's frame score floors at 0), "masked" leaves it out
    frame_padding: str = "zero"
    mix_temperature: float = 0.09  # gmm2: softmax temperature of the per-position mix of attention paths
    # gmm2: recompute each attention path's activations in the backward pass instead of keeping them:
    # the same gradients for about a third more compute and a fraction of the memory (two gmm2
    # branches at batch 128 need about 20 GB without it)
    recompute: bool = False
    # RAL (gmm2 only): csa scores the frame scale by each query word's best frame, summed with
    # learned word weights (a word encoder and a weight head), in training and at inference;
    # gaussian adds RAL's mean and log-variance heads over videos and query support sets (training)
    csa: bool = False
    gaussian: bool = False
    # MSC (gmm2 only): op_tome builds the K clip tokens by Order-Preserving Token Merging: the frames
    # averaged to a grid of op_tome_steps[0] tokens, then adjacent pairs merged (size-weighted means)
    # down to each later step (the last = clips), a log-size term in the clip attention, and each
    # clip's frame span kept for moments; msc adds CBVA's projection head and the training tensors
    # of MSC's terms (``Embeddings.aux``; --method msc)
    op_tome: bool = False
    op_tome_steps: tuple[int, ...] = (128, 80, 52, 32)
    msc: bool = False

    def __post_init__(self):
        # encoder names are checked against the registry where the model is built (nets/encoders.py)
        if self.branches not in (1, 2):
            raise PrvrError(f"model.branches must be 1 or 2, not {self.branches}")
        if self.encoder_phi and self.branches == 1:
            raise PrvrError("model.encoder_phi needs model.branches=2")
        if self.frame_padding not in ("zero", "masked"):
            raise PrvrError(f"model.frame_padding must be zero|masked, not {self.frame_padding!r}")
        if not 0.0 <= self.clip_weight <= 1.0:
            raise PrvrError(f"model.clip_weight must lie in [0, 1], not {self.clip_weight}")
        if self.clips < 1:
            raise PrvrError(f"model.clips must be >= 1, not {self.clips}")
        if self.video_context not in ("none", "mean", "attention"):
            raise PrvrError(f"model.video_context must be none|mean|attention, not {self.video_context!r}")
        if self.attention_widths and len(self.attention_widths) != self.heads:
            raise PrvrError(
                f"model.attention_widths needs one width per head ({self.heads}), got {len(self.attention_widths)}"
            )
        if any(w < 0 for w in self.attention_widths):
            raise PrvrError("model.attention_widths must be >= 0 (0 = unrestricted head)")


def check_tome_steps(steps: tuple[int, ...], clips: int) -> None:
    """OP-ToMe's schedule: a grid, then targets, each merging at most every adjacent pair of an
    even count (n / 2 <= target < n), the last one model.clips."""
    ok = len(steps) >= 2 and steps[-1] == clips
    ok = ok and all(n % 2 == 0 and n // 2 <= t < n for n, t in zip(steps, steps[1:]))
    if not ok:
        raise PrvrError(
            f"model.op_tome_steps={list(steps)}: must be a grid then merge targets, each from an even count n to "
            f"between n / 2 and n - 1, ending at model.clips={clips} (the paper's: 128,80,52,32)"
        )


@dataclass
class LossConfig:
    method: str = "arl"  # arl | gmmformer | ral | msc: the objective (methods/, which checks the name); --method
    margin: float = 0.1  # m, for negatives
    margin_ambiguous: float = 0.05  # m_a < m, for ambiguous items
    lambda_nce: float = 0.02  # weight of the contrastive term (GMMFormer's nce weight)
    temperature: float = 1.0  # the logits are s / temperature
    frame_weight: float = 1.0  # L = L_video + frame_weight * L_frame
    warmup_epochs: int = 2
    tv_ambiguity: bool = True
    tf_ambiguity: bool = True
    cross_model: bool = True
    ambiguous_as: str = "ours"  # ours | positive | ignore
    uncertainty: str = "online"  # online (free, from the previous epoch) | pass (a no-grad pass per epoch)
    tau_u_over: str = "positive"  # positive | all
    tf_thresholds: str = "frame"  # frame (from frame-level distributions) | video (reuse tau_s, tau_u)
    thresholds: str = "epoch"  # epoch (from the uncertainty statistics) | batch (this batch's positive pairs)
    extra_terms: str = ""  # "name:weight,...": terms registered in arl/terms.py, added to each branch's loss
    # GMMFormer's objective (method = gmmformer; official defaults of v1, the gmm2 presets set v2's)
    gmm_clip_nce: float = 0.05  # weight of the NCE on clip-scale scores
    gmm_frame_nce: float = 0.04  # weight of the NCE on frame-scale (v1: video-level) scores
    gmm_qdl: float = 0.001  # weight of the query-diversity term
    gmm_qdl_margin: float = 0.15
    gmm_qdl_alpha: float = 32.0
    gmm_qdl_focal: float = 0.0  # v2's focal exponent on (1 + cos); 0 = v1's form (log of the summed exponentials)
    gmm_ot: float = 0.0  # v2: weight of the clip-query matching term (linear_sum_assignment)
    gmm_hard_negative_epoch: int = 30  # from this epoch on, triplet negatives come from the hardest hard_pool
    gmm_hard_pool: int = 20
    # RAL (method = ral): GMMFormer v2's terms plus proxy matching (MIL-NCE over sampled proxies)
    # and distribution alignment (KL terms); weights as the official code (its README gives 0.001
    # for the alignment term, the code 2.5e-4)
    ral_pm: float = 0.004  # weight of the proxy-matching MIL-NCE
    ral_da: float = 0.00025  # weight of the distribution-alignment KL terms
    ral_proxies: int = 6  # K proxies sampled from each video's and each support set's Gaussian
    # MSC (method = msc): GMMFormer v2's NCE and triplet terms plus TCPL (RKD distance and angle
    # between the query embeddings and the teacher's sentence embeddings: "mean" = the mean of the
    # query's input token features, "eos" = its last token, CLIP's [EOS]) and CBVA (frame-clip
    # contrast; "adaptive": fewer, merged clips for self-similar videos, "fixed": the K clips);
    # defaults as the official README's commands (admins97/MSC_PRVR)
    msc_tcpl: bool = True
    msc_teacher: str = "mean"  # mean | eos
    msc_tcpl_distance: float = 15.0  # weight of the RKD distance term (--rkd_d_coef)
    msc_tcpl_angle: float = 30.0  # weight of the RKD angle term (--rkd_a_coef)
    msc_cbva: str = "adaptive"  # adaptive | fixed | off
    msc_cbva_weight: float = 0.1  # --vl_coef
    msc_sim_thr: float = 0.8  # CBVA's self-similarity threshold (--sim_thr: 0.8 TVR, ActivityNet; 0.85 Charades)

    def __post_init__(self):
        if self.ambiguous_as not in ("ours", "positive", "ignore"):
            raise PrvrError(f"loss.ambiguous_as must be ours|positive|ignore, not {self.ambiguous_as!r}")
        if self.uncertainty not in ("pass", "online"):
            raise PrvrError(f"loss.uncertainty must be pass|online, not {self.uncertainty!r}")
        if self.tau_u_over not in ("positive", "all"):
            raise PrvrError(f"loss.tau_u_over must be positive|all, not {self.tau_u_over!r}")
        if self.thresholds not in ("epoch", "batch"):
            raise PrvrError(f"loss.thresholds must be epoch|batch, not {self.thresholds!r}")
        if self.tf_thresholds not in ("frame", "video"):
            raise PrvrError(f"loss.tf_thresholds must be frame|video, not {self.tf_thresholds!r}")
        if self.msc_teacher not in ("mean", "eos"):
            raise PrvrError(f"loss.msc_teacher must be mean|eos, not {self.msc_teacher!r}")
        if self.msc_cbva not in ("adaptive", "fixed", "off"):
            raise PrvrError(f"loss.msc_cbva must be adaptive|fixed|off, not {self.msc_cbva!r}")

    @property
    def arl_on(self) -> bool:
        """Whether ARL's detection runs (its switches, under the arl method only)."""
        return self.method == "arl" and (self.tv_ambiguity or self.tf_ambiguity)


@dataclass
class TrainConfig:
    epochs: int = 100
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup_ratio: float = 0.01  # linear warmup share of all steps, then linear decay
    grad_clip: float = 1.0  # max norm of all gradients together; 0 = no global clipping
    optimizer: str = "adamw"  # adamw | bertadam (MS-SL's and GMMFormer's; see train/optim.py)
    patience: int = 10  # early stop after this many epochs without a better val SumR
    seed: int = 0
    amp: bool = True  # mixed precision, CUDA only

    def __post_init__(self):
        if self.optimizer not in ("adamw", "bertadam"):
            raise PrvrError(f"train.optimizer must be adamw|bertadam, not {self.optimizer!r}")


@dataclass
class MomentConfig:
    """How search and ``eval --moments`` place a moment in a video (``core/moments.py``)."""

    normalize: str = "query_bank"  # query_bank (standardise frame scores over the training queries) | none
    smooth: float = 1.0  # Gaussian sigma over frames of the frame signal; 0 = none
    alpha: float = 0.4  # span: frames around the peak with signal >= median + alpha * (peak - median)
    min_peakedness: float = 1.15  # below this the moment is the whole video, flagged not confident (chosen on val)


@dataclass
class Config:
    name: str = "custom"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    moments: MomentConfig = field(default_factory=MomentConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Config:
        sections = {
            "data": DataConfig,
            "model": ModelConfig,
            "loss": LossConfig,
            "train": TrainConfig,
            "moments": MomentConfig,
        }
        kwargs = {"name": d.get("name", "custom")}
        for key, klass in sections.items():
            raw = dict(d.get(key, {}))
            known = {f.name for f in dataclasses.fields(klass)}
            unknown = set(raw) - known
            if unknown:
                raise PrvrError(f"unknown {key} setting(s): {', '.join(sorted(unknown))}")
            for name in ("seeds", "attention_widths", "op_tome_steps"):
                if name in raw:
                    raw[name] = tuple(raw[name])
            kwargs[key] = klass(**raw)
        return cls(**kwargs)


def zoo_dir() -> Path:
    """The preset folder: inside the installed package, or ``models/`` of a source checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "models", here.parent / "models"):
        if candidate.is_dir() and any(candidate.glob("*.json")):
            return candidate
    raise PrvrError("the model zoo (models/*.json) is missing from this installation")


def list_presets() -> list[str]:
    return sorted(p.stem for p in zoo_dir().glob("*.json"))


def preset_card(name: str) -> str:
    return "\n".join(_read_preset(name).get("card", []))


def _read_preset(name: str) -> dict:
    path = zoo_dir() / f"{name}.json"
    if not path.is_file():
        raise PrvrError(unknown_name("preset", name, list_presets()))
    return json.loads(path.read_text())


def _coerce(text: str, current):
    if isinstance(current, bool):
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(text)
    if isinstance(current, int):
        return int(text)
    if isinstance(current, float):
        return float(text)
    if isinstance(current, tuple):
        return tuple(float(x) if "." in x else int(x) for x in text.split(",") if x.strip())
    return text


def apply_overrides(cfg: Config, overrides: list[str] | None) -> Config:
    """Apply ``section.key=value`` strings (a bare ``key`` is looked up in every section)."""
    for item in overrides or []:
        if "=" not in item:
            raise PrvrError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        if "." in key:
            section_name, attr = key.split(".", 1)
            sections = [getattr(cfg, section_name, None)]
        else:
            attr = key
            sections = [cfg.data, cfg.model, cfg.loss, cfg.train, cfg.moments]
        matches = [s for s in sections if s is not None and hasattr(s, attr)]
        if len(matches) != 1:
            raise PrvrError(f"--set {item!r}: unknown or ambiguous setting {key!r}")
        section = matches[0]
        try:
            setattr(section, attr, _coerce(value, getattr(section, attr)))
        except ValueError:
            raise PrvrError(
                f"--set {item!r}: cannot read {value!r} as {type(getattr(section, attr)).__name__}"
            ) from None
        if hasattr(section, "__post_init__"):
            section.__post_init__()
    return validate(cfg)


def _check(ok: bool, key: str, value, rule: str) -> None:
    if not ok:
        raise PrvrError(f"{key}={value!r}: must be {rule}")


def validate(cfg: Config) -> Config:
    """Refuse settings that cannot train (or train silently wrong), by name, once, where a
    config is loaded (a preset plus --set, or a resumed run's)."""
    for key, value in flat(cfg).items():
        if isinstance(value, float):
            _check(math.isfinite(value), key, value, "a finite number")
    d, m, t = cfg.data, cfg.model, cfg.train
    for key, value in (
        ("data.max_ctx_l", d.max_ctx_l),
        ("data.max_desc_l", d.max_desc_l),
        ("data.batch_size", d.batch_size),
        ("data.eval_batch_size", d.eval_batch_size),
        ("model.visual_dim", m.visual_dim),
        ("model.text_dim", m.text_dim),
        ("model.hidden", m.hidden),
        ("model.heads", m.heads),
        ("model.layers", m.layers),
        ("model.max_ctx_l", m.max_ctx_l),
        ("model.max_desc_l", m.max_desc_l),
        ("train.epochs", t.epochs),
        ("train.patience", t.patience),
    ):
        _check(value >= 1, key, value, "at least 1")
    _check(m.hidden % m.heads == 0, "model.hidden", m.hidden, f"a multiple of model.heads ({m.heads})")
    for key, value in (("model.dropout", m.dropout), ("model.input_dropout", m.input_dropout)):
        _check(0 <= value < 1, key, value, "in [0, 1)")
    _check(t.lr > 0, "train.lr", t.lr, "positive")
    _check(t.weight_decay >= 0, "train.weight_decay", t.weight_decay, "at least 0")
    _check(0 <= t.warmup_ratio <= 1, "train.warmup_ratio", t.warmup_ratio, "in [0, 1]")
    _check(t.grad_clip >= 0, "train.grad_clip", t.grad_clip, "at least 0 (0: no clipping)")
    _check(d.num_workers >= 0, "data.num_workers", d.num_workers, "at least 0")
    _check(cfg.loss.temperature > 0, "loss.temperature", cfg.loss.temperature, "positive")
    _check(cfg.loss.warmup_epochs >= 0, "loss.warmup_epochs", cfg.loss.warmup_epochs, "at least 0")
    _check(cfg.loss.ral_proxies >= 1, "loss.ral_proxies", cfg.loss.ral_proxies, "at least 1")
    # checked once all overrides are in (``--set model.csa=true model.encoder=gmm2`` in either order)
    if (m.csa or m.gaussian) and {m.encoder, m.encoder_phi or m.encoder} != {"gmm2"}:
        raise PrvrError("model.csa and model.gaussian are RAL's parts of the gmm2 encoder: use model.encoder=gmm2")
    if (m.op_tome or m.msc) and {m.encoder, m.encoder_phi or m.encoder} != {"gmm2"}:
        raise PrvrError("model.op_tome and model.msc are MSC's parts of the gmm2 encoder: use model.encoder=gmm2")
    if m.op_tome:
        check_tome_steps(m.op_tome_steps, m.clips)
    return cfg


def flat(cfg: Config) -> dict:
    """``{"section.key": value}`` of every setting (and ``name``)."""
    out = {}
    for key, value in cfg.to_dict().items():
        if isinstance(value, dict):
            out |= {f"{key}.{k}": (list(v) if isinstance(v, tuple) else v) for k, v in value.items()}
        else:
            out[key] = value
    return out


def changes(old: Config, new: Config) -> dict[str, tuple]:
    """Settings that differ: ``{"section.key": (old value, new value)}``."""
    a, b = flat(old), flat(new)
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def load_preset(name: str, overrides: list[str] | None = None) -> Config:
    raw = _read_preset(name)
    cfg = Config.from_dict({k: v for k, v in raw.items() if k != "card"} | {"name": name})
    return apply_overrides(cfg, overrides)
