"""Extraction throughput on CPU with the test-only tiny models and the bundled sample clips.

Decode throughput (decoded frames/s, through the timeout-guarded child process), model
throughput per backbone (tiny CLIP on frames, I3D architecture on 16-frame windows at 64 px,
ResNet-152 at 64 px, tiny RoBERTa on captions), and the share of an extract run spent decoding.

    python benchmarks/extract.py [--repeat 4]
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from prvr_cli.features.backbones import build_visual
from prvr_cli.features.captions import read_caption_jsonl
from prvr_cli.features.decode import decode_video, list_videos
from prvr_cli.features.text import build_text

SAMPLES = Path(__file__).resolve().parent.parent / "sample_videos"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=4)
    args = ap.parse_args()
    cpu = torch.device("cpu")
    videos = list_videos(SAMPLES)
    out = {"threads": torch.get_num_threads(), "videos": len(videos) * args.repeat}
    clip = build_visual("clip", clip_model="prvr-tiny-clip", device=cpu)
    for label, backbone, step in (
        ("clip_1fps", clip, 1.0),
        ("clip_8fps", clip, 0.125),
        ("i3d_windows", build_visual("i3d", i3d_checkpoint="prvr-tiny-i3d", device=cpu), 1.5),
        ("resnet152", build_visual("resnet152", resnet_checkpoint="prvr-tiny-resnet152", device=cpu), 1.0),
    ):
        sampling = backbone.sampling(step)
        t_dec = t_model = 0.0
        frames = rows = 0
        for _ in range(args.repeat):
            for path in videos.values():
                t = time.perf_counter()
                clips, _, _ = decode_video(path, sampling)
                t_dec += time.perf_counter() - t
                t = time.perf_counter()
                backbone.encode(clips)
                t_model += time.perf_counter() - t
                frames += clips.shape[0] * clips.shape[1]
                rows += clips.shape[0]
        out[label] = {
            "decoded_frames": frames,
            "decode_frames_per_s": round(frames / t_dec, 1),
            "model_rows_per_s": round(rows / t_model, 1),
            "decode_share": round(t_dec / (t_dec + t_model), 3),
        }
        print(json.dumps({label: out[label]}), flush=True)
    texts = [c.text for c in read_caption_jsonl(SAMPLES / "captions.jsonl")] * 20
    roberta = build_text("roberta", model="prvr-tiny-roberta")
    t = time.perf_counter()
    roberta.encode(texts)
    out["roberta_tiny_captions_per_s"] = round(len(texts) / (time.perf_counter() - t), 1)
    windows = np.random.default_rng(0).integers(0, 255, (4, 16, 224, 224, 3), dtype=np.uint8)
    i3d = build_visual("i3d", i3d_checkpoint="prvr-tiny-i3d", device=cpu)
    i3d.short_side = 224
    t = time.perf_counter()
    i3d.encode(windows)
    out["i3d_224px_windows_per_s"] = round(4 / (time.perf_counter() - t), 2)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
