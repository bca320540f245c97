"""Search that returns the method's score exactly: s(q, V) = (max_k q_theta . v_theta_k +
max_k q_phi . v_phi_k) / 2 over the frames of each video (a zero-shot index has one branch,
``clip``, and s(q, V) = max_k q . v_k). An encoder that scores several token kinds (gmm2: clips
and frames) has a table per branch and kind, and s is the weighted sum of the tables' maxima
(``FrameStore.combine``); every bound below is the same weighted sum of the tables' bounds.
Queries arrive keyed by table (``FrameStore.table_queries``). A table scored by words (RAL's CSA)
takes the branch's weighted words (T, d) (a batch (B, T, d)): per word the max over the rows,
floored word by word, summed; its bound is the same sum of each word's bound times its weight.

Three engines over the same frame store (``engines.py`` names them):
- ``bounds`` (default for flat indexes): per-block upper bounds (see ``store.py``) rank videos by
  an upper bound of s; videos are scored exactly in that order until the next bound falls below
  the k-th exact score, which proves the top-k exact. Most videos are never touched. With clip
  tables, a candidate's clips (a few rows, gathered without a loop) are scored before its frames,
  one table at a time, and tighten its bound (``refine``), so frames are read for few videos.
  Where the caps leave most videos (the 100th score in the noise floor), an index with frame
  codes bounds every video by one scan of them (``frame_bounds``) before any frame is read.
- ``faiss``: the threshold algorithm over the two branches' FAISS rankings: retrieve the top F
  frames per branch, score every video seen exactly with both branches; an unseen video scores
  at most the mean of the two F-th frame scores, so a k-th score above that proves the answer
  (flat index); otherwise F grows. With an approximate factory (IVF, HNSW, PQ) the candidates
  come from approximate rankings and the answer is approximate; re-scoring stays exact.
- ``blocks`` (default past ``plan.EXACT_MAX_ROWS``): approximate; every video's best block
  direction (a scan of the block table, ~10x smaller than the frames) picks the candidates, which
  are re-scored exactly (``search_blocks``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from prvr_cli.config import MomentConfig
from prvr_cli.core.moments import QueryBank, frame_signal, locate, locate_in, standardise
from prvr_cli.core.score import (
    float32_rows,
    ragged_max,
    ragged_scores,
    segment_chunks,
    segment_max,
    torch_rows,
    word_sum,
    zero_floor,
)
from prvr_cli.index.codes import RowCodes
from prvr_cli.index.store import FrameStore, by_words, cap_bound, uniform_frames


@dataclass
class Hit:
    """One ranked video. ``to_dict`` is the documented ``prvr search --json`` result
    (docs/search.md, "Search output")."""

    video: str
    score: float
    branch_scores: dict[str, float]
    best_frame: int = -1
    span: tuple[int, int] = (-1, -1)  # frames of the moment, inclusive
    best_time: tuple[float, float] | None = None  # seconds of the best frame
    span_time: tuple[float, float] | None = None  # seconds of the moment: start of its first frame, end of its last
    peakedness: float = 0.0  # (peak - median) / std of the frame signal
    confident: bool = False  # False: no clearer than the whole video, and the span is the whole video

    def to_dict(self, rank: int | None = None) -> dict:
        return {
            **({"rank": rank} if rank is not None else {}),
            "video": self.video,
            "score": round(self.score, 6),
            "branches": {b: round(s, 6) for b, s in self.branch_scores.items()},
            "start": self.span_time[0] if self.span_time else None,
            "end": self.span_time[1] if self.span_time else None,
            "best_time": list(self.best_time) if self.best_time else None,
            "best_frame": self.best_frame,
            "span_frames": list(self.span),
            "peakedness": self.peakedness,
            "confident": self.confident,
        }


def exact_scores(store: FrameStore, q: dict[str, np.ndarray], videos: np.ndarray) -> dict[str, np.ndarray]:
    """Per-table max over its rows, exactly, for ``videos`` (n,). q[t] (d,) unit -> {t: (n,)};
    ``store.combine(..., videos)`` of it is S."""
    out = {}
    for t in store.branches:
        pad = store.specs[t]["pad_length"] if by_words(store.specs[t]) else None  # CSA floors word by word
        out |= ragged_scores({t: store.frames[t]}, store.rows(t), {t: q[t]}, videos, pad)
    return out


def exact_total(store: FrameStore, q: dict[str, np.ndarray], videos: np.ndarray) -> np.ndarray:
    """S of ``videos`` (n,) for one query q[t] (d,) -> (n,)."""
    return store.combine(exact_scores(store, q, videos), videos)


def _top(videos: list[np.ndarray], scores: list[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
    v, s = np.concatenate(videos), np.concatenate(scores)
    s = np.where(np.isnan(s), -np.inf, s)  # a NaN never ranks first (it compares false with everything)
    order = np.lexsort((v, -s))[:k]  # score desc, then video index asc
    return v[order], s[order]


def video_upper_bounds(store: FrameStore, q: dict[str, np.ndarray]) -> np.ndarray:
    """Upper bound of s(q, V_j) for every video, from block caps (see store.py).
    q[b] (d,) -> (Nv,), or a batch q[b] (B, d) -> (Nv, B)."""
    one = all(x.ndim == (2 if by_words(store.specs[t]) else 1) for t, x in q.items())
    ub = block_scan(store, {t: x[None] for t, x in q.items()} if one else q)[1].numpy()
    return ub[:, 0] if one else ub


def table_scan(
    store: FrameStore, Q: dict[str, np.ndarray], codes: bool = False
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """One pass over each table's blocks for queries Q[t] (B, d) unit: every video's best block
    cosine and the best of its blocks' cap bounds (an upper bound of the table's max), per table
    -> {t: ((Nv, B), (Nv, B))}. With ``codes``, the pass reads the int8 codes where the index has
    them: a quarter of the bytes, bounds looser by their slack (``codes.py``)."""
    return {
        t: scan_table(
            store,
            t,
            store.direction[t],
            store.block_offsets[t],
            Q[t],
            caps=store.min_cos[t],
            codes=store.codes.get(t) if codes else None,
        )
        for t in store.branches
    }


def block_scan(store: FrameStore, Q: dict[str, np.ndarray], codes: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``table_scan`` combined: an estimate of S and an upper bound of S per video -> (Nv, B), (Nv, B)."""
    per = table_scan(store, Q, codes)
    return store.combine({t: p[0] for t, p in per.items()}), store.combine({t: p[1] for t, p in per.items()})


def best_blocks(store: FrameStore, Q: dict[str, np.ndarray]) -> torch.Tensor:
    """Every video's best block cosine, mean over the branches: an estimate of S that reads the
    block table only, from its int8 codes where the index has them (an estimate either way).
    Q[b] (B, d) unit -> (Nv, B)."""
    return store.combine(
        {
            b: scan_table(store, b, store.direction[b], store.block_offsets[b], Q[b], codes=store.codes.get(b))
            for b in store.branches
        }
    )


def score_pairs(
    store: FrameStore, Q: dict[str, np.ndarray], pq: np.ndarray, pv: np.ndarray, known: dict | None = None
) -> np.ndarray:
    """Exact s(q, V) for (query, video) pairs. Q[t] (B, d); pq, pv (P,) -> (P,). ``known`` {t: (P,)}:
    tables already scored for these pairs (``token_pairs``); the others are scored here."""
    per = dict(known or {})
    todo = [t for t in store.branches if t not in per]
    per |= token_pairs(store, Q, [t for t in todo if store.specs[t]["kind"] != "frames"], pq, pv)
    per |= frame_pairs(store, Q, [t for t in todo if store.specs[t]["kind"] == "frames"], pq, pv)
    return np.asarray(store.combine(per, pv), dtype=np.float32)


def frame_pairs(store: FrameStore, Q: dict[str, np.ndarray], tables: list[str], pq: np.ndarray, pv: np.ndarray) -> dict:
    """Each table's exact max for (query, video) pairs, grouped by video so each video's rows are
    read once for all the queries that need it (one query: ``one_query_pairs``) -> {t: (P,)}."""
    if tables and all(Q[t].ndim == 2 and len(Q[t]) == 1 for t in tables):
        return one_query_pairs(store, Q, tables, pv)
    order = np.argsort(pv, kind="stable")
    cuts = np.flatnonzero(np.diff(pv[order])) + 1
    rows = {t: store.rows(t) for t in tables}
    # plain arrays over the memory maps: slicing a np.memmap costs more than a video's product
    frames = {t: np.asarray(store.frames[t]) for t in tables}
    per = {t: np.zeros(len(pq), dtype=np.float32) for t in tables}
    for group in np.split(order, cuts) if len(order) and tables else []:
        v = int(pv[group[0]])
        for t, r in rows.items():
            s0, s1 = int(r[v]), int(r[v + 1])
            x, Qg = float32_rows(frames[t][s0:s1]), Q[t][pq[group]]
            if Qg.ndim == 2 and len(group) == 1:  # a matrix-vector product: ~2x a (d, 1) matrix's
                per[t][group] = (x @ Qg[0]).max()
            elif Qg.ndim == 2:
                per[t][group] = (x @ Qg.T).max(0)
            else:  # weighted words (G, T, d): CSA
                per_word = np.einsum("ld,gtd->gtl", x, Qg).max(-1)  # (G, T)
                per[t][group] = word_sum(per_word, np.int64(s1 - s0), store.specs[t]["pad_length"])
    return per


def one_query_pairs(store: FrameStore, Q: dict[str, np.ndarray], tables: list[str], pv: np.ndarray) -> dict:
    """``frame_pairs`` of a single query Q[t] (1, d): a matrix-vector product per video and table,
    indexed by Python ints: the grouping, numpy scalars and fancy assignment of the batch form cost
    about a quarter of a 128-row product's time a pair -> {t: (P,)}."""
    per = {}
    for t in tables:
        frames, q = np.asarray(store.frames[t]), Q[t][0]
        rows = store.rows(t)
        starts, ends = rows[pv].tolist(), rows[pv + 1].tolist()
        per[t] = np.fromiter(
            ((float32_rows(frames[a:b]) @ q).max() for a, b in zip(starts, ends)), dtype=np.float32, count=len(starts)
        )
    return per


TOKEN_VIDEOS = 256  # videos per gather of a fixed-length table (clip tokens)


def token_pairs(store: FrameStore, Q: dict[str, np.ndarray], tables: list[str], pq: np.ndarray, pv: np.ndarray) -> dict:
    """The exact max of fixed-length tables (K clip tokens a video) for (query, video) pairs:
    the pairs' videos' rows are gathered in storage order, TOKEN_VIDEOS at a time, and scored
    against every query in one product (no loop per video) -> {t: (P,)}."""
    if not tables:
        return {}
    k = int(store.meta["clips"])
    uv, inv = np.unique(pv, return_inverse=True)
    per = {t: np.zeros(len(pq), dtype=np.float32) for t in tables}
    for c in range(0, len(uv), TOKEN_VIDEOS):
        vs = uv[c : c + TOKEN_VIDEOS]
        sel = np.flatnonzero((inv >= c) & (inv < c + len(vs)))
        rows = (vs[:, None] * k + np.arange(k)).ravel()
        for t in tables:
            m = (float32_rows(store.frames[t][rows]) @ Q[t].T).reshape(len(vs), k, -1).max(1)  # (n, B)
            per[t][sel] = m[inv[sel] - c, pq[sel]]
    return per


SCAN_ROWS = 8_192  # table rows per matrix product of a scan (fits the cache; measured fastest on 2 cores)
DENSE = 0.25  # past this share of (query, video) pairs left to score, one sequential scan is cheaper


def search_bounds(store: FrameStore, q: dict[str, np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Exact top-k of one query q[b] (d,): ``search_exact`` of a batch of one. Returns (videos,
    scores, videos scored)."""
    (v, s), scored = search_exact(store, {b: x[None] for b, x in q.items()}, k, with_count=True)
    return v[0], s[0], scored


def search_bounds_batch(store: FrameStore, Q: dict[str, np.ndarray], k: int) -> list:
    """Exact top-k for a batch of queries Q[b] (B, d): a list of (videos, scores) per query."""
    videos, scores = search_exact(store, Q, k)
    return list(zip(videos, scores))


def search_exact(store: FrameStore, Q: dict[str, np.ndarray], k: int, first: int = 32, with_count: bool = False):
    """Exact top-k for queries Q[b] (B, d) unit. Phase 1 scores each query's ``first`` videos with
    the best block (the block directions predict the answer well); their k-th exact score is a
    lower bound of the true k-th, so phase 2 only scores videos whose upper bound reaches it:
    pair by pair while they are few. On real-shaped data the 100th score lies in the noise floor
    and few cap bounds fall below it: then the frames' int8 codes, where stored, bound every video
    (``frame_bounds``), as many videos again, the best by the codes' estimate, are scored, and the
    pairs left are those whose code bound reaches the new k-th; else, or if still many, one
    sequential scan of the frames. Returns videos (B, k) and scores (B, k), score descending then
    video ascending; with ``with_count``, also the videos scored per query."""
    k = min(k, store.num_videos)
    # the float32 caps, not the codes': at 2,000 videos the codes' slack let 179 videos a query
    # through to exact scoring instead of 100, which cost more than their cheaper scan saved
    per = table_scan(store, Q)
    guess = store.combine({t: p[0] for t, p in per.items()})  # (Nv, B)
    table_ub = {t: p[1].numpy() for t, p in per.items()}
    ub = store.combine(table_ub)  # (Nv, B)
    nq, m = ub.shape[1], min(max(first, k), store.num_videos)
    head = torch.topk(guess, m, dim=0).indices.T.numpy()  # (B, m)
    pq, pv = np.repeat(np.arange(nq), m), head.reshape(-1)
    s1 = score_pairs(store, Q, pq, pv).reshape(nq, m)
    kth = -np.sort(-s1, axis=1)[:, k - 1]  # (B,)
    seen = np.zeros_like(ub, dtype=bool)
    seen[head.T, np.arange(nq)[None]] = True
    todo = (ub >= kth[None]) & ~seen
    if todo.mean() > DENSE and store.frame_codes:
        # the block caps prune too little: bound every video by its frames' int8 codes (half the
        # bytes of float16 frames), score the best by the codes' estimate, and keep the rest only
        # where their bound reaches the new k-th
        est, table_ub = frame_bounds(store, Q, per)
        ub = store.combine(table_ub)
        m2 = min(m, store.num_videos - m)  # videos not scored yet, so none is scored twice
        if m2:
            unseen = torch.from_numpy(np.where(seen, -np.inf, est).astype(np.float32))
            more = torch.topk(unseen, m2, dim=0).indices.T.numpy()  # (B, m2)
            s_more = score_pairs(store, Q, np.repeat(np.arange(nq), m2), more.reshape(-1)).reshape(nq, m2)
            head, s1 = np.concatenate([head, more], axis=1), np.concatenate([s1, s_more], axis=1)
            kth = -np.sort(-s1, axis=1)[:, k - 1]
            seen[more.T, np.arange(nq)[None]] = True
        todo = (ub >= kth[None]) & ~seen
    if todo.mean() > DENSE:
        full = scan_scores(store, Q)  # (Nv, B)
        results = [_top([np.arange(store.num_videos)], [full[:, i]], k) for i in range(nq)]
        scored = store.num_videos
    else:
        rest_v, rest_q = np.nonzero(todo)
        rest_v, rest_q, known = refine(store, Q, table_ub, kth, rest_q, rest_v)
        s2 = score_pairs(store, Q, rest_q, rest_v, known)
        results = [_top([head[i], rest_v[rest_q == i]], [s1[i], s2[rest_q == i]], k) for i in range(nq)]
        scored = head.shape[1] + len(rest_v) // nq
    out = np.stack([v for v, _ in results]), np.stack([s for _, s in results])
    return (out, scored) if with_count else out


def frame_bounds(store: FrameStore, Q: dict[str, np.ndarray], blocks: dict) -> tuple[np.ndarray, dict]:
    """One scan of the frame tables' int8 codes: every video's estimate of S and, per table, an
    upper bound of its max, the tighter of the codes' and the block caps' (``blocks``:
    ``table_scan``'s {t: (estimate, bound)}; a table without codes keeps them) -> (Nv, B) and
    {t: (Nv, B)}."""
    est, bound = {}, {}
    for t in store.branches:
        e, u = blocks[t]
        if t in store.frame_codes:
            e, u2 = scan_table(store, t, store.frames[t], store.rows(t), Q[t], codes=store.frame_codes[t], upper=True)
            u = torch.minimum(u, u2)
        est[t], bound[t] = e, u.numpy()
    return np.asarray(store.combine(est)), bound


def refine(store: FrameStore, Q: dict, table_ub: dict, kth: np.ndarray, pq: np.ndarray, pv: np.ndarray):
    """Tighten the bounds of the pairs left to score before reading their frames: the clip tables
    (a few rows a video, gathered without a loop) are scored exactly first, one table at a time,
    heaviest first, and a pair is dropped as soon as its bound (the exact maxima so far + the
    other tables' cap bounds) falls below its query's k-th exact score so far, so later tables
    gather the rows of fewer videos. Returns the kept (pv, pq) and {clip table: exact max} of them."""
    tokens = sorted(
        (t for t in store.branches if store.specs[t]["kind"] != "frames"), key=lambda t: -store.specs[t]["weight"]
    )
    if not tokens or not len(pv):
        return pv, pq, {}
    per = {t: table_ub[t][pv, pq] for t in store.branches}
    for t in tokens:
        per[t] = token_pairs(store, Q, [t], pq, pv)[t]
        keep = store.combine(per, pv) >= kth[pq]
        pv, pq, per = pv[keep], pq[keep], {x: v[keep] for x, v in per.items()}
    return pv, pq, {t: per[t] for t in tokens}


def scan_scores(store: FrameStore, Q: dict[str, np.ndarray]) -> np.ndarray:
    """S (Eq. 13) of every video for queries Q[b] (B, d), reading the frames once, in order -> (Nv, B)."""
    per = {b: scan_table(store, b, store.frames[b], store.rows(b), Q[b]) for b in store.branches}
    return store.combine(per).numpy()


def scan_table(
    store: FrameStore, t: str, table: np.ndarray, offsets: np.ndarray, Q: np.ndarray, caps=None, codes=None, upper=False
):
    """``segment_scan`` of one table for its queries: vectors Q (B, d), or, for a table scored by
    words (CSA), weighted words Q (B, T, d), scanned as B T vectors. With a bound (``caps``, or
    ``upper`` with codes) the words' unit directions are scanned and each word's max and bound
    scaled by its weight (a bound still, the weights being >= 0). Per word the zero-padding floor,
    then the sum over the words -> (n, B) (and the bound (n, B)); the segments are the videos.
    ``codes``: the table's int8 codes (``codes.RowCodes``), scanned in its place."""
    bounded = caps is not None or upper
    if Q.ndim == 2:
        return segment_scan(table, offsets, Q, caps=caps, codes=codes, upper=upper)
    B, T, d = Q.shape
    if not bounded:
        parts, w = (segment_scan(table, offsets, Q.reshape(B * T, d), codes=codes),), None
    else:
        w = np.linalg.norm(Q, axis=-1)  # (B, T) the words' weights
        U = np.divide(Q, w[..., None], out=np.zeros_like(Q), where=w[..., None] > 0)
        parts = segment_scan(table, offsets, U.reshape(B * T, d), caps=caps, codes=codes, upper=upper)
    counts = torch.from_numpy(store.frame_counts)[:, None, None]  # (n, 1, 1): the videos' frames
    pad = store.specs[t]["pad_length"]
    out = []
    for x in parts:
        x = x.reshape(-1, B, T) if w is None else x.reshape(-1, B, T) * torch.from_numpy(w.astype(np.float32))[None]
        out.append(word_sum(x, counts, pad))
    return out[0] if not bounded else tuple(out)


def segment_scan(
    table: np.ndarray,
    offsets: np.ndarray,
    Q: np.ndarray,
    caps: np.ndarray | None = None,
    rows: int = SCAN_ROWS,
    codes: RowCodes | None = None,
    upper: bool = False,
):
    """Max over each segment of ``table`` @ Q.T: table (N, d) float32 or float16 rows (a memory
    map is read once, in order, about ``rows`` rows at a time: whole segments), offsets (n+1,)
    the bounds of n non-empty segments, Q (B, d) -> (n, B) float32. With ``caps`` (N,) the rows
    are block directions with their caps, and the max of their cap bounds (``store.cap_bound``)
    comes too, from the same products: -> ((n, B), (n, B)). With ``codes`` (the rows in int8,
    ``codes.py``) the products are the codes' estimates, and the cap bounds are taken of their
    upper cosines, so they stay bounds; with ``upper`` (codes, no caps) the max of those upper
    cosines is the bound. float16 rows are widened into one reused buffer: allocating a fresh one
    per slice costs more than the product."""
    n, B = len(offsets) - 1, len(Q)
    bounded = caps is not None or (upper and codes is not None)
    if bounded and caps is None:  # frame codes: one reduction of the estimates, each video's slack added after
        return codes.segment_scan(Q, offsets, rows)

    def bound_of(up, r0, r1):  # the rows' upper cosines -> the bound of their max
        return up if caps is None else cap_bound(up, caps[r0:r1, None]).astype(np.float32, copy=False)

    if codes is not None:

        def product(r0, r1):  # -> estimate (r, B) and the cosine the bound is taken of
            got = codes.scan(Q, r0, r1, upper=bounded)
            return got if bounded else (got, got)
    elif B == 1 and table.dtype == np.float32:
        # one query over float32 rows (the block table): OpenBLAS's matrix-vector product reads
        # them ~2x faster than torch's, and nothing needs widening
        def product(r0, r1):
            m = (np.asarray(table[r0:r1]) @ Q[0])[:, None]  # a matrix-vector product, not a (d, 1) matrix's
            return m, m
    else:
        product = None
    if product is not None and B == 1:  # one query: one pass over the whole table
        r1 = int(offsets[-1]) if n else 0
        m, up = product(0, r1)
        parts = [m] if not bounded else [m, bound_of(up, 0, r1)]
        out = [torch.from_numpy(ragged_max(x[:, 0], offsets[:-1]))[:, None] for x in parts]
        return out[0] if not bounded else tuple(out)
    out = [torch.empty(n, B) for _ in range(2 if bounded else 1)]
    lengths = torch.from_numpy(np.diff(offsets))
    chunks = segment_chunks(offsets, rows)
    if product is None:
        T, q = torch_rows(table), torch.from_numpy(np.ascontiguousarray(Q.T, np.float32))  # (d, B)
        most = max((int(offsets[e] - offsets[s]) for s, e in chunks), default=0)
        buf = torch.empty(most, T.shape[1]) if T.dtype != torch.float32 else None
        prod = torch.empty(most * B)

        def product(r0, r1):
            x = T[r0:r1] if buf is None else buf[: r1 - r0].copy_(T[r0:r1])
            m = torch.mm(x, q, out=prod[: (r1 - r0) * B].view(r1 - r0, B)).numpy()
            return m, m

    for s0, s1 in chunks:
        r0, r1 = int(offsets[s0]), int(offsets[s1])
        m, up = product(r0, r1)
        out[0][s0:s1] = segment_max(torch.from_numpy(m), lengths[s0:s1])
        if bounded:
            out[1][s0:s1] = segment_max(torch.from_numpy(bound_of(up, r0, r1)), lengths[s0:s1])
    return out[0] if not bounded else tuple(out)


def search_faiss(
    store: FrameStore,
    indexes: dict,
    q: dict[str, np.ndarray],
    k: int,
    exact: bool = True,
    start_frames: int | None = None,
):
    """Threshold algorithm over both branches' FAISS rankings. Returns (videos, scores, scored)."""
    k = min(k, store.num_videos)
    n_frames = int(store.offsets[-1])
    f = min(start_frames or max(16 * k, 256), n_frames)
    while True:
        cands, tau = [], 0.0
        for b in store.branches:
            D, I = indexes[b].search(np.ascontiguousarray(q[b][None], dtype=np.float32), f)
            valid = I[0] >= 0
            cands.append(np.searchsorted(store.rows(b), I[0][valid], side="right") - 1)
            tau += (D[0][valid][-1] if valid.any() else -1.0) / len(store.branches)
        videos = np.unique(np.concatenate(cands))
        top_v, top_s = _top([videos], [exact_total(store, q, videos)], k)
        if not exact or f >= n_frames or (len(top_s) >= k and top_s[-1] > tau):
            return top_v, top_s, len(videos)
        f = min(f * 4, n_frames)


RESCORE = 200  # videos re-scored exactly per query, the best by their best block (chosen on val queries:
# benchmarks/results/search_scale.json, val_sweep)


def search_blocks(
    store: FrameStore, Q: dict[str, np.ndarray], k: int, rescore: int = RESCORE
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Approximate top-k for queries Q[b] (B, d) whose candidates come from the block
    directions, not the frames: every video's best block (``best_blocks``, one scan of the
    block table, about a tenth of the frame rows) ranks the videos, and each query's best
    ``rescore`` are scored exactly. An index over frames or blocks spends its probes near the
    query, while the 100th video lies in the noise floor, where only a scan of every video
    finds it. Returns per query (videos, exact scores), best first."""
    nq = len(next(iter(Q.values())))
    m = min(max(rescore, k), store.num_videos)
    head = torch.topk(best_blocks(store, Q), m, dim=0).indices.T.numpy()  # (B, m)
    results = []
    for i in range(nq):
        keep = np.sort(head[i])  # in storage order: the frames are read forwards
        results.append(_top([keep], [exact_total(store, {b: x[i] for b, x in Q.items()}, keep)], k))
    return results


def moment(store: FrameStore, q: dict[str, np.ndarray], video: int, rule: MomentConfig, bank: QueryBank | None):
    """The moment of ``video`` for q[t] (d,) by the moment rule (``core/moments.py``), from the
    frame tables, inside the best clip when the index has clip tables.
    Returns (Moment, {table: raw scores of its rows for this video})."""
    specs = store.specs
    raw, z = {}, {}
    for t, rows in store.video_rows(video).items():
        if by_words(specs[t]):
            # CSA: (L, T) word scores; the frame signal is their weighted sum, unstandardised (the
            # bank describes pooled queries, not words)
            raw[t] = rows @ q[t].T
            z[t] = standardise(raw[t].sum(-1), None, None)
            continue
        raw[t] = rows @ q[t]
        if specs[t]["kind"] == "frames":
            stats = bank.frame_stats(specs[t]["branch"], rows) if bank else (None, None)
            z[t] = standardise(raw[t], *stats)
    signal = frame_signal(z, rule.smooth)
    clips = [t for t in store.branches if specs[t]["kind"] == "clips"]
    if not clips:
        return locate(signal, rule), raw
    best_clip = int(np.argmax(np.mean([raw[t] for t in clips], axis=0)))
    start, end = store.clip_span(clips[0], video, best_clip, len(signal))
    return locate_in(signal, (int(start), int(end)), rule), raw


def branch_scores(store: FrameStore, raw: dict[str, np.ndarray], video: int) -> dict[str, float]:
    """Each branch's own score (its fused score over its tables) from the tables' raw row scores."""
    specs, n_branches = store.specs, len({s["branch"] for s in store.specs.values()})
    if uniform_frames(specs):
        return {t: float(f.max()) for t, f in raw.items()}
    out: dict[str, float] = {}
    frames = int(store.offsets[video + 1] - store.offsets[video])
    for t, f in raw.items():
        if by_words(specs[t]):  # CSA: per word its max, floored word by word, summed
            s = float(word_sum(f.max(0), np.int64(frames), specs[t]["pad_length"]))
        else:
            s = float(zero_floor(np.float32(f.max()), np.int64(frames), specs[t]["pad_length"]))
        out[specs[t]["branch"]] = out.get(specs[t]["branch"], 0.0) + specs[t]["weight"] * n_branches * s
    return out


def _time(t: np.ndarray):
    return None if np.isnan(t).any() else (round(float(t[0]), 3), round(float(t[1]), 3))


def describe(
    store: FrameStore,
    q: dict[str, np.ndarray],
    videos: np.ndarray,
    scores: np.ndarray,
    rule: MomentConfig | None = None,
    bank: QueryBank | None = None,
) -> list[Hit]:
    """Hits with each branch's score (its max over the frames) and the best-matching moment; a
    moment no more peaked than ``rule.min_peakedness`` spans the whole video, flagged not confident."""
    rule = rule or MomentConfig()
    hits = []
    store.prefetch(videos)
    for v, s in zip(videos, scores):
        m, raw = moment(store, q, int(v), rule, bank)
        times = store.video_times(int(v))
        lo, hi = m.span
        span = np.array([times[lo][0], times[hi][1]])
        hits.append(
            Hit(
                store.video_ids[int(v)],
                float(s),
                branch_scores(store, raw, int(v)),
                m.best,
                (lo, hi),
                _time(times[m.best]),
                _time(span),
                round(m.peakedness, 4),
                m.confident,
            )
        )
    return hits
