import numpy as np
import pytest

from prvr_cli.data.bigfile import BigFile, BigFileWriter, read_video2frames
from prvr_cli.data.captions import read_captions, write_captions
from prvr_cli.data.hdf5 import HDF5Features, write_hdf5
from prvr_cli.data.layout import Layout
from prvr_cli.data.sources import BigFileVideos, HDF5Videos, open_videos
from prvr_cli.errors import PrvrError


def test_bigfile_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    videos = {"a": rng.standard_normal((3, 5)), "b": rng.standard_normal((1, 5)), "c": rng.standard_normal((4, 5))}
    with BigFileWriter(tmp_path / "f", dim=5) as w:
        for k, v in videos.items():
            w.add(k, v)
    big = BigFile(tmp_path / "f")
    assert (big.num, big.dim) == (8, 5)
    v2f = read_video2frames(tmp_path / "f" / "video2frames.txt")
    assert v2f["a"] == ["a_0", "a_1", "a_2"]
    src = BigFileVideos(tmp_path / "f")
    for k, v in videos.items():
        np.testing.assert_array_equal(src.frames(k), v.astype(np.float32))
        assert src.num_frames(k) == len(v)


def test_bigfile_non_contiguous_frames(tmp_path):
    """Frames of a video listed out of row order are gathered in the listed order."""
    with BigFileWriter(tmp_path / "f", dim=2) as w:
        w.add("a", np.arange(6, dtype=np.float32).reshape(3, 2))
    (tmp_path / "f" / "video2frames.txt").write_text("{'a': ['a_2', 'a_0']}")
    np.testing.assert_array_equal(BigFileVideos(tmp_path / "f").frames("a"), [[4, 5], [0, 1]])


def test_bigfile_writer_abort_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with BigFileWriter(tmp_path / "f", dim=2) as w:
            w.add("a", np.ones((2, 2)))
            raise RuntimeError("boom")
    assert list((tmp_path / "f").iterdir()) == []


def test_hdf5_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    items = {"v1#enc#0": rng.standard_normal((7, 4)), "v2#enc#1": rng.standard_normal((2, 4))}
    assert write_hdf5(tmp_path / "q.hdf5", items.items()) == 2
    h5 = HDF5Features(tmp_path / "q.hdf5")
    assert h5.dim == 4 and h5.keys == set(items)
    for k, v in items.items():
        np.testing.assert_allclose(h5.get(k), v.astype(np.float32))
    layout = Layout(tmp_path, "c")
    write_hdf5(layout.video_hdf5("clip"), items.items())
    src = open_videos(layout, "clip")
    assert isinstance(src, HDF5Videos) and src.num_frames("v1#enc#0") == 7


def test_captions_round_trip(tmp_path):
    write_captions(tmp_path / "c.txt", [("vid_1#enc#0", "a man\nsits"), ("vid#2#enc#1", "x")])
    caps = read_captions(tmp_path / "c.txt")
    assert [(c.cap_id, c.video_id, c.text) for c in caps] == [
        ("vid_1#enc#0", "vid_1", "a man sits"),
        ("vid#2#enc#1", "vid", "x"),
    ]


@pytest.mark.parametrize("line", ["no_hash_here some caption", "only#enc#0", "#enc#0 starts with hash"])
def test_malformed_caption_line_names_file_and_line(tmp_path, line):
    path = tmp_path / "c.txt"
    path.write_text("good#enc#0 fine caption\n\n" + line + "\n")
    with pytest.raises(PrvrError, match=r"c\.txt:3: malformed caption line"):
        read_captions(path)


def test_duplicate_caption_id(tmp_path):
    (tmp_path / "c.txt").write_text("a#enc#0 x\na#enc#0 y\n")
    with pytest.raises(PrvrError, match=r"c\.txt:2: caption id 'a#enc#0' appears twice"):
        read_captions(tmp_path / "c.txt")


def test_bigfile_errors(tmp_path):
    with pytest.raises(PrvrError, match="shape.txt: file is missing"):
        BigFile(tmp_path)
    with BigFileWriter(tmp_path / "f", dim=3) as w:
        w.add("a", np.ones((2, 3)))
    (tmp_path / "f" / "shape.txt").write_text("2 4\n")
    with pytest.raises(PrvrError, match=r"feature\.bin: 24 bytes, but shape\.txt says 2 x 4"):
        BigFile(tmp_path / "f")
    (tmp_path / "f" / "shape.txt").write_text("3 2\n")
    with pytest.raises(PrvrError, match=r"id\.txt: 2 ids, but shape\.txt says 3 rows"):
        BigFile(tmp_path / "f")
    (tmp_path / "f" / "shape.txt").write_text("2 3\n")
    (tmp_path / "f" / "video2frames.txt").write_text("{'a': []}")
    with pytest.raises(PrvrError, match="video 'a' has no frames"):
        BigFileVideos(tmp_path / "f")
    (tmp_path / "f" / "video2frames.txt").write_text("{'a': ['a_0', 'zz']}")
    with pytest.raises(PrvrError, match="frame id 'zz' not found"):
        BigFileVideos(tmp_path / "f")
    (tmp_path / "f" / "video2frames.txt").write_text("__import__('os').system('true')")
    with pytest.raises(PrvrError, match="video2frames.txt: not a dict literal"):
        BigFileVideos(tmp_path / "f")
