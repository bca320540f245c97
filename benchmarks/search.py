"""Query latency of exact eval scoring and of index search; exact vs approximate factories.

Part 1 (the paper's Table 4 sizes): 1,000 / 1,500 / 2,000 / 2,500 videos x 128 frames x d = 384,
both branches. Per query, single and batched (256): brute-force exact scoring as `prvr eval`
does it (torch, all frames), and exact index search (`bounds` engine: block upper bounds,
bound-ordered exact re-scoring). Part 2: a large corpus (default 50,000 videos, ~2.4M frames,
d = 256): latency and video recall@10/@100 of exact search vs IVF and HNSW factories (FAISS
candidates + exact re-scoring), with index size and build time.

Embeddings are synthetic but shaped like trained ones: each video is 2-4 events, frames are an
event centre plus noise (unit vectors), queries are a noisy event centre of a random video. On
i.i.d. random frames no bound can prune and exact search degrades to a full scan (still exact).

    python benchmarks/search.py [--sizes 1000,1500,2000,2500] [--large 50000] [--skip-large]
        [--qdrant qdrant-edge]     # the large corpora also in the Qdrant edge engine (exact, `qdrant` engine)
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from prvr_cli.device import QUERY_ENV
from prvr_cli.index.search import search_bounds, search_bounds_batch
from prvr_cli.index.store import FrameStore, save_store

BR = ("theta", "phi")


def corpus(nv, d, frames, seed, noise=0.25, topics=None):
    """Videos of 2-4 events; an event centre is 0.8 * a shared topic + 0.6 * its own instance, as
    in `prvr data synth`, so each query has several genuinely relevant videos (the PRVR premise).
    Returns per-branch frames (N, d), offsets (Nv+1,), and per-branch event centres of video 0..."""
    rng = np.random.default_rng(seed)
    topics = topics or max(20, nv // 10)
    lens = np.full(nv, frames) if isinstance(frames, int) else rng.integers(frames[0], frames[1] + 1, nv)
    offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    n = int(offsets[-1])
    out, centres = {}, {}
    for b in BR:
        topic_vecs = rng.standard_normal((topics, d)).astype(np.float32)
        f = np.empty((n, d), np.float32)
        cs = []
        for j in range(nv):
            n_ev = int(rng.integers(2, 5))
            t = rng.integers(0, topics, n_ev)
            c = 0.8 * topic_vecs[t] + 0.6 * rng.standard_normal((n_ev, d)).astype(np.float32)
            cut = np.sort(rng.choice(np.arange(1, lens[j]), size=min(n_ev - 1, lens[j] - 1), replace=False))
            ev = np.searchsorted(cut, np.arange(lens[j]), side="right")
            block = c[ev] + noise * rng.standard_normal((lens[j], d)).astype(np.float32)
            f[offsets[j] : offsets[j + 1]] = block / np.linalg.norm(block, axis=1, keepdims=True)
            cs.append(c[0])
        out[b] = f
        centres[b] = np.stack(cs)
    return out, offsets, centres


def queries(centres, n, seed):
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(centres["theta"]), n)
    q = {}
    for b in BR:
        x = centres[b][pick] + 0.5 * rng.standard_normal(centres[b][pick].shape).astype(np.float32)
        q[b] = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return q


def make_store(root, frames, offsets):
    meta = {"videos": len(offsets) - 1, "frames": int(offsets[-1]), "factory": "Flat"}
    save_store(
        root,
        meta,
        [f"v{j}" for j in range(len(offsets) - 1)],
        offsets,
        np.full((int(offsets[-1]), 2), np.nan, np.float32),
        frames,
    )
    return FrameStore.load(root)


def pct(xs):
    xs = np.asarray(xs) * 1000
    return {"median_ms": round(float(np.median(xs)), 3), "p95_ms": round(float(np.percentile(xs, 95)), 3)}


def eval_scoring(frames, offsets, q, L):
    """Brute force as evaluation does it: padded (Nv, L, d) tensors, einsum, masked max, mean."""
    nv = len(offsets) - 1
    V = {b: torch.from_numpy(frames[b]).view(nv, L, -1) for b in BR}

    def one(i):
        return sum((V[b] @ torch.from_numpy(q[b][i])).max(1).values for b in BR) / 2

    def batch(sl):
        return sum(torch.einsum("nd,bld->nbl", torch.from_numpy(q[b][sl]), V[b]).max(-1).values for b in BR) / 2

    return one, batch


def part1(sizes, n_q, batch, noise):
    out = {}
    for nv in sizes:
        frames, offsets, centres = corpus(nv, 384, 128, seed=nv, noise=noise)
        q = queries(centres, max(n_q, batch), seed=1)
        with tempfile.TemporaryDirectory() as tmp:
            store = make_store(Path(tmp), frames, offsets)
            one, many = eval_scoring(frames, offsets, q, 128)
            t_eval = []
            for i in range(n_q):
                t = time.perf_counter()
                one(i)
                t_eval.append(time.perf_counter() - t)
            t = time.perf_counter()
            for s in range(0, batch, 64):
                many(slice(s, s + 64))
            eval_batch = (time.perf_counter() - t) / batch
            t_idx, scored = [], []
            for i in range(n_q):
                t = time.perf_counter()
                _, _, n = search_bounds(store, {b: q[b][i] for b in BR}, 10)
                t_idx.append(time.perf_counter() - t)
                scored.append(n)
            t = time.perf_counter()
            search_bounds_batch(store, {b: q[b][:batch] for b in BR}, 10)
            idx_batch = (time.perf_counter() - t) / batch
        out[str(nv)] = {
            "eval_exact_single": pct(t_eval),
            "eval_exact_batched_ms_per_query": round(eval_batch * 1000, 3),
            "index_exact_single": pct(t_idx),
            "index_exact_batched_ms_per_query": round(idx_batch * 1000, 3),
            "videos_scored_median": int(np.median(scored)),
        }
        print(json.dumps({"videos": nv, **out[str(nv)]}), flush=True)
    return out


class Corpus:
    """The corpus of ``corpus`` streamed: videos are generated in order, a batch at a time, so a
    200,000-video corpus never sits in memory. The event centres of ``keep`` videos are kept (queries)."""

    def __init__(self, nv, d, seed, noise, keep, lens=(16, 80)):
        self.rng = np.random.default_rng(seed)
        self.d, self.noise, self.keep = d, noise, set(int(j) for j in keep)
        self.topics = {b: self.rng.standard_normal((max(20, nv // 10), d)).astype(np.float32) for b in BR}
        self.lens = self.rng.integers(lens[0], lens[1] + 1, nv)
        self.centres = {b: {} for b in BR}
        self.next = 0

    def encode(self, names):
        """The next len(names) videos: ({branch: (sum L, d) unit}, lengths, times), as `grow_index` wants."""
        rng, d = self.rng, self.d
        js = range(self.next, self.next + len(names))
        self.next += len(names)
        out = {}
        for b in BR:
            parts = []
            for j in js:
                n_ev, L = int(rng.integers(2, 5)), int(self.lens[j])
                t = rng.integers(0, len(self.topics[b]), n_ev)
                c = 0.8 * self.topics[b][t] + 0.6 * rng.standard_normal((n_ev, d)).astype(np.float32)
                cut = np.sort(rng.choice(np.arange(1, L), size=min(n_ev - 1, L - 1), replace=False))
                f = c[np.searchsorted(cut, np.arange(L), side="right")]
                f += self.noise * rng.standard_normal((L, d)).astype(np.float32)
                parts.append(f / np.linalg.norm(f, axis=1, keepdims=True))
                if j in self.keep:
                    self.centres[b][j] = c[0]
            out[b] = np.concatenate(parts)
        lengths = [int(self.lens[j]) for j in js]
        return out, lengths, [np.full((n, 2), np.nan, np.float32) for n in lengths]


def query_set(corpus, picks, seed):
    rng = np.random.default_rng(seed)
    q = {}
    for b in BR:
        x = np.stack([corpus.centres[b][int(j)] for j in picks])
        x = x + 0.5 * rng.standard_normal(x.shape).astype(np.float32)
        q[b] = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return q


def memory_status():
    """Peak and current resident memory of this process, MiB (anonymous vs file-backed pages)."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    mib = lambda k: round(int(fields[k].split()[0]) / 1024, 1)  # noqa: E731
    return {"peak_rss_mib": mib("VmHWM"), "rss_anon_mib": mib("RssAnon"), "rss_file_mib": mib("RssFile")}


def do_build(args):
    """Subprocess: stream a corpus into an index folder with the real builder; print JSON."""
    from prvr_cli.index.build import grow_index, plan_meta
    from prvr_cli.index.plan import parse_memory, plan_index
    from prvr_cli.index.store import StoreWriter

    nv, root = args.videos, Path(args.out)
    picks = np.random.default_rng(123).choice(nv, size=2 * args.n_queries, replace=False)
    corpus = Corpus(nv, 256, seed=7, noise=args.frame_noise, keep=picks)
    plan = plan_index(int(corpus.lens.sum()), 256, len(BR), parse_memory(args.memory))
    meta = {"kind": "benchmark", "dim": 256, **plan_meta(plan, None)}
    t = time.perf_counter()
    writer = StoreWriter(root, meta, BR)
    grow_index(root, meta, writer, [f"v{j}" for j in range(nv)], corpus.encode, batch_size=500, chunk_videos=10000)
    seconds = time.perf_counter() - t
    # val (tuning) and test (reported) queries: a noisy event centre of distinct random videos
    np.savez(root / "val_queries.npz", **query_set(corpus, picks[: args.n_queries], seed=1))
    np.savez(root / "test_queries.npz", **query_set(corpus, picks[args.n_queries :], seed=2))
    disk = sum(f.stat().st_size for f in root.iterdir() if not f.name.endswith("queries.npz"))
    out = {"build_seconds": round(seconds, 1), "disk_mib": round(disk / 2**20, 1), "plan": plan.to_dict()}
    out = json.dumps(out | memory_status())
    (root / "build.json").write_text(out)  # --reuse reads it back
    print(out)


def do_qbuild(args):
    """Subprocess: stream the corpus ``do_build`` streams (the same seed, the same vectors) into an
    index whose vectors live in Qdrant (``--backend``: qdrant-edge, in process); print JSON."""
    from prvr_cli.index.build import grow_index
    from prvr_cli.index.plan import Plan
    from prvr_cli.index.qdrant import Location, QdrantWriter
    from prvr_cli.index.store import FORMAT

    nv, root = args.videos, Path(args.out)
    picks = np.random.default_rng(123).choice(nv, size=2 * args.n_queries, replace=False)
    corpus = Corpus(nv, 256, seed=7, noise=args.frame_noise, keep=picks)
    loc = Location(args.backend, path="qdrant")
    plan = Plan("float32", "qdrant", None, f"benchmark: {args.backend}")
    meta = {"kind": "benchmark", "dim": 256, "format": FORMAT, "storage": "float32", "factory": None}
    meta |= {"plan": plan.to_dict(), "backend": loc.to_dict()}
    t = time.perf_counter()
    writer = QdrantWriter(root, meta, BR)
    grow_index(root, meta, writer, [f"v{j}" for j in range(nv)], corpus.encode, batch_size=500, chunk_videos=10000)
    seconds = time.perf_counter() - t
    disk = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
    out = {"build_seconds": round(seconds, 1), "disk_mib": round(disk / 2**20, 1), "backend": loc.to_dict()}
    print(json.dumps(out | memory_status()))


def do_exact(args):
    """Subprocess: the exact top-100 of every val and test query by one batched scan; saved.
    Prints, over the test queries, where the 100th score lies against all videos' scores and
    against their block upper bounds (why exact search cannot prune here)."""
    from prvr_cli.index.search import scan_scores, video_upper_bounds

    store = FrameStore.load(args.index)
    floor = {"kth100": [], "median": [], "p99": [], "bound_median": [], "bound_above_kth": []}
    for split in ("val", "test"):
        z = np.load(Path(args.index) / f"{split}_queries.npz")
        Q = {b: z[b] for b in BR}
        tops = []
        for s in range(0, len(Q["theta"]), 50):
            batch = {b: Q[b][s : s + 50] for b in BR}
            full = scan_scores(store, batch)
            tops.extend(np.lexsort((np.arange(len(full)), -full[:, i]))[:100] for i in range(full.shape[1]))
            if split == "test":
                kth = -np.sort(-full, axis=0)[99]
                ub = video_upper_bounds(store, batch)
                floor["kth100"].extend(kth)
                floor["median"].extend(np.median(full, axis=0))
                floor["p99"].extend(np.percentile(full, 99, axis=0))
                floor["bound_median"].extend(np.median(ub, axis=0))
                floor["bound_above_kth"].extend((ub >= kth[None]).mean(0))
        np.save(Path(args.index) / f"{split}_exact.npy", np.stack(tops))
    out = json.dumps({k: round(float(np.mean(v)), 4) for k, v in floor.items()})
    (Path(args.index) / "noise_floor.json").write_text(out)
    print(out)


def read_bytes(store, videos_scored: float, engine: str) -> int:
    """Bytes one query reads: every table's block summaries (the blocks engine: int8 codes where
    stored; exact search: the float32 directions), for exact search the frames' int8 codes where
    stored (at these sizes the caps prune too little, so their pass always runs), and the rows of
    the videos it scores exactly (at the corpus's mean length)."""
    if engine == "blocks":
        blocks = sum(store.codes[t].nbytes if t in store.codes else store.direction[t].nbytes for t in store.branches)
    else:
        blocks = sum(store.direction[t].nbytes for t in store.branches)
        blocks += sum(c.nbytes for c in store.frame_codes.values()) if videos_scored < store.num_videos else 0
    per_video = sum(store.frames[t][:1].nbytes for t in store.branches) * store.offsets[-1] / store.num_videos
    return int(blocks + videos_scored * per_video)


def do_query(args):
    """Subprocess: time one engine, one query at a time (or batched), on a split; print JSON with
    latency, recall against the saved exact answers, bytes read per query and this process's memory."""
    from prvr_cli.index.search import search_blocks, search_exact

    store = FrameStore.load(args.index)
    if args.float32_blocks:  # the scan of an index built before the int8 codes, on the same index
        from dataclasses import replace

        store = replace(store, codes={})
    if args.no_frame_codes:  # exact search as before the frames' codes, on the same index
        from dataclasses import replace

        store = replace(store, frame_codes={})
    packed = {}
    if args.query_batch == 1:  # one query at a time, as `prvr serve` answers: its block codes packed at start
        t = time.perf_counter()
        store.pack(frames=args.engine == "bounds")  # as `prvr serve --engine <engine>` does
        packed = {
            "pack_seconds": round(time.perf_counter() - t, 2),
            "packed": any(c.packed for c in store.codes.values()),
        }
        if args.engine == "bounds":
            packed["frame_codes_packed"] = any(c.packed for c in store.frame_codes.values())
    answers = Path(args.answers or args.index)  # the local index that holds the queries and exact answers
    z = np.load(answers / f"{args.split}_queries.npz")
    Q = {b: z[b] for b in BR}
    exact = np.load(answers / f"{args.split}_exact.npy")[: args.limit]
    scored = []
    if args.engine == "qdrant":
        from prvr_cli.index.qdrant import search_qdrant

        def run(sl):
            return search_qdrant(store, {b: Q[b][sl] for b in BR}, 100)
    elif args.engine == "blocks":

        def run(sl):
            res = search_blocks(store, {b: Q[b][sl] for b in BR}, 100, args.rescore)
            scored.append(min(max(args.rescore, 100), store.num_videos))
            return res
    else:

        def run(sl):
            (v, s), n = search_exact(store, {b: Q[b][sl] for b in BR}, 100, with_count=True)
            scored.append(n)
            return list(zip(v, s))

    run(slice(0, 1))  # warm: first-touch page faults are not a query's cost
    scored.clear()
    lat, found = [], []
    step = args.query_batch
    for s in range(0, len(exact), step):
        t = time.perf_counter()
        res = run(slice(s, s + step))
        lat.extend([(time.perf_counter() - t) / len(res)] * len(res))
        found.extend(v for v, _ in res)
    r10 = [len(set(v[:10]) & set(e[:10])) / 10 for v, e in zip(found, exact)]
    r100 = [len(set(v[:100]) & set(e[:100])) / 100 for v, e in zip(found, exact)]
    out = {**pct(lat), "recall@10": round(float(np.mean(r10)), 4), "recall@100": round(float(np.mean(r100)), 4)}
    if scored and not store.remote:
        out |= {"videos_scored_mean": round(float(np.mean(scored)), 1)}
        out |= {"read_mib_per_query": round(read_bytes(store, float(np.mean(scored)), args.engine) / 2**20, 2)}
    print(json.dumps(out | packed | memory_status()))


def do_floor(args):
    """Subprocess: the streaming floor, the time to read every stored frame row once (what an exact
    query costs when no bound prunes): the fastest of --repeats passes that touch every byte of the
    frame tables (already in the page cache) and reduce them to one word, by numpy on one core
    and by torch on all of them. Prints JSON."""
    from prvr_cli.core.score import torch_rows

    store = FrameStore.load(args.index)
    words = [np.asarray(store.frames[t]).reshape(-1).view(np.int64) for t in store.branches]
    chunk = 1 << 20  # 8 MiB of words a step

    def numpy_or():
        acc = np.int64(0)
        for w in words:
            for s in range(0, len(w), chunk):
                acc |= np.bitwise_or.reduce(w[s : s + chunk])
        return acc

    def torch_max():
        return max(int(torch_rows(w).max()) for w in words)

    out = {"frame_mib": round(sum(w.nbytes for w in words) / 2**20, 1)}
    out["frame_codes_mib"] = round(sum(c.nbytes for c in store.frame_codes.values()) / 2**20, 1)
    for name, fn in (("numpy_one_core", numpy_or), ("torch_all_cores", torch_max)):
        fn()
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        out[f"{name}_ms"] = round(min(times) * 1000, 2)
    out["floor_ms"] = min(out["numpy_one_core_ms"], out["torch_all_cores_ms"])
    out["gb_per_s"] = round(sum(w.nbytes for w in words) / out["floor_ms"] / 1e6, 2)
    print(json.dumps(out))


def sub(*argv):
    """Run this script's subcommand in a fresh process (its own memory peak); return its JSON."""
    # one query at a time runs as prvr search and serve run it (``query_process``), batches with
    # OpenMP's default as prvr search --queries does; a policy set by hand wins
    one = argv[0] == "_query" and str(dict(zip(argv, argv[1:])).get("--query-batch", 1)) == "1"
    env = QUERY_ENV | dict(os.environ) if one else None
    res = subprocess.run([sys.executable, __file__, *map(str, argv)], capture_output=True, text=True, env=env)
    if res.returncode:
        raise SystemExit(res.stderr)
    return json.loads(res.stdout.strip().splitlines()[-1])


def large(nv, n_q, memory, noise, work, sweep, reuse=False, qdrant=()):
    """Build (streamed) and search a corpus of nv videos; the plan comes from --memory. With
    ``reuse``, an index this script built in ``work`` earlier (its build.json, exact answers and
    noise_floor.json) is searched again instead of rebuilt. ``qdrant``: backends the same corpus is
    also indexed into (``qdrant-edge``), searched with the ``qdrant`` engine."""
    root = Path(work) / f"v{nv}"
    res = {"videos": nv, "dim": 256, "memory_budget": memory}
    if reuse and (root / "build.json").is_file() and (root / "noise_floor.json").is_file():
        res["build"] = json.loads((root / "build.json").read_text())
        res["noise_floor"] = json.loads((root / "noise_floor.json").read_text())
    else:
        shutil.rmtree(root, ignore_errors=True)
        res["build"] = sub(
            "_build", "--videos", nv, "--out", root, "--n-queries", n_q, "--memory", memory, "--frame-noise", noise
        )
        res["noise_floor"] = sub("_exact", "--index", root)  # test-query means
    print(json.dumps({"videos": nv, "build": res["build"]}), flush=True)
    meta = json.loads((root / "index.json").read_text())
    res |= {"frames": meta["frames"], "blocks": meta["blocks"]}
    if sweep:  # choose the blocks engine's settings on val queries only
        res["val_sweep"] = {}
        for rescore in sweep:
            key = f"rescore={rescore}"
            res["val_sweep"][key] = sub(
                "_query", "--index", root, "--split", "val", "--engine", "blocks", "--rescore", rescore
            )
            print(json.dumps({key: res["val_sweep"][key]}), flush=True)
    from prvr_cli.index.search import RESCORE

    for batch in (1, 64):
        key = f"blocks_batch{batch}"
        res[key] = sub(
            "_query",
            "--index",
            root,
            "--split",
            "test",
            "--engine",
            "blocks",
            "--rescore",
            RESCORE,
            "--query-batch",
            batch,
        ) | {"rescore": RESCORE}
        print(json.dumps({key: res[key]}), flush=True)
    for batch in (1, 256):
        key = f"exact_batch{batch}"
        # one query at a time reads every frame per query: 20 queries say enough
        limit = ["--limit", 20] if batch == 1 else []
        res[key] = sub(
            "_query", "--index", root, "--split", "test", "--engine", "bounds", "--query-batch", batch, *limit
        )
        print(json.dumps({key: res[key]}), flush=True)
    # the pair: exact search one query at a time without the frames' codes, on the same index
    key = "exact_batch1_without_frame_codes"
    res[key] = sub(
        "_query", "--index", root, "--split", "test", "--engine", "bounds", "--limit", 20, "--no-frame-codes"
    )
    print(json.dumps({key: res[key]}), flush=True)
    res["streaming_floor"] = sub("_floor", "--index", root)
    res["exact_batch1_over_floor"] = round(res["exact_batch1"]["median_ms"] / res["streaming_floor"]["floor_ms"], 2)
    print(json.dumps({k: res[k] for k in ("streaming_floor", "exact_batch1_over_floor")}), flush=True)
    for kind in qdrant:  # the same corpus with its vectors in Qdrant: exact, recall against the scan above
        qroot = Path(work) / f"v{nv}-{kind}"
        shutil.rmtree(qroot, ignore_errors=True)
        res[f"{kind}_build"] = sub(
            "_qbuild", "--videos", nv, "--out", qroot, "--n-queries", n_q, "--backend", kind, "--frame-noise", noise
        )
        print(json.dumps({f"{kind}_build": res[f"{kind}_build"]}), flush=True)
        key = f"{kind}_batch1"
        res[key] = sub("_query", "--index", qroot, "--answers", root, "--split", "test", "--engine", "qdrant")
        print(json.dumps({key: res[key]}), flush=True)
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "command", nargs="?", default="all", choices=["all", "_build", "_qbuild", "_exact", "_query", "_floor"]
    )
    ap.add_argument("--sizes", default="1000,1500,2000,2500")
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--large", default="50000,200000", help="corpus sizes built and searched at scale")
    ap.add_argument("--large-queries", type=int, default=100)
    ap.add_argument("--memory", default="8G", help="the --memory budget the large indexes are planned for")
    ap.add_argument("--sweep", default="100,200,300", help="blocks engine --rescore values tried on val")
    ap.add_argument("--work", default=None, help="folder to keep the large indexes in (default: a temporary one)")
    ap.add_argument("--skip-table4", action="store_true")
    ap.add_argument("--reuse", action="store_true", help="search the indexes an earlier run left in --work again")
    ap.add_argument(
        "--frame-noise",
        type=float,
        default=0.25,
        help="per-coordinate frame noise around its event centre (0.25: cos ~0.94 to the event)",
    )
    # subcommands (run in their own processes by `all`)
    ap.add_argument("--videos", type=int)
    ap.add_argument("--out")
    ap.add_argument("--index")
    ap.add_argument("--n-queries", type=int)
    ap.add_argument("--split")
    ap.add_argument("--engine")
    ap.add_argument("--query-batch", type=int, default=1)
    ap.add_argument("--limit", type=int, default=None, help="only the first N queries")
    ap.add_argument("--repeats", type=int, default=5, help="_floor: passes timed")
    ap.add_argument("--float32-blocks", action="store_true", help="_query: scan the float32 block table, not its codes")
    ap.add_argument("--no-frame-codes", action="store_true", help="_query: exact search without the frames' int8 codes")
    ap.add_argument("--rescore", type=int, default=300)
    ap.add_argument("--qdrant", default="", help="also index the large corpora into these backends (qdrant-edge)")
    ap.add_argument("--backend", default="qdrant-edge")
    ap.add_argument("--answers", help="_query: the folder with the queries and exact answers (default --index)")
    args = ap.parse_args()
    if args.command != "all":
        {"_build": do_build, "_qbuild": do_qbuild, "_exact": do_exact, "_query": do_query, "_floor": do_floor}[
            args.command
        ](args)
        return
    policy = os.environ.get("OMP_WAIT_POLICY", QUERY_ENV["OMP_WAIT_POLICY"] + " one query at a time, else default")
    out = {"threads": torch.get_num_threads(), "query_omp_wait_policy": policy, "frame_noise": args.frame_noise}
    if not args.skip_table4:
        out["table4"] = part1([int(s) for s in args.sizes.split(",")], args.queries, args.batch, args.frame_noise)
    sweep = [int(x) for x in args.sweep.split(",")] if args.sweep else []
    qdrant = [x for x in args.qdrant.split(",") if x]
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or tmp  # --work: the indexes stay there (re-run a subcommand on them)
        for nv in [int(x) for x in args.large.split(",") if x]:
            out[f"large_{nv}"] = large(
                nv, args.large_queries, args.memory, args.frame_noise, work, sweep, args.reuse, qdrant
            )
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
