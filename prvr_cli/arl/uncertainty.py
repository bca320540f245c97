"""Dataset-wide uncertainty (Eq. 4-5) in its linear form, and the per-epoch thresholds.

With M_xyz = cos(q_x, v_yz), both means of Eq. 4 are linear in unit vectors:
    U_q[x]   = mean_{y,z} M_xyz = q_x_hat . mean_{y,z} v_yz_hat
    U_v[y,z] = mean_x     M_xyz = v_yz_hat . mean_x q_x_hat
so a pass over the training set only accumulates two mean vectors per branch, never the
(N_q, N_v, L) map. The thresholds reduce the same way:
    tau_s = mean over positive pairs of s(q_i, V_i+)
    tau_u = mean over positive pairs of u(q_i, V_i+) = (qbar . vbar + pbar . qbar) / 2
where qbar = mean unit query, vbar = mean unit frame, pbar = mean unit argmax frame of the
positive pairs. ``tau_u_over = "all"`` uses the mean of the uncertainty distribution over all
queries and all frames instead: (mean U_q + mean U_v) / 2 = qbar . vbar.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from prvr_cli.arl.similarity import frame_similarity


@dataclass
class EpochStats:
    """What detection needs from the dataset-wide pass, per branch."""

    mean_v: torch.Tensor  # (d,) mean unit frame embedding over all valid training frames
    mean_q: torch.Tensor  # (d,) mean unit query embedding over all training queries
    tau_s: float
    tau_u: float

    def to_dict(self) -> dict:
        return {"mean_v": self.mean_v.cpu(), "mean_q": self.mean_q.cpu(), "tau_s": self.tau_s, "tau_u": self.tau_u}

    @classmethod
    def from_dict(cls, d: dict) -> EpochStats:
        return cls(d["mean_v"], d["mean_q"], float(d["tau_s"]), float(d["tau_u"]))


def query_uncertainty(q: torch.Tensor, mean_v: torch.Tensor) -> torch.Tensor:
    """U_q (Eq. 4, left): (Nq, d), (d,) -> (Nq,)."""
    return F.normalize(q, dim=-1) @ mean_v


def frame_uncertainty(V: torch.Tensor, mean_q: torch.Tensor) -> torch.Tensor:
    """U_v (Eq. 4, right): (B, L, d), (d,) -> (B, L)."""
    return F.normalize(V, dim=-1) @ mean_q


def pair_uncertainty(U_q: torch.Tensor, U_v: torch.Tensor, k_hat: torch.Tensor) -> torch.Tensor:
    """u (Eq. 5): (U_q[i] + U_v[j, k_hat_ij]) / 2. (Nq,), (B, L), (Nq, B) -> (Nq, B)."""
    nq, b = k_hat.shape
    u_v = U_v[None].expand(nq, b, U_v.shape[1]).gather(2, k_hat[..., None]).squeeze(-1)
    return (U_q[:, None] + u_v) / 2


def frame_pair_uncertainty(U_q: torch.Tensor, U_v_paired: torch.Tensor) -> torch.Tensor:
    """u_f (Eq. 5): (U_q[i] + U_v[j_i, k]) / 2 over the frames of each query's paired video.
    (Nq,), (Nq, L) -> (Nq, L)."""
    return (U_q[:, None] + U_v_paired) / 2


def brute_force_uncertainty(q: torch.Tensor, V: torch.Tensor, mask: torch.Tensor):
    """Reference for tests: materialise M (Nq, Nv, L) and average it (Eq. 4 as printed)."""
    M = frame_similarity(q, V)  # (Nq, Nv, L)
    valid = mask[None].expand_as(M)
    U_q = (M * valid).sum((1, 2)) / valid.sum((1, 2))
    U_v = M.mean(0) * mask
    return U_q, U_v


class StatsAccumulator:
    """Streams unit embeddings chunk by chunk into the sums that ``EpochStats`` needs."""

    def __init__(self, d: int, device=None):
        z = lambda: torch.zeros(d, dtype=torch.float64, device=device)  # noqa: E731
        self.sum_v, self.sum_q, self.sum_pos_frame = z(), z(), z()
        self.n_frames = self.n_queries = 0
        self.sum_pos_s = 0.0

    @torch.no_grad()
    def add(
        self, q: torch.Tensor, V: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor, sf: torch.Tensor | None = None
    ) -> None:
        """q (Nq, d), V (B, L, d), mask (B, L), labels (Nq,) batch position of each query's video."""
        q_hat, V_hat = F.normalize(q.float(), dim=-1), F.normalize(V.float(), dim=-1)
        self.sum_v += (V_hat * mask[..., None]).sum((0, 1)).double()
        self.n_frames += int(mask.sum())
        self.sum_q += q_hat.sum(0).double()
        self.n_queries += q.shape[0]
        # positive pairs only: (Nq, L) similarities to each query's own video
        sf_pos = torch.einsum("nd,nld->nl", q_hat, V_hat[labels])
        s_pos, k_pos = sf_pos.masked_fill(mask[labels] < 0.5, float("-inf")).max(-1)  # (Nq,)
        self.sum_pos_s += float(s_pos.sum())
        self.sum_pos_frame += V_hat[labels, k_pos].sum(0).double()

    def stats(self, tau_u_over: str = "positive") -> EpochStats:
        mean_v = (self.sum_v / max(self.n_frames, 1)).float()
        mean_q = (self.sum_q / max(self.n_queries, 1)).float()
        mean_pos_frame = (self.sum_pos_frame / max(self.n_queries, 1)).float()
        if tau_u_over == "all":
            tau_u = float(mean_q @ mean_v)
        else:
            tau_u = float((mean_q @ mean_v + mean_pos_frame @ mean_q) / 2)
        return EpochStats(mean_v, mean_q, self.sum_pos_s / max(self.n_queries, 1), tau_u)
