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

Frame-level thresholds (``loss.tf_thresholds = frame``) come from the frame-level distributions of
the same positive pairs, over every valid frame of each query's paired video:
    tau_s^f = mean over positive pairs of mean_k s^f(q_i, v_{i+,k}) = mean_i q_i_hat . fbar_{i+}
    tau_u^f = mean over positive pairs of mean_k u^f(q_i, v_{i+,k}) = (qbar . vbar + fbar . qbar) / 2
where fbar_j is the mean unit frame of video j and fbar its mean over the positive pairs; with
``tau_u_over = "all"`` tau_u^f is qbar . vbar as well.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from prvr_cli.core.score import unit, valid_frames


@dataclass
class Thresholds:
    """tau_s, tau_u of the text-video detection and tau_s^f, tau_u^f of the text-frame one."""

    tau_s: float
    tau_u: float
    tau_s_f: float
    tau_u_f: float


def batch_thresholds(
    s_pos: torch.Tensor, u_pos: torch.Tensor, sf_pos: torch.Tensor, uf_pos: torch.Tensor, mask_pos: torch.Tensor
) -> Thresholds:
    """The same means as the epoch thresholds, over the positive pairs of one batch, from the
    detecting branch's current similarities (``loss.thresholds = batch``).

    s_pos, u_pos (Nq,) video-level s and u of each query with its paired video; sf_pos, uf_pos,
    mask_pos (Nq, L) frame-level s^f, u^f and valid frames of that video.
    """
    n = mask_pos.sum(-1).clamp(min=1)
    return Thresholds(
        float(s_pos.mean()),
        float(u_pos.mean()),
        float(((sf_pos * mask_pos).sum(-1) / n).mean()),
        float(((uf_pos * mask_pos).sum(-1) / n).mean()),
    )


@dataclass
class EpochStats:
    """What detection needs from the dataset-wide pass, per branch."""

    mean_v: torch.Tensor  # (d,) mean unit frame embedding over all valid training frames
    mean_q: torch.Tensor  # (d,) mean unit query embedding over all training queries
    tau_s: float  # video level: mean s over positive pairs
    tau_u: float
    tau_s_f: float | None = None  # frame level: mean s^f over the frames of positive pairs
    tau_u_f: float | None = None

    def thresholds(self) -> Thresholds:
        """The epoch's thresholds (frame level = video level for stats saved without them)."""
        tau_s_f = self.tau_s if self.tau_s_f is None else self.tau_s_f
        tau_u_f = self.tau_u if self.tau_u_f is None else self.tau_u_f
        return Thresholds(self.tau_s, self.tau_u, tau_s_f, tau_u_f)

    def to_dict(self) -> dict:
        return {
            "mean_v": self.mean_v.cpu(),
            "mean_q": self.mean_q.cpu(),
            "tau_s": self.tau_s,
            "tau_u": self.tau_u,
            "tau_s_f": self.tau_s_f,
            "tau_u_f": self.tau_u_f,
        }

    @classmethod
    def from_dict(cls, d: dict) -> EpochStats:
        opt = lambda k: None if d.get(k) is None else float(d[k])  # noqa: E731
        return cls(d["mean_v"], d["mean_q"], float(d["tau_s"]), float(d["tau_u"]), opt("tau_s_f"), opt("tau_u_f"))


def query_uncertainty(q: torch.Tensor, mean_v: torch.Tensor) -> torch.Tensor:
    """U_q (Eq. 4, left): (Nq, d), (d,) -> (Nq,)."""
    return unit(q) @ mean_v


def frame_uncertainty(V: torch.Tensor, mean_q: torch.Tensor) -> torch.Tensor:
    """U_v (Eq. 4, right): (B, L, d), (d,) -> (B, L)."""
    return unit(V) @ mean_q


def pair_uncertainty(U_q: torch.Tensor, U_v: torch.Tensor, k_hat: torch.Tensor) -> torch.Tensor:
    """u (Eq. 5): (U_q[i] + U_v[j, k_hat_ij]) / 2. (Nq,), (B, L), (Nq, B) -> (Nq, B)."""
    nq, b = k_hat.shape
    u_v = U_v[None].expand(nq, b, U_v.shape[1]).gather(2, k_hat[..., None]).squeeze(-1)
    return (U_q[:, None] + u_v) / 2


def frame_pair_uncertainty(U_q: torch.Tensor, U_v_paired: torch.Tensor) -> torch.Tensor:
    """u_f (Eq. 5): (U_q[i] + U_v[j_i, k]) / 2 over the frames of each query's paired video.
    (Nq,), (Nq, L) -> (Nq, L)."""
    return (U_q[:, None] + U_v_paired) / 2


class StatsAccumulator:
    """Streams unit embeddings chunk by chunk into the sums that ``EpochStats`` needs."""

    def __init__(self, d: int, device=None):
        z = lambda: torch.zeros(d, dtype=torch.float64, device=device)  # noqa: E731
        self.sum_v, self.sum_q, self.sum_pos_frame, self.sum_pos_mean_frame = z(), z(), z(), z()
        self.n_frames = self.n_queries = 0
        self.sum_pos_s = self.sum_pos_mean_sf = 0.0

    @torch.no_grad()
    def add(self, q: torch.Tensor, V: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> None:
        """q (Nq, d), V (B, L, d), mask (B, L), labels (Nq,) batch position of each query's video."""
        q_hat, V_hat = unit(q), unit(V)
        self.sum_v += (V_hat * mask[..., None]).sum((0, 1)).double()
        self.n_frames += int(mask.sum())
        self.sum_q += q_hat.sum(0).double()
        self.n_queries += q.shape[0]
        # positive pairs only: (Nq, L) similarities to each query's own video
        sf_pos = torch.einsum("nd,nld->nl", q_hat, V_hat[labels])
        s_pos, k_pos = sf_pos.masked_fill(~valid_frames(mask)[labels], float("-inf")).max(-1)  # (Nq,)
        self.sum_pos_s += float(s_pos.sum())
        self.sum_pos_frame += V_hat[labels, k_pos].sum(0).double()
        # frame level: every valid frame of the paired video counts once per query
        mean_frame = (V_hat * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)  # (B, d)
        self.sum_pos_mean_frame += mean_frame[labels].sum(0).double()
        self.sum_pos_mean_sf += float((q_hat * mean_frame[labels]).sum())

    def to_vector(self) -> torch.Tensor:
        """Every sum and count as one float64 vector (4d + 4,): what processes that each
        accumulated a share of the data add up (``all_reduce``) before ``stats``."""
        scalars = [self.n_frames, self.n_queries, self.sum_pos_s, self.sum_pos_mean_sf]
        tail = torch.tensor(scalars, dtype=torch.float64, device=self.sum_v.device)
        return torch.cat([self.sum_v, self.sum_q, self.sum_pos_frame, self.sum_pos_mean_frame, tail])

    def load_vector(self, vector: torch.Tensor) -> None:
        """The inverse of ``to_vector``: take these sums and counts."""
        self.sum_v, self.sum_q, self.sum_pos_frame, self.sum_pos_mean_frame = vector[:-4].view(4, -1).clone()
        n_frames, n_queries, self.sum_pos_s, self.sum_pos_mean_sf = vector[-4:].tolist()
        self.n_frames, self.n_queries = round(n_frames), round(n_queries)

    def stats(self, tau_u_over: str = "positive") -> EpochStats:
        mean_v = (self.sum_v / max(self.n_frames, 1)).float()
        mean_q = (self.sum_q / max(self.n_queries, 1)).float()
        n = max(self.n_queries, 1)
        mean_pos_frame = (self.sum_pos_frame / n).float()
        mean_pos_mean_frame = (self.sum_pos_mean_frame / n).float()
        if tau_u_over == "all":
            tau_u = tau_u_f = float(mean_q @ mean_v)
        else:
            tau_u = float((mean_q @ mean_v + mean_pos_frame @ mean_q) / 2)
            tau_u_f = float((mean_q @ mean_v + mean_pos_mean_frame @ mean_q) / 2)
        return EpochStats(mean_v, mean_q, self.sum_pos_s / n, tau_u, self.sum_pos_mean_sf / n, tau_u_f)
