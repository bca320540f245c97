"""Search that returns the method's score exactly: s(q, V) = (max_k q_theta . v_theta_k +
max_k q_phi . v_phi_k) / 2 over the frames of each video (a zero-shot index has one branch,
``clip``, and s(q, V) = max_k q . v_k).

Three engines over the same frame store (``engines.py`` names them):
- ``bounds`` (default for flat indexes): per-block upper bounds (see ``store.py``) rank videos by
  an upper bound of s; videos are scored exactly in that order until the next bound falls below
  the k-th exact score, which proves the top-k exact. Most videos are never touched.
- ``faiss``: the threshold algorithm over the two branches' FAISS rankings: retrieve the top F
  frames per branch, score every video seen exactly with both branches; an unseen video scores
  at most the mean of the two F-th frame scores, so a k-th score above that proves the answer
  (flat index); otherwise F grows. With an approximate factory (IVF, HNSW, PQ) the candidates
  come from approximate rankings and the answer is approximate; re-scoring stays exact.
- ``blocks`` (default past ``plan.EXACT_MAX_ROWS``): approximate; candidates from an index over
  the block directions, re-scored exactly (``search_blocks``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from prvr_cli.config import MomentConfig
from prvr_cli.core.moments import QueryBank, frame_signal, locate, standardise
from prvr_cli.core.score import branch_mean, float32_rows, ragged_max, ragged_rows, ragged_scores
from prvr_cli.errors import PrvrError
from prvr_cli.index.store import FrameStore, cap_bound


@dataclass
class Hit:
    """One ranked video. ``to_dict`` is the documented ``prvr search --json`` result (README,
    "Search output")."""

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
    """Per-branch max over frames, exactly, for ``videos`` (n,). q[b] (d,) unit -> {b: (n,)}."""
    return ragged_scores(store.frames, store.offsets, q, videos)


def _top(videos: list[np.ndarray], scores: list[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
    v, s = np.concatenate(videos), np.concatenate(scores)
    s = np.where(np.isnan(s), -np.inf, s)  # a NaN never ranks first (it compares false with everything)
    order = np.lexsort((v, -s))[:k]  # score desc, then video index asc
    return v[order], s[order]


def video_upper_bounds(store: FrameStore, q: dict[str, np.ndarray], cos: dict | None = None) -> np.ndarray:
    """Upper bound of s(q, V_j) for every video, from block caps (see store.py).
    q[b] (d,) -> (Nv,), or a batch q[b] (B, d) -> (Nv, B) in one matrix product per branch;
    ``cos``: those products (Nb,) or (Nb, B) per branch, if already computed."""
    ub = 0.0
    for b in store.branches:
        cos_b = store.direction[b] @ q[b].T if cos is None else cos[b]  # (Nb,) or (Nb, B)
        m = store.min_cos[b] if cos_b.ndim == 1 else store.min_cos[b][:, None]
        block_ub = cap_bound(cos_b, m)
        ub = ub + ragged_max(block_ub, store.block_offsets[b][:-1]) / len(store.branches)
    return ub


def score_pairs(store: FrameStore, Q: dict[str, np.ndarray], pq: np.ndarray, pv: np.ndarray) -> np.ndarray:
    """Exact s(q, V) for (query, video) pairs, grouped by video so each video's frames are read
    once for all the queries that need it. Q[b] (B, d); pq, pv (P,) -> (P,)."""
    out = np.zeros(len(pq), dtype=np.float32)
    order = np.argsort(pv, kind="stable")
    cuts = np.flatnonzero(np.diff(pv[order])) + 1
    for group in np.split(order, cuts) if len(order) else []:
        v = int(pv[group[0]])
        s0, s1 = int(store.offsets[v]), int(store.offsets[v + 1])
        out[group] = branch_mean(
            {b: (float32_rows(store.frames[b][s0:s1]) @ Q[b][pq[group]].T).max(0) for b in store.branches}
        )
    return out


SCAN_ROWS = 32_768  # frame rows per matrix product of a full scan (measured fastest on 2 cores)
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
    pair by pair while they are few, else in one sequential scan of the frames (on real-shaped
    data the 100th score lies in the noise floor and few bounds fall below it). Returns videos
    (B, k) and scores (B, k), score descending then video ascending; with ``with_count``, also
    the videos scored per query."""
    k = min(k, store.num_videos)
    cos = {b: store.direction[b] @ Q[b].T for b in store.branches}  # (Nb, B) per branch
    ub = video_upper_bounds(store, Q, cos)  # (Nv, B)
    guess = branch_mean({b: ragged_max(c, store.block_offsets[b][:-1]) for b, c in cos.items()})
    nq, m = ub.shape[1], min(max(first, k), store.num_videos)
    head = np.argpartition(-guess, m - 1, axis=0)[:m].T  # (B, m)
    pq, pv = np.repeat(np.arange(nq), m), head.reshape(-1)
    s1 = score_pairs(store, Q, pq, pv).reshape(nq, m)
    kth = -np.sort(-s1, axis=1)[:, k - 1]  # (B,)
    seen = np.zeros_like(ub, dtype=bool)
    seen[head.T, np.arange(nq)[None]] = True
    todo = (ub >= kth[None]) & ~seen
    if todo.mean() > DENSE:
        full = scan_scores(store, Q)  # (Nv, B)
        results = [_top([np.arange(store.num_videos)], [full[:, i]], k) for i in range(nq)]
        scored = store.num_videos
    else:
        rest_v, rest_q = np.nonzero(todo)
        s2 = score_pairs(store, Q, rest_q, rest_v)
        results = [_top([head[i], rest_v[rest_q == i]], [s1[i], s2[rest_q == i]], k) for i in range(nq)]
        scored = m + int(todo.sum()) // nq
    out = np.stack([v for v, _ in results]), np.stack([s for _, s in results])
    return (out, scored) if with_count else out


def scan_scores(store: FrameStore, Q: dict[str, np.ndarray]) -> np.ndarray:
    """S (Eq. 13) of every video for queries Q[b] (B, d), reading the frames once, in order and
    in slices of about ``SCAN_ROWS`` rows (whole videos) -> (Nv, B)."""
    off = store.offsets
    out = np.empty((store.num_videos, len(next(iter(Q.values())))), np.float32)
    cuts = np.unique(np.searchsorted(off, np.arange(0, int(off[-1]), SCAN_ROWS), side="right") - 1)
    for v0, v1 in zip(cuts, [*cuts[1:], store.num_videos]):
        r0, r1 = int(off[v0]), int(off[v1])
        out[v0:v1] = branch_mean(
            {b: ragged_max(float32_rows(store.frames[b][r0:r1]) @ Q[b].T, off[v0:v1] - r0) for b in store.branches}
        )
    return out


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
            cands.append(np.searchsorted(store.offsets, I[0][valid], side="right") - 1)
            tau += (D[0][valid][-1] if valid.any() else -1.0) / len(store.branches)
        videos = np.unique(np.concatenate(cands))
        s = exact_scores(store, q, videos)
        top_v, top_s = _top([videos], [branch_mean(s)], k)
        if not exact or f >= n_frames or (len(top_s) >= k and top_s[-1] > tau):
            return top_v, top_s, len(videos)
        f = min(f * 4, n_frames)


CANDIDATES = 1000  # blocks fetched per branch from the summary index
RESCORE = 300  # candidate videos re-scored exactly, ranked by their best block
NPROBE = 32  # inverted lists a summary IVF visits


def open_summaries(store: FrameStore, nprobe: int = NPROBE) -> dict:
    """Each branch's FAISS index over its block directions (``nprobe`` lists visited when it is
    an inverted file), for ``search_blocks``."""
    import faiss

    summaries = {}
    for b in store.branches:
        path = store.root / f"summary_{b}.index"
        if not path.is_file():
            raise PrvrError(f"{store.root}: built by an older prvr, it has no block summaries; rebuild it")
        index = faiss.read_index(str(path))
        if "IVF" in store.meta["summary"][b]["factory"]:
            faiss.extract_index_ivf(index).nprobe = nprobe
        summaries[b] = index
    return summaries


def search_blocks(
    store: FrameStore,
    summaries: dict,
    Q: dict[str, np.ndarray],
    k: int,
    candidates: int = CANDIDATES,
    rescore: int = RESCORE,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Approximate top-k for queries Q[b] (B, d) whose candidates come from block summaries, not
    frames: each branch's ``summaries[b]`` (a FAISS index over its block directions) returns the
    ``candidates`` blocks nearest the query; their videos are ranked by the mean over branches of
    their best block's cosine (all their blocks, both branches), and the best ``rescore`` are
    scored exactly. A frame-level index spends its probes on frames of the same few videos; a
    block stands for up to ``BLOCK`` frames of one event, so the same probes reach many more
    videos. Returns per query (videos, exact scores), best first."""
    nq = len(next(iter(Q.values())))
    found = {b: summaries[b].search(np.ascontiguousarray(Q[b], np.float32), candidates)[1] for b in store.branches}
    results = []
    for i in range(nq):
        owners = [np.searchsorted(store.block_offsets[b], I[i][I[i] >= 0], side="right") - 1 for b, I in found.items()]
        cand = np.unique(np.concatenate(owners))
        guess = {}
        for b in store.branches:
            rows, seg = ragged_rows(store.block_offsets[b], cand)
            guess[b] = ragged_max(store.direction[b][rows] @ Q[b][i], seg)
        keep = cand[np.argsort(-branch_mean(guess), kind="stable")[: max(rescore, k)]]
        exact = branch_mean(exact_scores(store, {b: x[i] for b, x in Q.items()}, keep))
        results.append(_top([keep], [exact], k))
    return results


def moment(store: FrameStore, q: dict[str, np.ndarray], video: int, rule: MomentConfig, bank: QueryBank | None):
    """The moment of ``video`` for q[b] (d,) by the moment rule (``core/moments.py``).
    Returns (Moment, {branch: raw frame scores (L,)})."""
    s0, s1 = int(store.offsets[video]), int(store.offsets[video + 1])
    frames = {b: float32_rows(store.frames[b][s0:s1]) for b in store.branches}
    raw = {b: frames[b] @ q[b] for b in store.branches}
    z = {b: standardise(raw[b], *(bank.frame_stats(b, frames[b]) if bank else (None, None))) for b in raw}
    return locate(frame_signal(z, rule.smooth), rule), raw


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
    for v, s in zip(videos, scores):
        m, raw = moment(store, q, int(v), rule, bank)
        base = int(store.offsets[v])
        lo, hi = m.span
        span = np.array([store.times[base + lo][0], store.times[base + hi][1]])
        hits.append(
            Hit(
                store.video_ids[int(v)],
                float(s),
                {b: float(f.max()) for b, f in raw.items()},
                m.best,
                (lo, hi),
                _time(store.times[base + m.best]),
                _time(span),
                round(m.peakedness, 4),
                m.confident,
            )
        )
    return hits
