"""One query against a block table: the scan that the `blocks` and `bounds` engines pay for every
query, in float32 and in int8 with a per-row scale (issue: one query at a time as fast as a batch).

The table is one branch's block directions at the size of the 50,000-video corpus of
`benchmarks/search.py` (231,821 unit rows x 256; random rows: the time does not depend on the
values). Timed, one query, median over --repeats after a warm call, in this process:

- float32_numpy: ``table @ q`` (OpenBLAS's matrix-vector product; what ``segment_scan`` runs today)
- float32_torch: the same in torch
- int8_int_mm: int8 rows and an int8 query, ``torch._int_mm`` (int32 sums), rescaled per row
- int8_fbgemm: ``quantized.linear_dynamic`` over per-row int8 weights (the query quantised on
  the fly; torch's quantized tensors, deprecated upstream)

and, per int8 kind, the largest error against float32 over the rows, beside the per-row bound
that would keep a scan's upper bounds certifiable (``bound``: ||row - dequantised row|| +
||q - dequantised q||, Cauchy-Schwarz on unit vectors).

    python benchmarks/block_scan.py [--rows 231821] [--dim 256] [--threads 2] [--repeats 30]
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np
import torch


def median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return round(1000 * float(np.median(times)), 3)


def quantise_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per row: x (N, d) -> codes (N, d) int8, scales (N,) with x ~ scale * code."""
    scale = np.maximum(np.abs(x).max(1), 1e-12) / 127
    return np.round(x / scale[:, None]).astype(np.int8), scale.astype(np.float32)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=231_821)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    table = rng.standard_normal((args.rows, args.dim)).astype(np.float32)
    table /= np.linalg.norm(table, axis=1, keepdims=True)
    q = rng.standard_normal(args.dim).astype(np.float32)
    q /= np.linalg.norm(q)
    exact = table @ q
    out = {"rows": args.rows, "dim": args.dim, "threads": args.threads, "float32_mib": round(table.nbytes / 2**20, 1)}
    out["float32_numpy_ms"] = median_ms(lambda: table @ q, args.repeats)
    tt, qt = torch.from_numpy(table), torch.from_numpy(q)
    out["float32_torch_ms"] = median_ms(lambda: tt @ qt, args.repeats)

    codes, scales = quantise_rows(table)
    row_err = np.linalg.norm(table - codes * scales[:, None], axis=1)
    qc, qs = quantise_rows(q[None])
    q_err = float(np.linalg.norm(q - qc[0] * qs[0]))
    bound = row_err + q_err  # |q.x - q'.x'| <= ||x - x'|| ||q|| + ||q - q'|| ||x'||, ||q|| = 1, ||x'|| ~ 1
    C, Q8 = torch.from_numpy(codes), torch.from_numpy(np.repeat(qc.T, 8, axis=1))  # _int_mm wants N >= 8
    S = torch.from_numpy(scales * qs[0])

    def int_mm():
        return torch._int_mm(C, Q8)[:, 0].float() * S

    got = int_mm().numpy()
    out["int8_mib"] = round(codes.nbytes / 2**20, 1)
    out["int8_int_mm_ms"] = median_ms(int_mm, args.repeats)
    out["int8_int_mm_max_error"] = float(np.abs(got - exact).max())
    out["int8_int_mm_error_within_bound"] = bool((np.abs(got - exact) <= bound + 1e-6).all())
    out["int8_bound_median"] = float(np.median(bound))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w = torch.quantize_per_channel(
            tt, torch.from_numpy(scales.astype(np.float64)), torch.zeros(args.rows, dtype=torch.long), 0, torch.qint8
        )
        packed = torch.ops.quantized.linear_prepack(w, None)
    x = qt[None]
    out["int8_fbgemm_ms"] = median_ms(lambda: torch.ops.quantized.linear_dynamic(x, packed), args.repeats)
    out["int8_fbgemm_max_error"] = float(np.abs(torch.ops.quantized.linear_dynamic(x, packed)[0].numpy() - exact).max())
    print(json.dumps(out))


if __name__ == "__main__":
    main()
