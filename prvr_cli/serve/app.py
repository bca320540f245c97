"""``create_app``: the search page and its JSON API over one index, as a FastAPI app.

The searcher (model or CLIP text tower, frames, FAISS) loads once, when the app is made; requests
share it under a lock (a search takes milliseconds, and the lock keeps its lazily loaded parts
and torch out of races). ``prvr serve --workers N`` runs N processes, each making its own app
(``app_from_env``), so N searches run at once. Thumbnails are decoded once and cached beside the index. Media and
thumbnails are looked up by video id in the index's record of source files, and a file is served
only when it really lies inside the recorded videos folder: no request names a path.

Routes: ``/`` the page; ``/api/info``; ``/api/search?q=&k=`` (or ``query_id=``);
``/api/videos/{id}``; ``/thumbs/{id}.jpg?t=`` seconds; ``/media/{id}`` the source video (with
range requests, so the player can seek); ``/report`` the training run's report; ``/docs`` OpenAPI.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import threading
from pathlib import Path
from urllib.parse import quote

from prvr_cli.atomic import json_safe
from prvr_cli.errors import PrvrError
from prvr_cli.index.searcher import Searcher
from prvr_cli.index.store import SOURCES_FILE, source_files
from prvr_cli.serve.thumbs import ThumbnailCache

MAX_K = 100
MAX_SECONDS = 86400.0  # thumbnail times are clamped to a video's length, or to this without one
MAX_QUERY_CHARS = 500
STATIC = Path(__file__).parent / "static"
REPORT_FILE = "report.html"  # what `prvr report RUN` writes into the run folder by default
log = logging.getLogger("prvr.serve")

# the page loads nothing from elsewhere: its script, style, pictures and media all come from here
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def inline_policy(html: str) -> str:
    """The page's policy for a page with inline scripts and styles (the report, the API docs): the
    inline blocks it holds are allowed by their hashes, nothing else inline."""
    import base64
    import hashlib
    import re

    def hashes(tag: str) -> str:
        blocks = re.findall(rf"<{tag}\b[^>]*>(.*?)</{tag}>", html, flags=re.S | re.I)
        return "".join(
            f" 'sha256-{base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()}'" for b in blocks if b.strip()
        )

    return PAGE_POLICY.replace("script-src 'self'", "script-src 'self'" + hashes("script")).replace(
        "style-src 'self'", "style-src 'self'" + hashes("style")
    )


MEDIA_TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".webm": "video/webm", ".mov": "video/quicktime"}


def is_loopback(host: str) -> bool:
    """True for names and addresses only this machine can reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Library:
    """The index's videos as the page sees them: hits with links, source files (inside the
    videos folder only), thumbnails. ``videos``: the folder the videos are in now, if it moved."""

    def __init__(self, searcher: Searcher, videos: str | Path | None = None, max_k: int = MAX_K):
        self.searcher = searcher
        self.store = searcher.store
        self.max_k = max_k
        self.rows = {v: j for j, v in enumerate(self.store.video_ids)}
        self.folder: Path | None = None
        self.files: dict[str, Path] = {}
        if (self.store.root / SOURCES_FILE).is_file():
            folder, self.files = source_files(self.store.root, videos)
            self.folder = folder.resolve()
        self.thumbs = ThumbnailCache(self.store.root / "thumbs")
        self.has_times = bool(self.store.meta.get("has_times"))
        self.lock = threading.Lock()
        ckpt = self.store.meta.get("checkpoint")
        self.report = Path(ckpt).parent / REPORT_FILE if ckpt else None

    def source(self, video: str) -> tuple[Path | None, str | None]:
        """(the video's file, None), or (None, why it cannot be played)."""
        if video not in self.rows:
            return None, f"no video {video!r} in this index"
        if self.folder is None:
            return None, "the index records no source files (synthetic features, or features made outside prvr)"
        path = self.files.get(video)
        if path is None:
            return None, f"no source file on record for {video!r}"
        real = path.resolve()  # a symlink or '..' that leads out of the folder is not followed
        if not real.is_relative_to(self.folder):
            return None, f"{path.name}: lies outside the videos folder; not served"
        if not real.is_file():
            return None, f"{path}: the source video is not there (moved? start prvr serve with --videos DIR)"
        return real, None

    def duration(self, video: str) -> float | None:
        """Seconds to the end of the video's last indexed frame (None without frame times)."""
        if not self.has_times:
            return None
        j = self.rows[video]
        end = float(self.store.video_times(j)[-1, 1])
        return end if math.isfinite(end) else None

    def links(self, video: str, at: float | None) -> dict:
        """The URLs the page needs for a video: its media (None with the reason when it cannot be
        played) and a thumbnail at ``at`` seconds (None without a source or a time)."""
        _, why = self.source(video)
        ref = quote(video, safe="")
        return {
            "media": None if why else f"/media/{ref}",
            "unavailable": why,
            "thumbnail": None if why or at is None else f"/thumbs/{ref}.jpg?t={round(at, 1)}",
        }

    def search(self, q: str | None, query_id: str | None, k: int) -> dict:
        """One query (free text or a stored caption id) -> {"query", "results": [hit + links]}."""
        if (q is None) == (query_id is None):
            raise PrvrError("give either q (free text) or query_id (a stored caption id)")
        text = q if q is not None else query_id
        with self.lock:
            answer = self.searcher.query(
                text, k, ids=query_id is not None, max_k=self.max_k, max_chars=MAX_QUERY_CHARS
            )[0]
        if answer.error:
            raise PrvrError(answer.error)
        results = []
        for d in answer.results():
            at = sum(d["best_time"]) / 2 if d["best_time"] and all(map(math.isfinite, d["best_time"])) else None
            results.append(d | self.links(d["video"], at))
        # strict JSON: a score that is not finite (a video of NaN frames ranks last as -inf) reads null
        return json_safe({"query": text, "query_id": query_id is not None, "results": results})

    def video(self, video: str) -> dict:
        """{"video", "frames" (indexed rows), "duration" (seconds or None)} and its links; KeyError
        for a video the index does not hold."""
        if video not in self.rows:
            raise KeyError(video)
        j = self.rows[video]
        duration = self.duration(video)
        frames = int(self.store.offsets[j + 1] - self.store.offsets[j])
        return {"video": video, "frames": frames, "duration": duration} | self.links(
            video, duration / 2 if duration else None
        )

    def info(self) -> dict:
        meta = self.store.meta
        return {
            "index": self.store.root.name,
            "kind": meta.get("kind", "trained"),
            "branches": list(meta.get("branches", self.store.branches)),
            "videos": len(self.rows),
            "frames": int(meta.get("frames", 0)),
            "has_times": self.has_times,
            "sources": self.folder is not None,
            "stored_queries": self.searcher.queries.stored_queries,
            "report": "/report" if self.report is not None and self.report.is_file() else None,
            "max_k": self.max_k,
            "max_query_chars": MAX_QUERY_CHARS,
        }


def _error(status: int, message: str):
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": message}, status_code=status)


def create_app(
    index_dir: str | Path,
    device="cpu",
    checkpoint: str | Path | None = None,
    clip_pretrained: str | None = None,
    videos: str | Path | None = None,
    max_k: int = MAX_K,
    allowed_hosts: list[str] | None = None,
    searcher: Searcher | None = None,
):
    """The app for the index in ``index_dir`` (arguments as for ``Searcher``; ``searcher`` one
    already loaded). ``allowed_hosts``: the Host headers answered (default: loopback names), which
    keeps a web page elsewhere from reaching a local server through DNS rebinding."""
    from fastapi import FastAPI, Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, HTMLResponse
    from fastapi.staticfiles import StaticFiles
    from starlette.exceptions import HTTPException as StarletteHTTPException
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    from prvr_cli.features.clips import ClipError

    searcher = searcher or Searcher(index_dir, device, checkpoint, clip_pretrained)
    searcher.warm()
    lib = Library(searcher, videos, max_k)
    app = FastAPI(title="prvr", summary="Partially relevant video retrieval: search one index", docs_url=None)
    app.state.library = lib
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts or ["127.0.0.1", "localhost", "[::1]"])

    @app.exception_handler(PrvrError)
    async def _bad_input(request: Request, err: PrvrError):
        return _error(400, str(err))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError):
        first = err.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "request"
        return _error(422, f"{where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, err: StarletteHTTPException):
        return _error(err.status_code, str(err.detail))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, err: Exception):
        log.exception("error answering %s", request.url.path)  # the trace stays in the server's log
        return _error(500, f"internal error ({type(err).__name__}); see the server's log")

    @app.middleware("http")
    async def _headers(request: Request, call_next):
        # another site's page may not load our pictures, media or answers (it would learn which ids exist)
        if request.headers.get("sec-fetch-site") == "cross-site":
            response = _error(403, "cross-site requests are refused")
        else:
            response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("Cross-Origin-Resource-Policy", "same-origin")
        return response

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page():
        return HTMLResponse((STATIC / "index.html").read_text(), headers={"Content-Security-Policy": PAGE_POLICY})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/info")
    def info() -> dict:
        """What the index holds and what the page can offer."""
        return lib.info()

    @app.get("/api/search")
    def search(
        q: str | None = Query(None, description="free text"),
        query_id: str | None = Query(None, description="a stored caption id of the indexed dataset"),
        k: int = Query(10, description=f"number of videos, 1 to {max_k}"),
    ) -> dict:
        """Ranked videos: the ``prvr search --json`` result of each hit, plus the page's links
        (``media``, ``thumbnail``, or ``unavailable``: why the video cannot be played)."""
        return lib.search(q, query_id, k)

    @app.get("/api/videos/{video:path}")
    def video(video: str) -> dict:
        """One indexed video: frames, duration (seconds, when the index has frame times), links."""
        try:
            return lib.video(video)
        except KeyError:
            return _error(404, f"no video {video!r} in this index")

    @app.get("/thumbs/{video:path}.jpg", include_in_schema=False)
    def thumbnail(video: str, t: float = Query(..., description="seconds")):
        path, why = lib.source(video)
        if why:
            return _error(404, why)
        if not math.isfinite(t) or t < 0:
            return _error(422, f"t={t}: must be a time in seconds >= 0")
        # clamped to the video's length (a day when unknown) and quantised by the cache: a
        # request past the end reuses the last picture instead of decoding (and caching) a new one
        t = min(t, lib.duration(video) or MAX_SECONDS)
        try:
            jpg = lib.thumbs.get(video, path, t)
        except ClipError as err:
            return _error(404, str(err))
        return FileResponse(jpg, media_type="image/jpeg", headers={"Cache-Control": "max-age=86400"})

    @app.get("/media/{video:path}", include_in_schema=False)
    def media(video: str):
        path, why = lib.source(video)
        if why:
            return _error(404, why)
        return FileResponse(path, media_type=MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream"))

    @app.get("/report", include_in_schema=False)
    def report():
        if lib.report is None or not lib.report.is_file():
            where = f" (run `prvr report {lib.report.parent}`)" if lib.report is not None else ""
            return _error(404, f"no report of the training run{where}")
        html = lib.report.read_text(encoding="utf-8")
        return HTMLResponse(html, headers={"Content-Security-Policy": inline_policy(html)})

    _docs(app)
    return app


def _docs(app) -> None:
    """OpenAPI docs at /docs from a local copy of Swagger UI (the one the fastapi-offline package
    ships), so they work offline; without it, /docs says so and /openapi.json is still there."""
    from fastapi.openapi.docs import get_swagger_ui_html

    try:
        import fastapi_offline
    except ImportError:
        fastapi_offline = None

    if fastapi_offline is not None:
        from fastapi.staticfiles import StaticFiles

        assets = Path(fastapi_offline.__file__).parent / "static"
        app.mount("/docs-assets", StaticFiles(directory=assets), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs():
        if fastapi_offline is None:
            return _error(
                404, "API docs need fastapi-offline (pip install 'prvr[serve]'); the schema is at /openapi.json"
            )
        page = get_swagger_ui_html(
            openapi_url=app.openapi_url,
            title="prvr API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="data:,",
        )
        page.headers["Content-Security-Policy"] = inline_policy(page.body.decode())
        return page


APP_ENV = "PRVR_SERVE_APP"  # the arguments of ``create_app``, as JSON, for each worker process


def app_from_env():
    """``create_app`` of the arguments ``run_server`` left in the environment: what each of
    ``prvr serve --workers N``'s processes calls (uvicorn imports it by name)."""
    import json
    import os

    return create_app(**json.loads(os.environ[APP_ENV]))
