"""The planted ground truth of a synthetic dataset (``ground_truth.npz``), read back: which
unpaired videos truly hold each query's topic, and where each query's event lies. Training
diagnostics and evaluation read it; only ``data/synth.py`` writes it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from prvr_cli.errors import PrvrError


class GroundTruth:
    """Planted truth of a synthetic dataset, addressed by caption id and video id."""

    def __init__(self, path: str | Path):
        path = Path(path)
        if not path.is_file():
            raise PrvrError(f"{path}: no ground truth (only `prvr data synth` datasets have one)")
        z = np.load(path)
        self.video_ids = [str(v) for v in z["video_ids"]]
        self.query_ids = [str(q) for q in z["query_ids"]]
        self.video_pos = {v: i for i, v in enumerate(self.video_ids)}
        self.query_pos = {q: i for i, q in enumerate(self.query_ids)}
        for key in z.files:
            setattr(self, key, z[key])
        if "query_generic" not in z.files:  # written before generic queries existed
            self.query_generic = np.zeros(len(self.query_ids), dtype=bool)

    def relevant(self, cap_id: str) -> set[str]:
        """Unpaired videos of the same split that hold an event of the query's topic."""
        i = self.query_pos[cap_id]
        rows = self.relevant_videos[self.relevant_indptr[i] : self.relevant_indptr[i + 1]]
        return {self.video_ids[r] for r in rows}

    def relevance_matrix(self, cap_ids: list[str], video_ids: list[str]) -> np.ndarray:
        """(len(cap_ids), len(video_ids)) bool: True where the unpaired pair is truly relevant."""
        col = {v: c for c, v in enumerate(video_ids)}
        out = np.zeros((len(cap_ids), len(video_ids)), dtype=bool)
        for r, cap in enumerate(cap_ids):
            i = self.query_pos[cap]
            for g in self.relevant_videos[self.relevant_indptr[i] : self.relevant_indptr[i + 1]]:
                c = col.get(self.video_ids[g])
                if c is not None:
                    out[r, c] = True
        return out
