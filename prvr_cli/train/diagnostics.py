"""How good are the detected ambiguous sets? Sizes, and precision against a synthetic dataset's
planted ground truth (which unpaired videos and which frames truly match a query)."""

from __future__ import annotations

import numpy as np
import torch

from prvr_cli.data.splits import SplitData
from prvr_cli.data.truth import GroundTruth


class AmbiguityTruth:
    """Truth for the training split: query topic, video topics, and each query's event span."""

    def __init__(self, gt: GroundTruth, data: SplitData):
        q_pos = np.array([gt.query_pos[c.cap_id] for c in data.captions])
        v_pos = np.array([gt.video_pos[v] for v in data.video_ids])
        self.query_topic = torch.from_numpy(gt.query_topic[q_pos])
        n_topics = int(gt.event_topic.max()) + 1
        topics = np.zeros((len(v_pos), n_topics), dtype=bool)
        local = {g: j for j, g in enumerate(v_pos)}
        for vid, t in zip(gt.event_video, gt.event_topic):
            j = local.get(int(vid))
            if j is not None:
                topics[j, t] = True
        self.video_topics = torch.from_numpy(topics)
        ev = gt.query_event[q_pos]
        self.event_start = torch.from_numpy(gt.event_start[ev])
        self.event_end = torch.from_numpy(gt.event_end[ev])
        self.n_frames = torch.tensor(data.frame_counts())
        self.max_ctx_l = data.max_ctx_l

    def text_video(self, query_index: torch.Tensor, video_index: torch.Tensor) -> torch.Tensor:
        """(Nq, B) True where the video holds an event of the query's topic."""
        return self.video_topics[video_index][:, self.query_topic[query_index]].T

    def text_frame(self, query_index: torch.Tensor, paired_video: torch.Tensor, L: int) -> torch.Tensor:
        """(Nq, L) True where (resampled) frame k of the paired video lies in the query's event."""
        n = self.n_frames[paired_video].double()[:, None]  # (Nq, 1)
        k = torch.arange(L, dtype=torch.float64)[None]
        length = torch.clamp(n, max=self.max_ctx_l)
        centre = torch.floor((k + 0.5) * n / length)  # original frame at the bin centre
        return (centre >= self.event_start[query_index, None]) & (centre < self.event_end[query_index, None])


class AmbiguityMeter:
    """Accumulates set sizes and (with truth) hits over an epoch, across both branches."""

    def __init__(self, truth: AmbiguityTruth | None = None):
        self.truth = truth
        self.c = dict(
            tv_amb=0,
            tv_anchors=0,
            tv_hits=0,
            tv_rel=0,
            tv_unpaired=0,
            tf_amb=0,
            tf_anchors=0,
            tf_hits=0,
            tf_rel=0,
            tf_cand=0,
        )
        self.tau_sums = dict(tau_s=0.0, tau_u=0.0, tau_s_f=0.0, tau_u_f=0.0)
        self.tau_count = 0

    @torch.no_grad()
    def add(self, used: dict, batch: dict) -> None:
        for det in used.values():
            if det is None:
                continue
            qi, vi = batch["query_index"], batch["video_index"]
            if det.thresholds is not None:
                for k in self.tau_sums:
                    self.tau_sums[k] += getattr(det.thresholds, k)
                self.tau_count += 1
            if det.tv is not None:
                amb = det.tv.amb.cpu()
                self.c["tv_amb"] += int(amb.sum())
                self.c["tv_anchors"] += amb.shape[0]
                if self.truth is not None:
                    rel = self.truth.text_video(qi, vi) & ~det.tv.pos.cpu()
                    self.c["tv_hits"] += int((amb & rel).sum())
                    self.c["tv_rel"] += int(rel.sum())
                    self.c["tv_unpaired"] += int((~det.tv.pos).sum())
            if det.tf is not None:
                amb = det.tf.amb.cpu()
                self.c["tf_amb"] += int(amb.sum())
                self.c["tf_anchors"] += amb.shape[0]
                if self.truth is not None:
                    rel = self.truth.text_frame(qi, vi[batch["text_labels"].cpu()], amb.shape[1])
                    cand = det.tf.valid.cpu() & ~det.tf.pos.cpu()
                    self.c["tf_hits"] += int((amb & rel).sum())
                    self.c["tf_rel"] += int((rel & cand).sum())
                    self.c["tf_cand"] += int(cand.sum())

    def summary(self) -> dict:
        c, out = self.c, {}
        if self.tau_count:  # the thresholds detection used, mean over batches and branches
            out |= {f"det_{k}": round(v / self.tau_count, 5) for k, v in self.tau_sums.items()}
        if c["tv_anchors"]:
            out["amb_tv_size"] = round(c["tv_amb"] / c["tv_anchors"], 3)
        if c["tf_anchors"]:
            out["amb_tf_size"] = round(c["tf_amb"] / c["tf_anchors"], 3)
        if self.truth is not None:
            if c["tv_anchors"]:
                out["amb_tv_precision"] = round(c["tv_hits"] / c["tv_amb"], 4) if c["tv_amb"] else None
                out["amb_tv_recall"] = round(c["tv_hits"] / c["tv_rel"], 4) if c["tv_rel"] else None
                out["tv_relevant_rate"] = round(c["tv_rel"] / max(c["tv_unpaired"], 1), 4)
            if c["tf_anchors"]:
                out["amb_tf_precision"] = round(c["tf_hits"] / c["tf_amb"], 4) if c["tf_amb"] else None
                out["amb_tf_recall"] = round(c["tf_hits"] / c["tf_rel"], 4) if c["tf_rel"] else None
                out["tf_relevant_rate"] = round(c["tf_rel"] / max(c["tf_cand"], 1), 4)
        return out
