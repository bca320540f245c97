"""The retrieval score of the method, defined once (ARL, Eq. 2, 3 and 13):

    s_f(q, v_k) = q_hat . v_k_hat               cosine of the query with each frame   (Eq. 2)
    s(q, V)     = max over valid frames k of s_f                                    (Eq. 3)
    S(q, V)     = mean over the branches (theta, phi) of s                          (Eq. 13)

An encoder may score several kinds of video token (GMMFormer: 32 clip tokens and the frames);
a branch's s is then the weighted sum of the kinds' maxima, s = sum_k w_k max_{t in kind k} s_f
(``fused_score``), and S stays the branch mean. The frame encoder has one kind of weight 1.

A kind may instead be scored by the query's words (RAL's confidence-aware set-to-set alignment,
CSA; ``TokenSet.by_words``): each word's best token, summed with the word weights a_t >= 0,

    s_csa(W, V) = sum_t max over valid tokens k of a_t (u_t_hat . v_k_hat)     (``csa_scores``)

with the weights folded into the word vectors, w_t = a_t u_t_hat (``weighted_words``), so a
multi-vector query is one (T, d) array; a padded word is a zero row and adds 0.

In two forms: padded torch tensors with a frame mask (training, detection, evaluation), and
ragged numpy arrays, the unit frames of all videos concatenated in rows with each video's
segment start (the index). Everything that ranks videos calls these.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


def unit(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit length (float32); all-zero rows stay zero. (..., d) -> (..., d)."""
    return F.normalize(x.float(), dim=-1)


def valid_frames(mask: torch.Tensor) -> torch.Tensor:
    """Boolean (B, L) from a frame mask given as bool or as 0/1 floats."""
    return mask if mask.dtype == torch.bool else mask > 0.5


def cosines(q_hat: torch.Tensor, V_hat: torch.Tensor) -> torch.Tensor:
    """Eq. 2 on unit inputs: (Nq, d), (B, L, d) -> (Nq, B, L)."""
    return torch.einsum("nd,bld->nbl", q_hat, V_hat)


def frame_similarity(q: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    """s_f (Eq. 2) of raw embeddings: (Nq, d), (B, L, d) -> (Nq, B, L)."""
    return cosines(F.normalize(q, dim=-1), F.normalize(V, dim=-1))


def video_similarity(sf: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """s (Eq. 3): max over valid frames. sf (Nq, B, L), mask (B, L) -> s (Nq, B), k_hat (Nq, B)."""
    return sf.masked_fill(~valid_frames(mask)[None], float("-inf")).max(dim=-1)


@dataclass
class TokenSet:
    """One kind of video token of one branch: emb (B, L, d), mask (B, L) valid tokens, the kind's
    weight in the fused score, and ``pad_length``: when set, a video is scored as if padded with
    zero vectors up to that many tokens (GMMFormer v2's official frames), so its max floors at 0
    when it has fewer valid tokens."""

    emb: torch.Tensor
    mask: torch.Tensor
    weight: float = 1.0
    pad_length: int | None = None
    by_words: bool = False  # scored by the query's weighted words (CSA), not its pooled vector
    # (B, L_k, 2) int64 [start, end) frames of each token, when not GMMFormer's uniform clip rule
    # (``core/tokens.clip_spans``): MSC's merged clips (OP-ToMe); moments read it
    spans: torch.Tensor | None = None


@dataclass
class Words:
    """A query's words for CSA: emb (Nq, T, d) word tokens (not normalised), mask (Nq, T) valid
    words, weight (Nq, T) the confidence weights of the unit words (softmax over valid words,
    0 on padding), and raw_weight (Nq, T) the same head on the raw tokens (RAL's NCE reads raw
    dot products weighted so, as its official code does)."""

    emb: torch.Tensor
    mask: torch.Tensor
    weight: torch.Tensor
    raw_weight: torch.Tensor | None = None

    def float(self) -> Words:
        raw = None if self.raw_weight is None else self.raw_weight.float()
        return Words(self.emb.float(), self.mask, self.weight.float(), raw)


def weighted_words(words: Words) -> torch.Tensor:
    """The multi-vector query of CSA: unit words scaled by their weights, (Nq, T, d), float32;
    padded words are zero rows."""
    return unit(words.emb) * (words.weight.float() * valid_frames(words.mask))[..., None]


CSA_BLOCK = 1 << 24  # (query, video, word, token) similarities held at once by ``csa_scores``


def csa_scores(W: torch.Tensor, V: torch.Tensor, mask: torch.Tensor, pad_length: int | None = None) -> torch.Tensor:
    """CSA of weighted words W (Nq, T, d) (``weighted_words``, or raw tokens times their raw
    weights) against tokens V (B, L, d) with mask (B, L) -> (Nq, B): per word the max over valid
    tokens (floored at 0 by the zero-padding rule), summed over the words. The (Nq, B, T, L)
    similarities are formed a block of queries at a time (``CSA_BLOCK`` values): autograd keeps
    only the inputs and the argmax, so a training batch's peak stays one block."""
    valid = valid_frames(mask)
    counts = valid.sum(-1)[:, None]  # (B, 1): the zero-padding rule word by word
    step = max(1, CSA_BLOCK // max(1, V.shape[0] * V.shape[1] * W.shape[1]))
    out = []
    for q0 in range(0, W.shape[0], step):
        sim = torch.einsum("ntd,bld->nbtl", W[q0 : q0 + step], V)  # (n, B, T, L)
        per_word = sim.masked_fill(~valid[None, :, None, :], float("-inf")).max(dim=-1).values
        out.append(word_sum(per_word, counts, pad_length))
    return torch.cat(out) if len(out) > 1 else out[0]


def kind_max(sf: torch.Tensor, mask: torch.Tensor, pad_length: int | None = None) -> torch.Tensor:
    """One kind's max over valid tokens: sf (Nq, B, L), mask (B, L) -> (Nq, B); with
    ``pad_length``, max(s, 0) for videos with fewer than ``pad_length`` valid tokens."""
    s = video_similarity(sf, mask)[0]
    return zero_floor(s, valid_frames(mask).sum(-1), pad_length)


def zero_floor(s, counts, pad_length: int | None):
    """The zero-padding rule of ``TokenSet.pad_length`` on scores s (..., B) of videos with
    ``counts`` (B,) valid tokens, torch or numpy; counts of another shape broadcast against s
    (CSA's per-word maxima (..., B, T) take counts (B, 1))."""
    if pad_length is None:
        return s
    short = counts < pad_length
    if isinstance(s, torch.Tensor):
        return torch.where(short.to(s.device), s.clamp(min=0), s)
    return np.where(short, np.maximum(s, 0), s)


def word_sum(per_word, counts, pad_length: int | None):
    """CSA's reduction, torch or numpy: each word's max over a video's tokens, per_word (..., B, T)
    (or (..., T) of one video), floored word by word by the zero-padding rule of videos with
    ``counts`` valid tokens ((B, 1), or a scalar), summed over the words -> (..., B)."""
    return zero_floor(per_word, counts, pad_length).sum(-1)


def fused_score(per_kind: Mapping, weights: Mapping[str, float]):
    """s = sum_k w_k s_k of the kinds' maxima (tensors or arrays of one shape). One kind of
    weight 1 returns its maximum unchanged (the frame encoder's scores, bit for bit)."""
    if len(per_kind) == 1 and next(iter(weights.values())) == 1.0:
        return next(iter(per_kind.values()))
    return sum(weights[k] * s for k, s in per_kind.items())


def kind_score(q: torch.Tensor, t: TokenSet, W: torch.Tensor | None = None) -> torch.Tensor:
    """One kind's score of raw embeddings: its max over tokens of the query's cosine, or, for a
    kind scored by words, CSA of the weighted words W (Nq, T, d) -> (Nq, B)."""
    if t.by_words:
        if W is None:
            raise ValueError("a kind scored by words (CSA) needs the query's weighted words")
        return csa_scores(W, unit(t.emb), t.mask, t.pad_length)
    return kind_max(frame_similarity(q, t.emb), t.mask, t.pad_length)


def branch_score(q: torch.Tensor, kinds: Mapping[str, TokenSet], words: Words | None = None) -> torch.Tensor:
    """One branch's s of raw embeddings: q (Nq, d), kinds of (B, L_k, d) tokens, and the query's
    words when a kind is scored by them (CSA) -> (Nq, B)."""
    W = weighted_words(words) if words is not None else None
    per_kind = {k: kind_score(q, t, W) for k, t in kinds.items()}
    return fused_score(per_kind, {k: t.weight for k, t in kinds.items()})


def branch_mean(per_branch: Mapping):
    """Eq. 13's mean over the branches given (theta and phi; a zero-shot index has one), of
    tensors or arrays of one shape."""
    return sum(per_branch.values()) / len(per_branch)


def retrieval_score(
    q: Mapping[str, torch.Tensor], V: Mapping, mask: torch.Tensor | None = None, words: Mapping | None = None
) -> torch.Tensor:
    """S (Eq. 13) of raw embeddings, padded form: q[b] (Nq, d) -> (Nq, B). ``V[b]`` is either the
    frames (B, L, d) of the frame encoder with ``mask`` (B, L), or a branch's token kinds
    ({kind: TokenSet}); the branches are those of ``q``; ``words[b]`` a CSA branch's ``Words``."""
    words = words or {}
    return branch_mean(
        {
            b: branch_score(q[b], V[b] if isinstance(V[b], Mapping) else {"frames": TokenSet(V[b], mask)}, words.get(b))
            for b in q
        }
    )


def ragged_max(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Eq. 3 on ragged rows: the max of ``values`` (n_rows, ...) over each segment that starts at
    ``starts`` (n,) and runs to the next start (the last to the end) -> (n, ...). Segments are
    non-empty and rows before ``starts[0]`` belong to none."""
    if not len(starts):
        return np.zeros((0, *values.shape[1:]), np.float32)
    # torch's segment max: ~3x faster than numpy's reduceat on a column, ~8x on columns of queries
    lengths = torch.from_numpy(np.diff(starts, append=len(values)))
    rows = torch_rows(np.ascontiguousarray(values[starts[0] :]))
    return segment_max(rows, lengths).numpy()


def segment_chunks(offsets: np.ndarray, rows: int) -> list[tuple[int, int]]:
    """Runs of whole segments of about ``rows`` rows each: [(first, end)) segment ranges covering
    the n non-empty segments of offsets (n+1,), in order (what a scan multiplies at a time)."""
    n = len(offsets) - 1
    if not n:
        return []
    cuts = np.unique(np.searchsorted(offsets, np.arange(0, int(offsets[-1]), rows), side="right") - 1)
    return list(zip(cuts.tolist(), [*cuts[1:].tolist(), n]))


def segment_max(rows: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Max over consecutive non-empty segments of ``lengths`` (n,) rows: rows (sum of lengths,
    ...) -> (n, ...)."""
    return torch.segment_reduce(rows, "max", lengths=lengths, axis=0, unsafe=True)


def ragged_rows(offsets: np.ndarray, videos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frame rows of ``videos`` concatenated, and each video's segment start within them.
    offsets (Nv+1,): frames of video j are rows offsets[j]:offsets[j+1]."""
    starts, ends = offsets[videos], offsets[videos + 1]
    lens = ends - starts
    seg = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)
    rows = np.arange(lens.sum()) - np.repeat(seg, lens) + np.repeat(starts, lens)
    return rows, seg


def ragged_scores(
    frames: Mapping[str, np.ndarray],
    offsets: np.ndarray,
    q: Mapping[str, np.ndarray],
    videos: np.ndarray,
    pad_length: int | None = None,
) -> dict[str, np.ndarray]:
    """s (Eq. 3) per branch of ``q`` for ``videos`` (n,), ragged form: frames[b] (N, d) unit rows,
    q[b] (d,) unit -> {b: (n,)}. ``branch_mean`` of the result is S (Eq. 13). The frames may be
    stored in float16 (a memory map); they are scored in float32. A multi-vector query q[b]
    (T, d) of weighted words is scored by CSA: per word its max over the video's rows, floored
    word by word with ``pad_length`` (the frame counts are the segment lengths), summed."""
    rows, seg = ragged_rows(offsets, videos)
    index = torch.from_numpy(rows)
    out = {}
    for b, qb in q.items():
        picked = torch_rows(frames[b]).index_select(0, index).float()  # (n rows, d)
        if qb.ndim == 1:
            column = torch.from_numpy(np.ascontiguousarray(qb, np.float32))[:, None]  # mm: faster than mv here
            out[b] = ragged_max((picked @ column).numpy()[:, 0], seg)
            continue
        words = torch.from_numpy(np.ascontiguousarray(qb, np.float32)).T  # (d, T)
        per = ragged_max((picked @ words).numpy(), seg)  # (n, T)
        out[b] = word_sum(per, np.diff(seg, append=len(rows))[:, None], pad_length)
    return out


def torch_rows(table: np.ndarray) -> torch.Tensor:
    """A torch view of an index table (N, d), float32 or float16, read-only memory map or not:
    torch only reads it, so its warning about non-writable arrays does not apply."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(table)


def float32_rows(rows: np.ndarray) -> np.ndarray:
    """Contiguous float32 rows of an index's frames, stored as float32 or float16 (widened by
    torch, ~10x faster than numpy's cast; the source may be a read-only memory map)."""
    if rows.dtype != np.float16:
        return np.ascontiguousarray(rows, dtype=np.float32)
    return torch_rows(np.ascontiguousarray(rows)).float().numpy()
