"""Component registries (visual backbones, text encoders) and loaders that leave no global state
behind: Hugging Face offline mode, open_clip's model registry, temp files, torch's global RNG."""

import hashlib
import os
import socket
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from prvr_cli.errors import PrvrError
from prvr_cli.features import backbones
from prvr_cli.features.backbones import Backbone, build_visual, list_visual, register_visual
from prvr_cli.features.text import build_text, list_text

SAMPLES = Path(__file__).resolve().parent.parent / "sample_videos"


def weights_digest(model: torch.nn.Module) -> str:
    return hashlib.sha256(b"".join(v.detach().cpu().numpy().tobytes() for v in model.state_dict().values())).hexdigest()


@pytest.fixture
def unreachable_hub(monkeypatch):
    """No DNS for the hub, and online mode set as a user without HF_HUB_OFFLINE has it."""
    import huggingface_hub.constants

    def no_dns(host, *args, **kwargs):
        raise socket.gaierror(f"{host}: name does not resolve")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return huggingface_hub.constants


def test_offline_mode_lasts_only_for_the_load(unreachable_hub):
    from prvr_cli.features.hub import offline_unless_reachable
    from prvr_cli.features.text import RobertaText

    with offline_unless_reachable() as offline:
        assert offline and unreachable_hub.HF_HUB_OFFLINE and os.environ["HF_HUB_OFFLINE"] == "1"
    assert unreachable_hub.HF_HUB_OFFLINE is False and "HF_HUB_OFFLINE" not in os.environ
    with pytest.raises(PrvrError, match="could not load the text model 'definitely-not-a-local-model'"):
        RobertaText("definitely-not-a-local-model")
    assert unreachable_hub.HF_HUB_OFFLINE is False and "HF_HUB_OFFLINE" not in os.environ


def test_offline_mode_restores_a_value_the_user_set(unreachable_hub, monkeypatch):
    from prvr_cli.features.hub import offline_unless_reachable

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    with offline_unless_reachable():
        assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert os.environ["HF_HUB_OFFLINE"] == "0" and unreachable_hub.HF_HUB_OFFLINE is False


def test_tiny_clip_registers_nothing_and_leaves_no_files(tmp_path, monkeypatch):
    import open_clip

    from prvr_cli.features.clip_model import load_clip
    from prvr_cli.features.tiny import TINY_CLIP as TINY_NAME

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    load_clip.cache_clear()
    visual = build_visual("clip", clip_model=TINY_NAME)
    text = build_text("clip", clip_model=TINY_NAME)
    assert visual.dim == text.dim == 32 and [t.shape for t in text.encode(["red ball"])] == [(2, 32)]
    assert list(tmp_path.iterdir()) == []
    assert TINY_NAME not in open_clip.list_models()


def test_tiny_models_leave_the_global_rng_alone_and_are_deterministic():
    from prvr_cli.features.tiny import tiny_clip, tiny_i3d, tiny_roberta

    torch.manual_seed(1234)
    state = torch.get_rng_state()
    clips = [weights_digest(tiny_clip()) for _ in range(2)]
    robertas = [weights_digest(tiny_roberta()[0]) for _ in range(2)]
    i3ds = [weights_digest(tiny_i3d()) for _ in range(2)]
    assert torch.equal(torch.get_rng_state(), state)
    assert clips[0] == clips[1] and robertas[0] == robertas[1] and i3ds[0] == i3ds[1]


def test_registries_list_their_names_in_errors_and_cli_help():
    from typer.main import get_command

    from prvr_cli.cli.app import app

    assert list_visual() == ["clip", "i3d", "resnet152", "resnet152+i3d"]
    assert list_text() == ["roberta", "clip"]
    with pytest.raises(
        PrvrError, match=r"^--visual: unknown visual backbone 'nope' \(known: clip, i3d, resnet152, resnet152\+i3d\)$"
    ):
        build_visual("nope")
    with pytest.raises(PrvrError, match=r"^--text: unknown text encoder 'nope' \(known: roberta, clip\)$"):
        build_text("nope")
    helps = {p.name: p.help for p in get_command(app).commands["extract"].params}
    assert all(name in helps["visual"] for name in list_visual())
    assert all(name in helps["text"] for name in list_text())


def test_a_registered_backbone_extracts_end_to_end(tmp_path, monkeypatch):
    """A new backbone is one class and one registry line: ``run_extract`` takes it by name."""
    from prvr_cli.data.bigfile import BigFile
    from prvr_cli.features.extract import ExtractSpec, run_extract

    monkeypatch.setattr(backbones, "VISUAL_BACKBONES", backbones.VISUAL_BACKBONES.copy())

    @register_visual("mean-colour")
    class MeanColour(Backbone):
        dim, name, short_side, default_step = 3, "mean_colour", 32, 2.0

        def __init__(self, device="cpu", batch_size=32):
            pass

        def encode(self, clips: np.ndarray) -> np.ndarray:
            return clips.mean(axis=(1, 2, 3)).astype(np.float32)  # (n, 3)

        def describe(self) -> dict:
            return {"backbone": "mean-colour", "dim": 3}

    with pytest.raises(ValueError, match="already registered"):
        register_visual("mean-colour")(MeanColour)
    assert "mean-colour" in list_visual()
    spec = ExtractSpec(videos_dir=SAMPLES, out=tmp_path, name="s", visual="mean-colour")
    assert spec.step() == 2.0
    run_extract(spec, torch.device("cpu"))
    feats = BigFile(tmp_path / "s" / "FeatureData" / "mean_colour")
    assert feats.dim == 3 and feats.num > 0 and np.all((feats.data >= 0) & (feats.data <= 255))
