import shutil

import h5py
import numpy as np
import pytest

from prvr_cli.data.check import check_dataset
from prvr_cli.data.layout import Layout
from prvr_cli.data.splits import load_split
from prvr_cli.errors import PrvrError


@pytest.fixture()
def data_copy(tiny_data, tmp_path):
    shutil.copytree(tiny_data.base, tmp_path / "synth")
    return Layout(tmp_path, "synth")


def test_load_split_structure(tiny_data):
    d = load_split(tiny_data, "train")
    assert d.num_videos == 48 and d.visual_feature == "synth" and d.text_feature == "roberta"
    for j, qs in enumerate(d.video_queries):
        assert all(d.query_video[i] == j for i in qs)
        assert all(d.captions[i].video_id == d.video_ids[j] for i in qs)
    v, q = d.video(0), d.query(0)
    assert v.shape[1] == 64 and q.shape[1] == 48
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1, rtol=1e-5)


def test_check_summary(tiny_data):
    rows = check_dataset(tiny_data.root, "synth")
    assert [r["split"] for r in rows] == ["train", "val", "test"]
    assert sum(r["videos"] for r in rows) == 60
    assert rows[0]["visual_dim"] == 64 and rows[0]["text_dim"] == 48


def test_missing_caption_file(data_copy):
    data_copy.caption_file("train").unlink()
    with pytest.raises(PrvrError, match=r"synthtrain\.caption\.txt: file is missing"):
        load_split(data_copy, "train")


def test_caption_without_features(data_copy):
    with open(data_copy.caption_file("val"), "a") as fh:
        fh.write("v000000#enc#99 an extra caption\n")
    with pytest.raises(
        PrvrError, match=r"roberta_synth_query_feat\.hdf5: caption id 'v000000#enc#99' .* has no features"
    ):
        check_dataset(data_copy.root, "synth")


def test_caption_of_unknown_video(data_copy):
    with h5py.File(data_copy.query_hdf5("roberta"), "a") as fh:
        fh.create_dataset("ghost#enc#0", data=np.ones((3, 48), np.float32))
    with open(data_copy.caption_file("test"), "a") as fh:
        fh.write("ghost#enc#0 nobody filmed this\n")
    with pytest.raises(PrvrError, match=r"video 'ghost' \(from synthtest\.caption\.txt\) has no frames"):
        check_dataset(data_copy.root, "synth")


def test_token_dimension_mismatch_inside_file(data_copy):
    cap = load_split(data_copy, "train").captions[5].cap_id
    with h5py.File(data_copy.query_hdf5("roberta"), "a") as fh:
        del fh[cap]
        fh.create_dataset(cap, data=np.ones((3, 40), np.float32))
    with pytest.raises(PrvrError, match=rf"'{cap}' has shape \(3, 40\), expected \(n>0, 48\)"):
        check_dataset(data_copy.root, "synth")


def test_model_dimension_mismatch(tiny_data):
    with pytest.raises(PrvrError, match=r"FeatureData/synth: frame features are 64-d, the model expects 1024-d"):
        load_split(tiny_data, "train", visual_dim=1024)
    with pytest.raises(PrvrError, match=r"query_feat\.hdf5: token features are 48-d, the model expects 768-d"):
        load_split(tiny_data, "train", text_dim=768)


def test_unknown_feature_and_collection(data_copy):
    with pytest.raises(PrvrError, match=r"no visual feature named 'i3d' \(present: synth\)"):
        load_split(data_copy, "train", visual_feature="i3d")
    with pytest.raises(PrvrError, match="no such dataset folder"):
        check_dataset(data_copy.root, "nope")
