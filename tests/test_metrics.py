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


def test_average_precision_hand_computed():
    from prvr_cli.evaluation.metrics import average_precision, relevance_metrics

    scores = np.array(
        [
            [0.9, 0.8, 0.7, 0.6],  # relevant 0 and 2: ranks 1, 3 -> (1/1 + 2/3) / 2
            [0.1, 0.5, 0.5, 0.2],  # relevant 2 tied with 1: pessimistic rank 2 -> 1/2
        ]
    )
    relevant = np.array([[True, False, True, False], [False, False, True, False]])
    ap = average_precision(scores, relevant)
    assert np.allclose(ap, [(1 + 2 / 3) / 2, 0.5])
    m = relevance_metrics(scores, relevant)
    assert m["mAP"] == round(100 * np.mean(ap), 2)
    # query 0 hits at rank 1; query 1's best relevant video ties at rank 2
    assert m["any_R@1"] == 50.0 and m["any_R@5"] == 100.0
    # with only the paired video relevant, any_R@K is the field's R@K
    paired = np.array([0, 1])
    only = np.zeros_like(relevant)
    only[np.arange(2), paired] = True
    ranks = paired_ranks(scores, paired)
    assert relevance_metrics(scores, only)["any_R@1"] == recall_metrics(ranks)["R@1"]
