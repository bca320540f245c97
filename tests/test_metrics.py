import numpy as np

from prvr_cli.evaluation.metrics import paired_ranks, recall_metrics


def test_ranks_and_recalls_hand_computed():
    scores = np.array(
        [
            [0.9, 0.1, 0.2],  # paired 0: rank 1
            [0.5, 0.4, 0.6],  # paired 1: rank 3
            [0.3, 0.3, 0.1],  # paired 0 tied with video 1: pessimistic rank 2
        ]
    )
    ranks = paired_ranks(scores, np.array([0, 1, 0]))
    assert ranks.tolist() == [1, 3, 2]
    m = recall_metrics(ranks)
    assert m["R@1"] == 33.33 and m["R@5"] == 100.0 and m["SumR"] == 333.33
    assert m["MedR"] == 2.0 and m["MeanR"] == 2.0
