"""One query against a block table: the scan that the `blocks` and `bounds` engines pay for every
query, in float32 and in the int8 codes prvr stores (``prvr_cli/index/codes.py``).

The table is one branch's block directions at the size of the 50,000-video corpus of
`benchmarks/search.py` (231,821 unit rows x 256; random rows: the time does not depend on the
values). Timed, one query, median over --repeats after a warm call, in this process:

- float32_numpy: ``table @ q`` (OpenBLAS's matrix-vector product; the scan of an index built
  before the codes)
- float32_torch: the same in torch
- codes_unpacked: ``RowCodes.scan`` (estimate and upper bound) with ``torch._int_mm`` on the
  codes as stored (what a one-shot `prvr search` runs)
- codes_packed: the same after ``RowCodes.pack`` (oneDNN's int8 kernels; what `prvr serve`
  runs), and the seconds the packing took

and the codes' largest error against float32 over the rows, and whether every upper bound held.

    python benchmarks/block_scan.py [--rows 231821] [--dim 256] [--threads 2] [--repeats 30]
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from prvr_cli.index.codes import RowCodes


def median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return round(1000 * float(np.median(times)), 3)


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
    q = rng.standard_normal((1, args.dim)).astype(np.float32)
    q /= np.linalg.norm(q)
    exact = table @ q[0]
    out = {"rows": args.rows, "dim": args.dim, "threads": args.threads, "float32_mib": round(table.nbytes / 2**20, 1)}
    out["float32_numpy_ms"] = median_ms(lambda: table @ q[0], args.repeats)
    tt, qt = torch.from_numpy(table), torch.from_numpy(q[0])
    out["float32_torch_ms"] = median_ms(lambda: tt @ qt, args.repeats)

    codes = RowCodes.of(table)
    out["codes_mib"] = round(codes.nbytes / 2**20, 1)
    out["codes_unpacked_ms"] = median_ms(lambda: codes.scan(q, upper=True), args.repeats)
    est, up = codes.scan(q, upper=True)
    t = time.perf_counter()
    out["packed"] = codes.pack()
    out["pack_seconds"] = round(time.perf_counter() - t, 3)
    out["codes_packed_ms"] = median_ms(lambda: codes.scan(q, upper=True), args.repeats)
    packed_est, packed_up = codes.scan(q, upper=True)
    out["packed_same_bits"] = bool((packed_est == est).all() and (packed_up == up).all())
    out["codes_max_error"] = float(np.abs(est[:, 0] - exact).max())
    out["codes_upper_holds"] = bool((up[:, 0] >= exact).all())
    out["codes_upper_slack_median"] = float(np.median(up[:, 0] - est[:, 0]))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
