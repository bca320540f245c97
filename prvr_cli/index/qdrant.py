"""The index's vectors in Qdrant: one point per video, exact search over it.

    --backend qdrant --url URL [--collection NAME]     a Qdrant server or cluster (qdrant-client)
    --backend qdrant-edge [--path DIR]                  the Qdrant core in this process (qdrant-edge-py)
    --backend qdrant-local [--path DIR]                 qdrant-client's local mode (a pure-Python stand-in)

The index folder keeps what is small (index.json, whose ``backend`` says where the vectors live;
videos.json and offsets.npy, the id map; the checkpoint, the query bank, sources.json) and the
point of video j holds, per index table t (``store.py``: a frame table per branch, plus gmm2's
clip tables), the video's unit rows as a multivector field ``t`` (DOT, ``MAX_SIM``: one query
vector against a video's rows is the max over them, Eq. 3), and a payload {video, row, frames,
times, source}. Point ids are UUIDs derived from the video ids (``point_id``), so an upload that
is repeated overwrites, never duplicates: a rerun resumes, ``--add`` adds. A point counts once
the id map commits it (``row`` below the committed count); a writer first deletes the points an
interrupted upload left past it.

Search is exact (``search_qdrant``), the threshold algorithm over the tables:
  1. per table t, the top L videos by their exact max over t's rows (``exact`` search, and the
     multivector fields carry no HNSW graph, ``m=0``: a graph over whole multivector documents
     is slow and misses); the L-th score tau_t bounds every video not returned;
  2. the union C of those videos is re-scored server-side in one request: a prefetch per table
     restricted to C (``has_id``, limit |C|, so none is dropped) and a formula over their scores,
     S = sum_t w_t floor_t($score[t]), floor_t = max(s, 0) for a video shorter than the table's
     ``pad_length`` (``core/score.zero_floor``) - explicit defaults, and a count check;
  3. an unseen video scores at most B = sum_t w_t floor_t(tau_t); when the k-th score of C is
     above B the top-k is proven exact, else L grows fourfold.
The hits' rows are then fetched (moments need them) and their scores recomputed here with the
local engines' arithmetic, so a hit's score is the local index's.
"""

from __future__ import annotations

import json
import threading
import uuid
import warnings
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from prvr_cli.atomic import fault
from prvr_cli.errors import PrvrError
from prvr_cli.index.store import SOURCES_FILE, FrameStore, StoreWriter, by_words, finish_commit, table_specs

KINDS = ("qdrant", "qdrant-edge", "qdrant-local")
BACKENDS = ("local", *KINDS)
DEFAULT_COLLECTION = "prvr"
NAMESPACE = uuid.UUID("7b0c7c6e-5a55-4d55-9d0e-7072767200aa")  # fixed: a video's point id never changes
UPSERT_POINTS = 16  # points per upsert request (a video carries all its rows)
FULL_SCAN = 1_000_000_000  # explicit full_scan_threshold: filtered queries never switch to a graph
FIRST = 64  # videos per table in the first round of the threshold algorithm
GROW = 4
SLACK = 1e-5  # float rounding between the engine's arithmetic and ours: the certificate keeps a margin
CACHE_VIDEOS = 4096  # fetched videos kept in memory (the page asks for thumbnails and lengths of its hits)


def point_id(video: str) -> str:
    """The point id of a video: a UUID derived from its id (idempotent uploads)."""
    return str(uuid.uuid5(NAMESPACE, video))


@dataclass(frozen=True)
class Location:
    """Where an index's vectors live (index.json's ``backend``). ``path`` (edge, local) is kept
    relative to the index folder when it lies inside it, so a copied folder still finds it."""

    kind: str
    collection: str = DEFAULT_COLLECTION
    url: str | None = None
    path: str | None = None
    shards: int | None = None  # a server's collection: shards and copies of each (None: the server's default)
    replicas: int | None = None

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def where(self, root: Path | None = None) -> str:
        place = self.url if self.kind == "qdrant" else str(self.resolved(root))
        return f"{self.kind} at {place}, collection {self.collection!r}"

    def resolved(self, root: Path | None) -> Path:
        p = Path(self.path or "qdrant")
        return p if p.is_absolute() or root is None else Path(root) / p


def location(
    kind: str,
    out: Path,
    url: str | None,
    path: Path | None,
    collection: str | None,
    shards: int | None = None,
    replicas: int | None = None,
) -> Location | None:
    """The ``--backend`` options checked (None: the local store)."""
    if kind not in BACKENDS:
        raise PrvrError(f"--backend {kind}: use {', '.join(BACKENDS)}")
    if kind == "local":
        given = [o for o, v in (("--url", url), ("--path", path), ("--qdrant-collection", collection)) if v]
        if given:
            raise PrvrError(f"{', '.join(given)}: only with --backend qdrant, qdrant-edge or qdrant-local")
    if kind != "qdrant" and (shards or replicas):
        raise PrvrError("--shards, --replicas: only with --backend qdrant (a server's collection)")
    if kind == "local":
        return None
    for name, n in (("--shards", shards), ("--replicas", replicas)):
        if n is not None and n < 1:
            raise PrvrError(f"{name} {n}: must be at least 1")
    if kind == "qdrant":
        if not url or path:
            raise PrvrError("--backend qdrant: give the server's --url (e.g. http://localhost:6333), not --path")
        return Location(kind, collection or DEFAULT_COLLECTION, url=url, shards=shards, replicas=replicas)
    if url:
        raise PrvrError(f"--backend {kind}: keeps the vectors in a folder (--path DIR), not at a --url")
    p = Path(path) if path else out / "qdrant"
    try:
        rel = str(p.resolve().relative_to(out.resolve()))
    except ValueError:
        rel = str(p.resolve())
    return Location(kind, collection or DEFAULT_COLLECTION, path=rel)


def stored_location(meta: dict) -> Location | None:
    rec = meta.get("backend")
    return Location(**rec) if rec else None


# --- the engines ------------------------------------------------------------------------------


class Backend(Protocol):
    """One collection, through the edge engine (``EdgeBackend``) or qdrant-client
    (``ClientBackend``): the same calls for both. ``live``: the committed videos (rows below it)."""

    def upsert(self, points: list[tuple[str, dict, dict]]) -> None:
        """(point id, {table: rows}, payload) per video; overwrites a point of the same id."""

    def delete_from(self, row: int) -> None:
        """Drop the points of rows >= ``row`` (an interrupted upload's)."""

    def flush(self, final: bool = False) -> None:
        """Make what was upserted durable (``final``: the build is done; the edge engine merges segments)."""

    def close(self) -> None: ...

    def top(self, asks: list[tuple[str, np.ndarray, int]], live: int) -> list[list[tuple[int, float]]]:
        """Per (table, query (d,), limit): the top rows by the exact max over the table's vectors."""

    def rescore(self, q: dict, specs: dict, ids: list[str], live: int) -> list[tuple[int, float]]:
        """(row, S) of every point in ``ids``, S by the server-side formula over all the tables."""

    def fetch(self, rows: list[int], ids: list[str]) -> dict[int, tuple[dict, dict]]:
        """{row: (payload, {table: rows})} of the points ``ids``."""

    def count(self, live: int) -> int:
        """Points of committed videos (a rerun must leave each video exactly once)."""


def _formula_terms(specs: dict) -> list[tuple[float, int | None]]:
    return [(float(s["weight"]), s["pad_length"]) for s in specs.values()]


class EdgeBackend:
    """The Qdrant core in this process (one shard in a folder). Created without a write-ahead
    log: every commit flushes, and the folder then opens in several processes (``serve --workers``)."""

    def __init__(self, path: Path, specs: dict | None, dim: int | None, create: bool):
        import qdrant_edge as qe

        self.qe, self.path = qe, path
        try:
            if path.is_dir() and any(path.iterdir()):
                self.shard = qe.EdgeShard.load(str(path))
            elif create:
                path.mkdir(parents=True, exist_ok=True)
                self.shard = qe.EdgeShard.create(str(path), self._config(specs, dim))
                self.shard.update(qe.UpdateOperation.create_field_index("row", qe.PayloadSchemaType.Integer))
                self.shard.flush()
            else:
                raise PrvrError(f"{path}: no Qdrant edge shard there (moved? rebuild the index)")
        except PrvrError:
            raise
        except Exception as err:  # the engine raises a bare Exception with a message
            raise PrvrError(f"{path}: the Qdrant edge shard cannot be opened ({_first_line(err)})") from None

    def _config(self, specs: dict, dim: int):
        qe = self.qe
        hnsw = qe.HnswIndexConfig(m=0, ef_construct=100, full_scan_threshold=FULL_SCAN)
        multi = qe.MultiVectorConfig(qe.MultiVectorComparator.MaxSim)
        vectors = {
            t: qe.EdgeVectorParams(size=dim, distance=qe.Distance.Dot, multivector_config=multi, hnsw_config=hnsw)
            for t in specs
        }
        return qe.EdgeConfig(vectors=vectors, hnsw_config=hnsw, wal_enabled=False)

    def _live(self, live: int, extra=None):
        qe = self.qe
        cond = [qe.FieldCondition(key="row", range=qe.RangeFloat(lt=float(live)))]
        return qe.Filter(must=cond + ([extra] if extra is not None else []))

    def upsert(self, points):
        qe = self.qe
        self.shard.update(qe.UpdateOperation.upsert_points([qe.Point(i, v, p) for i, v, p in points]))

    def delete_from(self, row: int) -> None:
        qe = self.qe
        gone = qe.Filter(must=[qe.FieldCondition(key="row", range=qe.RangeFloat(gte=float(row)))])
        self.shard.update(qe.UpdateOperation.delete_points_by_filter(gone))

    def flush(self, final: bool = False) -> None:
        if final:
            self.shard.optimize()  # merge the appended segments: fewer to scan per query
        self.shard.flush()

    def close(self) -> None:
        self.shard.close()

    def top(self, asks, live):
        qe = self.qe
        exact = qe.SearchParams(exact=True)
        reqs = [
            qe.QueryRequest(
                limit=int(n),
                query=qe.Query.Nearest([q.tolist()], using=t),
                filter=self._live(live),
                params=exact,
                with_payload=["row"],
            )
            for t, q, n in asks
        ]
        found = self.shard.query_batch(qe.QueryBatchRequest(reqs))
        return [[(int(p.payload["row"]), float(p.score)) for p in res] for res in found]

    def rescore(self, q, specs, ids, live):
        qe = self.qe
        E, exact = qe.Expression, qe.SearchParams(exact=True)
        only = qe.HasIdCondition(set(ids))
        pre = [
            qe.Prefetch(
                limit=len(ids),
                query=qe.Query.Nearest([q[t].tolist()], using=t),
                params=exact,
                filter=self._live(live, only),
            )
            for t in specs
        ]
        terms = []
        for i, (w, pad) in enumerate(_formula_terms(specs)):
            s = E.Variable(f"$score[{i}]")
            if pad is not None:  # max(s, 0) for a short video, s for the others: max(s, 2 (short - 1))
                short = E.Condition(qe.FieldCondition(key="frames", range=qe.RangeFloat(lt=float(pad))))
                s = E.Max([s, E.Mult([E.Constant(2.0), E.Sum([short, E.Constant(-1.0)])])])
            terms.append(E.Mult([E.Constant(w), s]))
        defaults = {f"$score[{i}]": -1.0 for i in range(len(specs))}  # explicit: never an unscored 0
        formula = qe.Formula(E.Sum(terms), defaults=defaults)
        res = self.shard.query(qe.QueryRequest(limit=len(ids), query=formula, prefetches=pre, with_payload=["row"]))
        return [(int(p.payload["row"]), float(p.score)) for p in res]

    def fetch(self, rows, ids):
        recs = self.shard.retrieve(ids, with_payload=True, with_vector=True)
        return {int(r.payload["row"]): (r.payload, r.vector) for r in recs}

    def count(self, live):
        qe = self.qe
        return int(self.shard.count(qe.CountRequest(filter=self._live(live), exact=True)))


class ClientBackend:
    """qdrant-client: a server at ``url``, or its local mode in a folder (``path``)."""

    def __init__(self, loc: Location, root: Path | None, specs: dict | None, dim: int | None, create: bool):
        from qdrant_client import QdrantClient, models

        self.m, self.name, self.local = models, loc.collection, loc.kind == "qdrant-local"
        where = loc.where(root)
        try:
            if self.local:
                path = loc.resolved(root)
                if not create and not path.is_dir():
                    raise PrvrError(f"{path}: no Qdrant local-mode folder there (moved? rebuild the index)")
                self.client = QdrantClient(path=str(path))
            else:
                self.client = QdrantClient(url=loc.url, timeout=30, check_compatibility=False)
            exists = self.client.collection_exists(self.name)
        except PrvrError:
            raise
        except RuntimeError as err:  # local mode: the folder is another process's
            raise PrvrError(f"{where}: cannot open it ({_first_line(err)})") from None
        except Exception as err:
            raise PrvrError(f"{where}: cannot reach Qdrant there ({_first_line(err)})") from None
        if not exists:
            if not create:
                raise PrvrError(f"{where}: no such collection (a wrong --qdrant-collection, or it was deleted)")
            m = models
            hnsw = m.HnswConfigDiff(m=0, full_scan_threshold=FULL_SCAN)
            multi = m.MultiVectorConfig(comparator=m.MultiVectorComparator.MAX_SIM)
            vectors = {
                t: m.VectorParams(size=dim, distance=m.Distance.DOT, multivector_config=multi, hnsw_config=hnsw)
                for t in specs
            }
            self.client.create_collection(
                self.name,
                vectors_config=vectors,
                hnsw_config=hnsw,
                shard_number=loc.shards,
                replication_factor=loc.replicas,
            )
            if not self.local:  # local mode has no payload indexes (and warns)
                self.client.create_payload_index(self.name, "row", m.PayloadSchemaType.INTEGER, wait=True)

    def _live(self, live: int, extra=None):
        m = self.m
        return m.Filter(must=[m.FieldCondition(key="row", range=m.Range(lt=live)), *([extra] if extra else [])])

    def _params(self):
        return None if self.local else self.m.SearchParams(exact=True)  # local mode is always exact (and warns)

    def upsert(self, points):
        m = self.m
        self.client.upsert(self.name, [m.PointStruct(id=i, vector=v, payload=p) for i, v, p in points], wait=True)

    def delete_from(self, row):
        m = self.m
        gone = m.Filter(must=[m.FieldCondition(key="row", range=m.Range(gte=row))])
        self.client.delete(self.name, m.FilterSelector(filter=gone), wait=True)

    def flush(self, final: bool = False) -> None:
        pass  # every request waited for its result (wait=True)

    def close(self):
        self.client.close()

    def top(self, asks, live):
        m = self.m
        reqs = [
            m.QueryRequest(
                query=[q.tolist()],
                using=t,
                limit=int(n),
                filter=self._live(live),
                params=self._params(),
                with_payload=["row"],
            )
            for t, q, n in asks
        ]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            found = self.client.query_batch_points(self.name, reqs)
        return [[(int(p.payload["row"]), float(p.score)) for p in res.points] for res in found]

    def rescore(self, q, specs, ids, live):
        m = self.m
        only = m.HasIdCondition(has_id=ids)
        pre = [
            m.Prefetch(
                query=[q[t].tolist()], using=t, limit=len(ids), params=self._params(), filter=self._live(live, only)
            )
            for t in specs
        ]
        terms = []
        for i, (w, pad) in enumerate(_formula_terms(specs)):
            s = f"$score[{i}]"
            if pad is not None:
                short = m.FieldCondition(key="frames", range=m.Range(lt=pad))
                s = m.MaxExpression(max=[s, m.MultExpression(mult=[2.0, m.SumExpression(sum=[short, -1.0])])])
            terms.append(m.MultExpression(mult=[w, s]))
        defaults = {f"$score[{i}]": -1.0 for i in range(len(specs))}
        formula = m.FormulaQuery(formula=m.SumExpression(sum=terms), defaults=defaults)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            res = self.client.query_points(self.name, prefetch=pre, query=formula, limit=len(ids), with_payload=["row"])
        return [(int(p.payload["row"]), float(p.score)) for p in res.points]

    def fetch(self, rows, ids):
        recs = self.client.retrieve(self.name, ids, with_payload=True, with_vectors=True)
        return {int(r.payload["row"]): (r.payload, r.vector) for r in recs}

    def count(self, live):
        return int(self.client.count(self.name, count_filter=self._live(live), exact=True).count)


def open_backend(loc: Location, root: Path | None, specs: dict | None = None, dim: int | None = None, create=False):
    """The collection ``loc`` names (made, with ``create``, for ``specs`` tables of ``dim``-d rows);
    a missing package, an unreachable server or a missing collection is one line."""
    if specs and any(by_words(s) for s in specs.values()):
        # MAX_SIM compares one query vector with a video's rows; CSA needs a max per query word
        raise PrvrError(f"--backend {loc.kind}: a RAL index (CSA word queries) is scored by the local store only")
    if specs and any(s.get("spans") for s in specs.values()):
        raise PrvrError(
            f"--backend {loc.kind}: an MSC index (merged clips and their frame spans) is kept by the local store only"
        )
    try:
        if loc.kind == "qdrant-edge":
            import qdrant_edge  # noqa: F401
        else:
            import qdrant_client  # noqa: F401
    except ImportError:
        raise PrvrError(f"--backend {loc.kind} needs the Qdrant packages: pip install 'prvr[qdrant]'") from None
    if loc.kind == "qdrant-edge":
        return EdgeBackend(loc.resolved(root), specs, dim, create)
    return ClientBackend(loc, root, specs, dim, create)


def _first_line(err: Exception) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0][:300]


# --- the store a Qdrant index searches through --------------------------------------------------


class QdrantStore(FrameStore):
    """A ``FrameStore`` whose rows live in Qdrant: the id map and the meta are local, a video's rows
    and times are fetched when a hit needs them (``video_rows``, ``video_times``, cached)."""

    remote = True

    @classmethod
    def from_folder(cls, root: Path, meta: dict, video_ids: list[str], offsets: np.ndarray) -> QdrantStore:
        store = cls(root, tuple(table_specs(meta)), meta, video_ids, offsets, None, {}, {}, {}, {})
        store.location = stored_location(meta)
        store._backend, store._cache, store._lock = None, OrderedDict(), threading.RLock()
        return store

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = open_backend(self.location, self.root)
        return self._backend

    def prefetch(self, videos) -> None:
        """Fetch (in one request) the rows of ``videos`` not cached yet."""
        with self._lock:  # the server asks for a video's length outside its search lock
            self._prefetch(videos)

    def _prefetch(self, videos) -> None:
        todo = [int(v) for v in dict.fromkeys(int(v) for v in videos) if int(v) not in self._cache]
        if not todo:
            return
        got = self.backend.fetch(todo, [point_id(self.video_ids[v]) for v in todo])
        for v in todo:
            if v not in got:
                raise PrvrError(f"{self.location.where(self.root)}: has no point for video {self.video_ids[v]!r}")
            payload, vec = got[v]
            rows = {t: np.asarray(vec[t], np.float32).reshape(-1, int(self.meta["dim"])) for t in self.branches}
            times = payload.get("times")
            times = (
                np.full((int(payload["frames"]), 2), np.nan, np.float32)
                if times is None
                else np.asarray(times, np.float32)
            )
            self._cache[v] = (rows, times)
            while len(self._cache) > CACHE_VIDEOS:
                self._cache.popitem(last=False)

    def _video(self, video: int):
        video = int(video)
        with self._lock:
            if video not in self._cache:
                self._prefetch([video])
            self._cache.move_to_end(video)
            return self._cache[video]

    def video_rows(self, video: int) -> dict[str, np.ndarray]:
        return self._video(video)[0]

    def video_times(self, video: int) -> np.ndarray:
        return self._video(video)[1]

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None


# --- writing ----------------------------------------------------------------------------------


class QdrantWriter(StoreWriter):
    """``StoreWriter`` whose rows go to Qdrant: ``add`` uploads the batch's points, ``commit``
    flushes the collection and then commits the id map (videos.json, offsets.npy, index.json) as
    the local store does. Opening deletes the points an interrupted upload left past the
    committed videos (the local writer truncates its tables), so a rerun ends with exactly the
    committed videos and the ones it adds."""

    def __init__(self, root: Path, meta: dict, branches: tuple[str, ...], store: FrameStore | None = None):
        self.root, self.meta, self.branches = root, meta, branches
        root.mkdir(parents=True, exist_ok=True)
        finish_commit(root)
        self.dim = int(meta["dim"])
        self.ids = list(store.video_ids) if store is not None else []
        self.offsets = [int(x) for x in store.offsets] if store is not None else [0]
        self.nb, self.block_offsets, self.files = {b: 0 for b in branches}, {}, {}
        self.specs = table_specs(meta | {"branches": list(branches)})
        self.adding = bool(store is not None and store.meta.get("complete"))
        self.location = stored_location(meta)
        self.backend = open_backend(self.location, root, self.specs, self.dim, create=True)
        self.backend.delete_from(len(self.ids))
        sources = root / SOURCES_FILE
        self.sources = json.loads(sources.read_text()).get("files", {}) if sources.is_file() else {}

    def _sizes(self) -> dict[str, int]:
        return {}  # no local tables

    def _small_arrays(self) -> dict[str, np.ndarray]:
        return {"offsets.npy": np.asarray(self.offsets, np.int64)}

    def add(self, names, frames, lengths, times):
        clips = int(self.meta.get("clips") or 0)
        upload_points(self.backend, names, frames, lengths, times, self.specs, clips, len(self.ids), self.sources)
        local = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self.offsets.extend((self.n_rows + local[1:]).tolist())
        self.ids.extend(names)

    def _commit(self, complete: bool, extra: dict) -> None:
        self.backend.flush(final=complete)  # the points are durable before the id map counts them
        super()._commit(complete, extra)

    def close(self) -> None:
        self.backend.close()


def upload_points(backend: Backend, names, frames, lengths, times, specs, clips, first_row, sources=None) -> None:
    """The points of a batch of videos (their rows per table, times, source file), ``UPSERT_POINTS``
    per request, each as a ``qdrant:upsert`` fault point (the crash tests)."""
    local = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    points = []
    for i, v in enumerate(names):
        vec = {}
        for t, spec in specs.items():
            a, b = (local[i], local[i + 1]) if spec["kind"] == "frames" else (i * clips, (i + 1) * clips)
            vec[t] = np.asarray(frames[t][a:b], np.float32).tolist()
        tv = np.asarray(times[i], np.float64)
        known = None if np.isnan(tv).any() else tv.tolist()  # JSON has no NaN: no times is null
        payload = {"video": v, "row": first_row + i, "frames": int(lengths[i]), "times": known}
        if sources and v in sources:
            payload["source"] = sources[v]
        points.append((point_id(v), vec, payload))
    for s in range(0, len(points), UPSERT_POINTS):
        backend.upsert(points[s : s + UPSERT_POINTS])
        fault("qdrant:upsert")


# --- search -----------------------------------------------------------------------------------


def local_scores(store: FrameStore, q: dict[str, np.ndarray], videos: np.ndarray) -> np.ndarray:
    """S of ``videos`` (n,) for one query q[t] (d,), from their rows (``video_rows``), with the local
    engines' arithmetic (a float32 product per video, then ``combine``) -> (n,)."""
    per = {t: np.zeros(len(videos), np.float32) for t in store.branches}
    for i, v in enumerate(videos):
        rows = store.video_rows(int(v))
        for t in store.branches:
            per[t][i] = (rows[t] @ q[t][:, None]).max()
    return np.asarray(store.combine(per, videos), dtype=np.float32)


def unseen_bound(specs: dict, tau: dict[str, float]) -> float:
    """The most a video that no table's top-L returned can score: each table's max is at most its
    L-th score tau_t (raised to 0 by the zero floor of a padded table)."""
    total = 0.0
    for t, s in specs.items():
        x = tau[t]
        if s["pad_length"] is not None:
            x = max(x, 0.0)
        total += s["weight"] * x
    return total


def search_qdrant(store: QdrantStore, Q: dict[str, np.ndarray], k: int, first: int = FIRST):
    """Exact top-k for queries Q[t] (B, d) unit over a Qdrant index (module docstring) -> per query
    (videos, scores), score descending then video ascending."""
    backend, specs, n = store.backend, store.specs, store.num_videos
    k = min(k, n)
    found = []
    for i in range(len(next(iter(Q.values())))):
        q = {t: np.ascontiguousarray(Q[t][i], np.float32) for t in store.branches}
        limit = min(n, max(first, 2 * k))
        while True:
            tops = backend.top([(t, q[t], limit) for t in store.branches], n)
            rows = np.unique([r for top in tops for r, _ in top]).astype(np.int64)
            everything = len(rows) >= n or any(len(top) < limit for top in tops)
            scored = backend.rescore(q, specs, [point_id(store.video_ids[r]) for r in rows], n)
            if len(scored) != len(rows):
                raise PrvrError(
                    f"{store.location.where(store.root)}: re-scored {len(scored)} of {len(rows)} candidates "
                    "(points missing from the collection? rebuild the index)"
                )
            s = np.array([x for _, x in scored], np.float64)
            kth = np.sort(s)[::-1][k - 1]
            tau = {t: top[-1][1] for t, top in zip(store.branches, tops)}
            if everything or kth > unseen_bound(specs, tau) + SLACK:
                break
            limit = min(n, limit * GROW)
        # the hits, and every candidate within rounding of the k-th, scored again with our arithmetic
        near = np.array([r for r, x in scored if x >= kth - 10 * SLACK], np.int64)
        store.prefetch(near)
        exact = local_scores(store, q, near)
        order = np.lexsort((near, -exact))[:k]
        found.append((near[order], exact[order]))
    return found
