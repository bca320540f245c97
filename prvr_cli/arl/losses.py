"""The ARL losses on plain score matrices: multi-positive contrastive (Eq. 8-10) and dual-margin
triplet (Eq. 11-12).

Both take a score matrix ``scores (A, C)`` (anchors x candidates) and a list of P positive
pairs given as ``anchor (P,)`` row and ``positive (P,)`` column. ``amb`` and ``neg`` (A, C) are the
anchor's ambiguous and negative candidates; neither may contain positives of the anchor. The
text-to-video direction is ``(s, arange(Nq), labels)``, video-to-text ``(s.T, labels, arange(Nq))``
and text-to-frame ``(sf_paired, arange(Nq), k_hat)``.
"""

from __future__ import annotations

import torch


def _pair_masks(scores, anchor, positive, amb, neg):
    onehot = torch.zeros(anchor.shape[0], scores.shape[1], dtype=torch.bool, device=scores.device)
    onehot[torch.arange(anchor.shape[0], device=scores.device), positive] = True
    return scores[anchor], onehot, amb[anchor], neg[anchor]


def _lse(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return x.masked_fill(~mask, float("-inf")).logsumexp(-1)


def multi_positive_nce(
    scores: torch.Tensor,
    anchor: torch.Tensor,
    positive: torch.Tensor,
    amb: torch.Tensor,
    neg: torch.Tensor,
    temperature: float = 1.0,
    mode: str = "ours",
) -> torch.Tensor:
    """Per-pair contrastive loss, (P,).

    ``ours`` (Eq. 8-9): -log((e^{s_p} + sum_amb e^{s_a}) / (e^{s_p} + sum_{amb or neg} e^{s})):
    ambiguous items sit in numerator and denominator, so raising any one of them satisfies it.
    ``positive``: supervised contrastive, every ambiguous item is a positive; the loss is the
    mean over {p} + amb of -log(e^{s_x} / sum_{p, amb, neg} e^{s}).
    ``ignore``: ambiguous items are masked out; plain InfoNCE of p against negatives.
    With no ambiguous items all three are InfoNCE. Logits are ``scores / temperature``.
    """
    logits, onehot, amb_a, neg_a = _pair_masks(scores / temperature, anchor, positive, amb, neg)
    if mode == "ignore":
        return _lse(logits, onehot | neg_a) - logits[onehot]
    den = _lse(logits, onehot | amb_a | neg_a)
    if mode == "ours":
        return den - _lse(logits, onehot | amb_a)
    if mode == "positive":
        pos_set = onehot | amb_a
        return ((den[:, None] - logits) * pos_set).sum(-1) / pos_set.sum(-1)
    raise ValueError(f"unknown mode {mode!r}")


def dual_triplet(
    scores: torch.Tensor,
    anchor: torch.Tensor,
    positive: torch.Tensor,
    amb: torch.Tensor,
    neg: torch.Tensor,
    margin: float,
    margin_ambiguous: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hardest-item triplet terms per pair (Eq. 11-12), each (P,):
    L_n = max(0, m + max_neg s - s_p), L_a = max(0, m_a + max_amb s - s_p); 0 for an empty set."""
    s, onehot, amb_a, neg_a = _pair_masks(scores, anchor, positive, amb, neg)
    s_p = s[onehot]

    def hinge(mask, m):
        hardest = s.masked_fill(~mask, float("-inf")).max(-1).values
        has = mask.any(-1)
        return torch.where(has, torch.relu(m + torch.where(has, hardest, s_p) - s_p), torch.zeros_like(s_p))

    return hinge(neg_a, margin), hinge(amb_a, margin_ambiguous)
