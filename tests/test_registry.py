"""The one registry helper behind every kind of component, and the test models it names."""

import pytest

from prvr_cli.core.registry import Registry
from prvr_cli.errors import PrvrError, UnknownName


def test_a_registry_keeps_order_refuses_twice_and_names_the_known_in_one_line():
    reg = Registry("engine", where="--engine")

    @reg.register("b")
    def b():
        return "b"

    assert reg.register("a", len) is len  # the direct form returns what it registered
    assert reg.names() == list(reg) == ["b", "a"] and reg["b"] is b and "a" in reg and "z" not in reg
    with pytest.raises(ValueError, match=r"engine 'b' is already registered \(.*\bb\)"):
        reg.register("b", len)
    assert reg["b"] is b  # the refused one changed nothing
    with pytest.raises(UnknownName) as err:
        reg["nope"]
    assert str(err.value) == "--engine: unknown engine 'nope' (known: b, a)"
    assert isinstance(err.value, PrvrError) and isinstance(err.value, KeyError)
    assert reg.get("nope") is None and reg.check("a") == "a" and ["x"] not in reg
    assert (
        str(pytest.raises(UnknownName, Registry("term").check, "x").value)
        == "unknown term 'x' (known: none registered)"
    )


def test_a_copy_is_independent_and_assignment_replaces_on_purpose():
    reg = Registry("method", items={"arl": 1})
    other = reg.copy()
    other.register("mine", 2)
    assert list(reg) == ["arl"] and list(other) == ["arl", "mine"] and other.kind == "method"
    reg["arl"] = 3  # what monkeypatch.setitem does
    del other["mine"]
    assert reg["arl"] == 3 and list(other) == ["arl"]


def test_every_registry_of_the_package_is_one():
    from prvr_cli.arl.terms import LOSS_TERMS
    from prvr_cli.features.backbones import VISUAL_BACKBONES
    from prvr_cli.features.text import TEXT_ENCODERS
    from prvr_cli.features.tiny import TINY_MODELS
    from prvr_cli.index.engines import ENGINES
    from prvr_cli.methods import METHODS
    from prvr_cli.nets.encoders import ENCODERS

    for reg in (LOSS_TERMS, VISUAL_BACKBONES, TEXT_ENCODERS, TINY_MODELS, ENGINES, METHODS, ENCODERS):
        assert isinstance(reg, Registry), reg
    assert list(ENCODERS) == ["frame", "gmm", "gmm2"] and list(METHODS) == ["arl", "gmmformer", "ral", "msc"]
    assert list(ENGINES) == ["bounds", "faiss", "blocks", "qdrant"]
    with pytest.raises(PrvrError, match=r"^model\.encoder: unknown encoder 'nope' \(known: frame, gmm, gmm2\)$"):
        ENCODERS["nope"]


def test_presets_and_synth_sizes_say_unknown_names_the_same_way():
    from prvr_cli.config import load_preset
    from prvr_cli.data.synth import spec_for

    with pytest.raises(PrvrError, match=r"^unknown preset 'nope' \(known: .*\btiny\b.*\)$"):
        load_preset("nope")
    with pytest.raises(PrvrError, match=r"^--size: unknown synth size 'huge' \(known: tiny, small, medium, large\)$"):
        spec_for("huge")


def test_test_models_are_names_of_their_family_only():
    from prvr_cli.features.tiny import TINY_MODELS, tiny_clip, tiny_model

    assert sorted(TINY_MODELS) == ["prvr-tiny-clip", "prvr-tiny-i3d", "prvr-tiny-resnet152", "prvr-tiny-roberta"]
    assert tiny_model("prvr-tiny-clip", "clip") is tiny_clip
    assert tiny_model("ViT-L-14", "clip") is None and tiny_model(None, "i3d") is None  # real names load real weights
    with pytest.raises(PrvrError, match="'prvr-tiny-clip' is a clip test model, not a roberta one"):
        tiny_model("prvr-tiny-clip", "roberta")


def test_the_tiny_models_are_chosen_by_name_from_the_command_line(tmp_path):
    """``--clip-model`` / ``--text-model`` take the test models' names; the dataset's record then
    rebuilds the same text model from the name alone (what ``prvr search`` does)."""
    import json

    import h5py
    import numpy as np
    from helpers import SAMPLES, TINY_MODELS, prvr

    from prvr_cli.data.layout import Layout
    from prvr_cli.features.text import text_from_record

    captions = SAMPLES / "captions.jsonl"
    res = prvr("extract", SAMPLES, "--out", tmp_path, "--name", "s", "--captions", captions, *TINY_MODELS, "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["text_feature"] == "roberta"
    layout = Layout(tmp_path, "s")
    record = json.loads(layout.extract_record().read_text())
    assert record["visual"]["model"] == "prvr-tiny-clip" and record["visual"]["pretrained"] == "random (test only)"
    assert record["text"]["model"] == "prvr-tiny-roberta" and "tiny" not in record["text"]
    first = json.loads(captions.read_text().splitlines()[0])  # kitchen_shapes' first caption: #enc#0
    with h5py.File(layout.query_hdf5("roberta"), "r") as fh:
        stored = fh[f"{first['video']}#enc#0"][...]
    np.testing.assert_allclose(text_from_record(record["text"]).encode([first["text"]])[0], stored, atol=1e-5)
