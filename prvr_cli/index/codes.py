"""Index rows stored compressed: int8 codes with a per-row scale, and the norm of what the
rounding lost, so that a scan of the codes still gives certified bounds. The block directions are
stored so (the blocks engine ranks by them), and the frames (exact search bounds every video by
them when the block caps prune too little).

A row x (d,) is stored as codes c = round(x / s_x) in [-127, 127] with s_x = max_i |x_i| / 127,
and r_x = ||x - s_x c||, the residual's norm. A query q (d,) is rounded the same way at search
time, q' = s_q c_q, with e_q = ||q - q'||. Then, exactly,

    q . x = s_q s_x (c_q . c) + q' . (x - s_x c) + (q - q') . x

and by Cauchy-Schwarz the last two terms lie within ||q'|| r_x + e_q ||x||, so

    estimate = s_q s_x (c_q . c)                 (the integer dot product is exact in int32)
    q . x   <= estimate + ||q'|| r_x + e_q ||x||  (``upper``)

with ||x|| = 1 for the unit block directions, and each frame's stored norm for the frames (unit
only up to float16 rounding). The scan reads d bytes a row instead of 4 d (2 d for float16 frames),
and the integer products run on int8 kernels; an exact engine stays exact because the cap bound
(``store.cap_bound``) grows with the cosine, so it may be taken of ``upper``. On unit 256-d rows
the slack is about 0.014 (median), against the 1.0 span of a cosine (``benchmarks/block_scan.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

CODE_MAX = 127
SLACK = 1e-5  # float32 rounding of the rescaled estimate and of ||x|| = 1


def quantise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows x (N, d) float32 -> codes (N, d) int8, scales (N,) float32 and residual norms (N,)
    float32: x = scale * codes + residual, |codes| <= 127. An all-zero row has scale 0."""
    x = np.asarray(x, dtype=np.float32)
    top = np.abs(x).max(1) if x.size else np.zeros(len(x), np.float32)
    scale = (top / CODE_MAX).astype(np.float32)
    safe = np.where(scale > 0, scale, 1.0).astype(np.float32)
    codes = np.clip(np.rint(x / safe[:, None]), -CODE_MAX, CODE_MAX).astype(np.int8)
    residual = np.linalg.norm(x - scale[:, None] * codes.astype(np.float32), axis=1).astype(np.float32)
    return codes, scale, residual


def row_norms(x: np.ndarray) -> np.ndarray:
    """||x|| of rows x (N, d) -> (N,) float32, rounded up by a float32 step so it bounds the true norm."""
    x = np.asarray(x, dtype=np.float32)
    return np.nextafter(np.linalg.norm(x, axis=1).astype(np.float32), np.float32(np.inf))


@dataclass
class RowCodes:
    """One table in int8: codes (N, d) int8 (a memory map or not), scales (N,) and residual norms
    (N,) float32 (``quantise``), and the rows' norms (N,) float32 where they are not unit."""

    codes: np.ndarray
    scale: np.ndarray
    residual: np.ndarray
    norm: np.ndarray | None = None  # None: unit rows (the block directions)
    packed: tuple | None = None  # the codes reordered for oneDNN's int8 kernels, unit scales, zero points (``pack``)
    _slack: tuple | None = field(default=None, repr=False)  # (offsets, per-segment slack terms): ``_segment_slack``

    @classmethod
    def of(cls, x: np.ndarray, norms: bool = False) -> RowCodes:
        """The codes of rows x (N, d); with ``norms``, their norms kept too (rows not unit)."""
        return cls(*quantise(x), row_norms(x) if norms else None)

    def __len__(self) -> int:
        return len(self.codes)

    @property
    def nbytes(self) -> int:
        """Bytes one scan reads: the codes and both per-row floats."""
        extra = 0 if self.norm is None else self.norm.nbytes
        return int(self.codes.nbytes + self.scale.nbytes + self.residual.nbytes + extra)

    def pack(self) -> bool:
        """Reorder the codes for oneDNN's int8 matrix product (VNNI / AMX on x86), for a process
        that answers many queries: ~2x faster a scan, but the packing reads the whole table
        (~0.7 s per 230,000 rows of 256 on 2 cores) and keeps a copy in memory, so a one-shot
        search does not pay for it. Its sums are exact integers in float32 while d 127^2 < 2^24,
        so a packed scan returns the same bits as an unpacked one. Returns whether it packed."""
        import torch

        from prvr_cli.core.score import torch_rows

        onednn = getattr(torch.ops, "onednn", None)
        if self.packed is not None or not len(self) or self.codes.shape[1] * CODE_MAX**2 >= 2**24:
            return self.packed is not None
        try:
            weight = onednn.qlinear_prepack(torch_rows(np.ascontiguousarray(self.codes)), [1, self.codes.shape[1]])
            self.packed = (weight, torch.ones(len(self)), torch.zeros(len(self), dtype=torch.long))
        except (AttributeError, RuntimeError, NotImplementedError):  # no oneDNN in this torch build
            self.packed = None
        return self.packed is not None

    def _contiguous(self) -> None:
        """The per-row floats as contiguous arrays, once (an index loads them as columns of a map)."""
        if not self.scale.flags.c_contiguous:
            self.scale, self.residual = np.ascontiguousarray(self.scale), np.ascontiguousarray(self.residual)
        if self.norm is not None and not self.norm.flags.c_contiguous:
            self.norm = np.ascontiguousarray(self.norm)

    def _dots(self, qc: np.ndarray, start: int, stop: int):
        """Integer dot products of rows start:stop with query codes qc (B, d) int8 -> (n, B) float32."""
        import torch

        from prvr_cli.core.score import torch_rows

        if self.packed is None or (start, stop) != (0, len(self)):  # packed: whole tables only
            rows = torch_rows(self.codes[start:stop])
            return torch._int_mm(rows, torch.from_numpy(np.ascontiguousarray(qc.T))).float()
        shifted = torch.from_numpy((qc.astype(np.int16) + 128).astype(np.uint8))  # oneDNN's queries are uint8
        weight, ones, zeros = self.packed
        dots = torch.ops.onednn.qlinear_pointwise(
            shifted, 1.0, 128, weight, ones, zeros, None, 1.0, 0, torch.float32, "none", [], ""
        )
        return dots.T

    def scan(self, Q: np.ndarray, start: int = 0, stop: int | None = None, upper: bool = False):
        """Estimated cosines of rows start:stop with queries Q (B, d) (norm <= 1) -> (n, B) float32;
        with ``upper``, also their upper bounds -> ((n, B), (n, B)) (module docstring)."""
        import torch

        stop = len(self) if stop is None else stop
        self._contiguous()
        qc, qs, q_err, q_norm = _query_codes(Q)
        scale = torch.from_numpy(np.ascontiguousarray(self.scale[start:stop]))
        est = self._dots(qc, start, stop).mul(scale[:, None]).mul_(torch.from_numpy(qs)[None])  # (n, B)
        if not upper:
            return est.numpy()
        slack = torch.from_numpy(np.ascontiguousarray(self.residual[start:stop]))[:, None] * torch.from_numpy(q_norm)
        if self.norm is None:
            return est.numpy(), (est + slack + torch.from_numpy(q_err + SLACK)).numpy()
        norm = torch.from_numpy(np.ascontiguousarray(self.norm[start:stop]))[:, None]
        return est.numpy(), (est + slack).add_(norm * torch.from_numpy(q_err)).add_(SLACK).numpy()

    def segment_scan(self, Q: np.ndarray, offsets: np.ndarray, rows: int):
        """Per segment of the rows (offsets (n+1,): the videos) the max estimated cosine with
        queries Q (B, d) (norm <= 1) and an upper bound of the max true cosine -> ((n, B), (n, B))
        float32 tensors. Only the estimates are reduced: the bound adds each segment's largest
        slack terms (its largest residual and norm) to its max estimate, which bounds every row's
        own bound, so no per-row bound is formed. One query reads the whole table in one product
        (packed when ``pack`` ran); a batch, whole segments of about ``rows`` rows at a time."""
        import torch

        from prvr_cli.core.score import segment_chunks, segment_max, torch_rows

        self._contiguous()
        qc, qs, q_err, q_norm = _query_codes(Q)
        n, B = len(offsets) - 1, len(Q)
        lengths, scale = torch.from_numpy(np.diff(offsets)), torch_rows(self.scale)
        est = torch.empty(n, B)
        for s0, s1 in [(0, n)] if B == 1 and n else segment_chunks(offsets, rows):
            r0, r1 = int(offsets[s0]), int(offsets[s1])
            est[s0:s1] = segment_max(self._dots(qc, r0, r1).mul_(scale[r0:r1, None]), lengths[s0:s1])
        est.mul_(torch.from_numpy(qs)[None])  # s_q >= 0: the max of s_q x is s_q times the max of x
        residual, norm = self._segment_slack(offsets)
        bound = est + residual[:, None] * torch.from_numpy(q_norm)[None]
        bound.add_((norm[:, None] if norm is not None else 1.0) * torch.from_numpy(q_err)[None]).add_(SLACK)
        return est, bound

    def _segment_slack(self, offsets: np.ndarray):
        """Each segment's largest residual norm and largest row norm (None: unit rows) as (n,)
        tensors, computed once per offsets array (a table's are the same object every call)."""
        import torch

        from prvr_cli.core.score import ragged_max

        if self._slack is None or self._slack[0] is not offsets:
            starts = offsets[:-1]
            residual = torch.from_numpy(ragged_max(self.residual, starts))
            norm = None if self.norm is None else torch.from_numpy(ragged_max(self.norm, starts))
            self._slack = (offsets, residual, norm)
        return self._slack[1], self._slack[2]


def _query_codes(Q: np.ndarray):
    """Queries Q (B, d) rounded as the rows are -> codes (B, d) int8, scales (B,), e_q (B,) and
    ||q'|| (B,), float32."""
    codes, scale, err = quantise(Q)
    norm = scale * np.linalg.norm(codes.astype(np.float32), axis=1)
    return codes, scale, err, norm.astype(np.float32)
