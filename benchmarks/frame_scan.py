"""One query against every float16 frame row of a branch: what an exact query pays when no bound
prunes, beside the floor of reading those rows once (issue: exact search within 1.5x of the
streaming floor).

The table is one branch's frames at the size of the 50,000-video corpus of `benchmarks/search.py`
(2,400,000 unit rows x 256, float16 as that index stores them; random rows: the time does not
depend on the values). Timed, one query, the fastest of --repeats passes after a warm one:

- read_numpy_one_core / read_torch_all_cores: every byte read once and reduced to one word (the floor)
- widen_only: float16 rows widened into a reused float32 buffer, 8,192 rows at a time
- widen_torch_mm: the same, then each slice times the query (what ``segment_scan`` runs)
- float16_torch_mm: torch's float16 product on the rows as stored (its sums round to float16)

    python benchmarks/frame_scan.py [--rows 2400000] [--dim 256] [--repeats 5]
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def best_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return round(1000 * min(times), 2)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=2_400_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.rows, args.dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    table = torch.from_numpy(x.astype(np.float16))
    del x
    q = torch.nn.functional.normalize(torch.randn(args.dim), dim=0)
    words = table.numpy().reshape(-1).view(np.int64)
    rows, chunk = 8192, 1 << 20
    buf, col, out = torch.empty(rows, args.dim), q[:, None].contiguous(), torch.empty(args.rows, 1)

    def read_numpy():
        acc = np.int64(0)
        for s in range(0, len(words), chunk):
            acc |= np.bitwise_or.reduce(words[s : s + chunk])

    def widen(product: bool):
        for s in range(0, args.rows, rows):
            n = min(rows, args.rows - s)
            x = buf[:n].copy_(table[s : s + n])
            if product:
                torch.mm(x, col, out=out[s : s + n])

    half = q.half()[:, None].contiguous()
    res = {"rows": args.rows, "dim": args.dim, "threads": torch.get_num_threads()}
    res["table_mib"] = round(table.numel() * 2 / 2**20, 1)
    res["read_numpy_one_core_ms"] = best_ms(read_numpy, args.repeats)
    res["read_torch_all_cores_ms"] = best_ms(lambda: torch.from_numpy(words).max(), args.repeats)
    res["widen_only_ms"] = best_ms(lambda: widen(False), args.repeats)
    res["widen_torch_mm_ms"] = best_ms(lambda: widen(True), args.repeats)
    res["float16_torch_mm_ms"] = best_ms(lambda: torch.mm(table, half), args.repeats)
    floor = min(res["read_numpy_one_core_ms"], res["read_torch_all_cores_ms"])
    res["widen_torch_mm_over_floor"] = round(res["widen_torch_mm_ms"] / floor, 2)
    res["widen_only_over_floor"] = round(res["widen_only_ms"] / floor, 2)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
