import numpy as np
import torch

from prvr_cli.data.loaders import collate_eval, collate_train
from prvr_cli.data.preprocess import l2_normalize, prepare_query, resample_frames


def test_resample_hand_checked():
    # 5 frames -> 2 bins: edges floor(0+.5)=0, floor(2.5+.5)=3, 5 -> [0,1,2] and [3,4]
    x = np.arange(5, dtype=np.float32)[:, None] * np.array([[1.0, 10.0]], dtype=np.float32)
    out = resample_frames(x, 2)
    np.testing.assert_allclose(out, [[1.0, 10.0], [3.5, 35.0]])
    # 7 -> 3: edges 0, floor(2.83)=2, floor(5.17)=5, 7 -> [0,1] [2,3,4] [5,6]
    y = np.arange(7, dtype=np.float32)[:, None]
    np.testing.assert_allclose(resample_frames(y, 3)[:, 0], [0.5, 3.0, 5.5])


def test_resample_keeps_short_videos_and_every_frame_counts():
    x = np.random.default_rng(0).standard_normal((300, 4)).astype(np.float32)
    assert resample_frames(x[:128], 128) is not None and resample_frames(x[:128], 128).shape == (128, 4)
    out = resample_frames(x, 128)
    assert out.shape == (128, 4)
    edges = np.floor(np.arange(129) * (300 / 128) + 0.5).astype(int)
    np.testing.assert_allclose((out * np.diff(edges)[:, None]).sum(0), x.sum(0), rtol=1e-4, atol=1e-4)


def test_l2_normalize_and_truncate():
    x = np.array([[3.0, 4.0], [0.0, 0.0]], dtype=np.float32)
    np.testing.assert_allclose(l2_normalize(x), [[0.6, 0.8], [0.0, 0.0]])
    q = np.ones((40, 3), dtype=np.float32)
    out = prepare_query(q, 30)
    assert out.shape == (30, 3)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-6)


def test_collate_train_masks_and_labels():
    items = [
        {
            "video": np.ones((3, 2), np.float32),
            "queries": [np.ones((2, 4), np.float32)] * 2,
            "video_index": 7,
            "query_index": [10, 11],
        },
        {
            "video": np.ones((5, 2), np.float32),
            "queries": [np.ones((4, 4), np.float32)],
            "video_index": 2,
            "query_index": [3],
        },
    ]
    b = collate_train(items)
    assert b["video"].shape == (2, 5, 2) and b["text"].shape == (3, 4, 4)
    assert b["video_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert b["text_mask"].tolist() == [[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1]]
    assert b["text_labels"].tolist() == [0, 0, 1]
    assert b["video_index"].tolist() == [7, 2] and b["query_index"].tolist() == [10, 11, 3]
    assert torch.all(b["video"][0, 3:] == 0)


def test_collate_eval():
    b = collate_eval([(np.ones((2, 3), np.float32), 4), (np.ones((1, 3), np.float32), 5)])
    assert b["mask"].tolist() == [[1, 1], [1, 0]] and b["index"].tolist() == [4, 5]
