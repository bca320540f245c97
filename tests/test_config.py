import pytest

from prvr_cli.config import Config, apply_overrides, list_presets, load_preset, preset_card, zoo_dir
from prvr_cli.errors import PrvrError
from prvr_cli.nets.dual import count_parameters, create_model


def test_zoo_has_the_paper_presets():
    names = set(list_presets())
    assert {"tiny", "tvr", "activitynet", "charades", "tvr_clip", "activitynet_clip", "charades_clip"} <= names
    assert (load_preset("tvr").model.visual_dim, load_preset("tvr").model.text_dim) == (3072, 768)
    assert (load_preset("activitynet").model.visual_dim, load_preset("activitynet").data.visual_feature) == (
        1024,
        "i3d",
    )
    assert load_preset("charades").data.visual_feature == "i3d_rgb_lgi"
    assert load_preset("tvr_clip").model.visual_dim == 768
    for name in names:
        assert preset_card(name).strip(), name
    assert zoo_dir().is_dir()


def test_overrides_and_round_trip():
    cfg = load_preset("tiny", ["loss.cross_model=false", "lr=0.01", "model.seeds=3,4", "ambiguous_as=ignore"])
    assert cfg.loss.cross_model is False and cfg.train.lr == 0.01 and cfg.model.seeds == (3, 4)
    assert Config.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(PrvrError, match="unknown or ambiguous setting"):
        apply_overrides(cfg, ["nope=1"])
    with pytest.raises(PrvrError, match="ambiguous_as must be"):
        apply_overrides(cfg, ["ambiguous_as=maybe"])
    with pytest.raises(PrvrError, match="cannot read 'x' as int"):
        apply_overrides(cfg, ["epochs=x"])
    with pytest.raises(PrvrError, match="unknown preset"):
        load_preset("nope")


def test_tvr_parameter_count_is_in_the_papers_range():
    counts = count_parameters(create_model("tvr"))
    # paper: 5.34M for ARL; ours is two branches of the MS-SL single-scale design
    assert 4e6 < counts["total"] < 8e6
    assert counts["theta"] == counts["phi"]
