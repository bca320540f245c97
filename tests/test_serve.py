"""The search server's API through FastAPI's test client, on the demo's index (see conftest)."""

import json
import shutil
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from helpers import prvr

from prvr_cli.errors import PrvrError
from prvr_cli.index.searcher import Searcher
from prvr_cli.serve.app import MAX_QUERY_CHARS, STATIC, create_app, is_loopback
from prvr_cli.serve.server import _check_port

fastapi = pytest.importorskip("fastapi", reason="the serve extra is part of the test set-up")
from fastapi.testclient import TestClient  # noqa: E402


def client(index, **kw) -> TestClient:
    return TestClient(create_app(index, **kw), base_url="http://127.0.0.1", raise_server_exceptions=False)


@pytest.fixture(scope="module")
def demo(demo_run):
    work, summary = demo_run
    return work, summary, client(work / "index")


def test_info_and_page(demo):
    work, _, c = demo
    info = c.get("/api/info").json()
    videos = json.loads((work / "index" / "videos.json").read_text())
    assert info == {
        "index": "index",
        "kind": "trained",
        "branches": ["theta", "phi"],
        "videos": len(videos),
        "frames": json.loads((work / "index" / "index.json").read_text())["frames"],
        "has_times": True,
        "sources": True,
        "stored_queries": True,
        "report": "/report",  # the demo wrote the ARL run's report
        "max_k": 100,
        "max_query_chars": MAX_QUERY_CHARS,
    }
    report = c.get("/report")
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
    assert report.content == (work / "runs" / "arl" / "report.html").read_bytes()
    page = c.get("/")
    assert page.status_code == 200 and "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    # offline: the page and its files name nothing outside this server
    for f in STATIC.iterdir():
        assert "http://" not in f.read_text() and "https://" not in f.read_text(), f
    assert c.get("/static/app.js").status_code == 200
    docs = c.get("/docs")
    assert docs.status_code == 200 and "/docs-assets/swagger-ui-bundle.js" in docs.text
    assert c.get("/docs-assets/swagger-ui-bundle.js").status_code == 200
    assert "/api/search" in c.get("/openapi.json").json()["paths"]


def test_search_answers_as_prvr_search_does_with_links(demo):
    work, summary, c = demo
    text = summary["free_text"]["text"]
    answer = c.get("/api/search", params={"q": text, "k": 5}).json()
    searcher = Searcher(work / "index")
    want = [h.to_dict(r) for r, h in enumerate(searcher.search(searcher.encode_texts([text]), 5)[0], 1)]
    assert answer["query"] == text and answer["query_id"] is False
    got = answer["results"]
    assert [{k: h[k] for k in want[0]} for h in got] == want
    for h in got:
        assert h["media"] == f"/media/{h['video']}" and h["unavailable"] is None
        assert h["thumbnail"] == f"/thumbs/{h['video']}.jpg?t={round(sum(h['best_time']) / 2, 1)}"

    # a stored query by caption id
    cap = summary["searches"][0]["query"]
    by_id = c.get("/api/search", params={"query_id": cap, "k": 3}).json()
    assert [h["video"] for h in by_id["results"]] == [h["video"] for h in summary["searches"][0]["top"]]


def test_thumbnails_are_decoded_once_and_media_seeks(demo):
    work, summary, c = demo
    hit = c.get("/api/search", params={"q": summary["free_text"]["text"], "k": 1}).json()["results"][0]
    first = c.get(hit["thumbnail"])
    assert first.status_code == 200 and first.headers["content-type"] == "image/jpeg"
    assert first.content[:3] == b"\xff\xd8\xff"
    cached = list((work / "index" / "thumbs").rglob("*.jpg"))
    assert len(cached) >= 1
    stamps = {p: p.stat().st_mtime_ns for p in cached}
    assert c.get(hit["thumbnail"]).content == first.content
    assert {p: p.stat().st_mtime_ns for p in cached} == stamps  # read from disk, not decoded again

    src = work / "videos" / f"{hit['video']}.mp4"
    part = c.get(hit["media"], headers={"Range": "bytes=10-109"})
    assert part.status_code == 206 and part.content == src.read_bytes()[10:110]
    assert part.headers["content-type"] == "video/mp4"
    whole = c.get(f"/api/videos/{hit['video']}").json()
    assert whole["media"] == hit["media"] and whole["duration"] > 0 and whole["frames"] > 0


@pytest.mark.parametrize(
    "params, status, says",
    [
        ({"q": ""}, 400, "empty query"),
        ({"q": "   "}, 400, "empty query"),
        ({"q": "a" * (MAX_QUERY_CHARS + 1)}, 400, "query too long"),
        ({"q": "the red ball", "k": 0}, 400, "-k 0: must be between 1 and 100"),
        ({"q": "the red ball", "k": 101}, 400, "-k 101"),
        ({"q": "the red ball", "k": "ten"}, 422, "k:"),
        ({}, 400, "give either q"),
        ({"q": "x", "query_id": "y"}, 400, "give either q"),
        ({"q": "<script>alert(1)</script> zebra"}, 400, "unknown words"),
        ({"query_id": "no-such-caption"}, 400, "no stored query"),
    ],
)
def test_bad_queries_get_a_json_error(demo, params, status, says):
    r = demo[2].get("/api/search", params=params)
    assert r.status_code == status and r.headers["content-type"] == "application/json"
    assert says in r.json()["error"] and "Traceback" not in r.text


def test_unexpected_failures_answer_json_without_a_trace(demo):
    work = demo[0]
    searcher = Searcher(work / "index")

    def broken(*a, **k):
        raise RuntimeError("secret internals")

    searcher.search = broken
    c = TestClient(
        create_app(work / "index", searcher=searcher), base_url="http://127.0.0.1", raise_server_exceptions=False
    )
    r = c.get("/api/search", params={"q": demo[1]["free_text"]["text"]})
    assert r.status_code == 500 and r.json() == {"error": "internal error (RuntimeError); see the server's log"}


def test_only_loopback_host_headers_are_answered(demo):
    assert demo[2].get("/api/info", headers={"host": "attacker.example"}).status_code == 400
    assert demo[2].get("/api/info", headers={"host": "localhost:8000"}).status_code == 200
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.0.0.2")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("example.org")


@pytest.fixture()
def tampered(demo, tmp_path):
    """A copy of the demo index whose source record points out of its videos folder."""
    work = demo[0]
    index = tmp_path / "index"
    shutil.copytree(work / "index", index, ignore=shutil.ignore_patterns("thumbs"))
    folder = tmp_path / "videos"
    folder.mkdir()
    secret = tmp_path / "secret.mp4"
    secret.write_bytes(b"not for the web")
    vids = json.loads((index / "videos.json").read_text())
    shutil.copy(work / "videos" / f"{vids[0]}.mp4", folder / "ok.mp4")
    (folder / "link.mp4").symlink_to(secret)
    files = {vids[0]: "ok.mp4", vids[1]: "../secret.mp4", vids[2]: str(secret), vids[3]: "link.mp4"}
    (index / "sources.json").write_text(json.dumps({"root": str(folder), "files": files}))
    return index, vids, folder


def test_media_never_leaves_the_videos_folder(tampered):
    index, vids, folder = tampered
    c = client(index)
    assert c.get(f"/media/{vids[0]}").content == (folder / "ok.mp4").read_bytes()
    for v in vids[1:4]:
        r = c.get(f"/media/{v}")
        assert r.status_code == 404 and b"not for the web" not in r.content
        assert "outside the videos folder" in r.json()["error"]
        assert c.get(f"/thumbs/{v}.jpg", params={"t": 1}).status_code == 404
        assert c.get(f"/api/videos/{v}").json()["media"] is None
    for attempt in [
        "/media/..%2Fsecret.mp4",
        "/media/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
        "/media/../../etc/passwd",
        "/media/%2Fetc%2Fpasswd",
        "/thumbs/..%2F..%2Fsecret.jpg?t=1",
        "/static/..%2Fapp.py",
        "/static/../app.py",
        "/docs-assets/..%2F..%2F__init__.py",
    ]:
        r = c.get(attempt)
        assert r.status_code == 404, attempt
        assert b"not for the web" not in r.content and b"import" not in r.content and b"root:" not in r.content


def test_moved_videos_say_so_and_are_found_with_videos(tampered, tmp_path):
    index, vids, folder = tampered
    (index / "sources.json").write_text(json.dumps({"root": str(folder), "files": {vids[0]: "ok.mp4"}}))
    moved = tmp_path / "moved"
    folder.rename(moved)
    gone = client(index).get(f"/api/videos/{vids[0]}").json()
    assert gone["media"] is None and "not there" in gone["unavailable"] and gone["thumbnail"] is None
    assert client(index, videos=moved).get(f"/media/{vids[0]}").status_code == 200
    assert "no source file on record" in client(index, videos=moved).get(f"/api/videos/{vids[1]}").json()["unavailable"]


def test_concurrent_requests_get_the_answers_of_sequential_ones(demo):
    from prvr_cli.data.layout import Layout
    from prvr_cli.data.synth import phrase_topics

    c = demo[2]
    queries = [f"the {p}" for p in phrase_topics(Layout(demo[0] / "data", "synth"))[:6]]
    alone = {q: c.get("/api/search", params={"q": q, "k": 7}).json() for q in queries}
    assert all("results" in a for a in alone.values())
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda q: (q, c.get("/api/search", params={"q": q, "k": 7}).json()), queries * 4))
    assert all(alone[q] == got for q, got in together)


def test_a_busy_port_is_refused_before_loading():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(PrvrError, match=f"127.0.0.1:{port}: cannot listen there"):
            _check_port("127.0.0.1", port)
    with pytest.raises(PrvrError, match="--port 0"):
        _check_port("127.0.0.1", 0)


@pytest.mark.slow
def test_serve_cli_names_a_bad_index_in_one_line(tmp_path):
    res = prvr("serve", tmp_path / "none", "--port", "0", process=True)
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert res.stderr.strip().count("\n") == 0 and "error:" in res.stderr


def test_no_times_no_pictures(tmp_path, demo):
    """An index without frame times or sources (synthetic features) still searches; cards say why there is no video."""
    index = tmp_path / "index"
    shutil.copytree(demo[0] / "index", index, ignore=shutil.ignore_patterns("thumbs", "sources.json"))
    meta = json.loads((index / "index.json").read_text())
    (index / "index.json").write_text(json.dumps(meta | {"has_times": False}))
    times = np.fromfile(index / "times.f32", np.float32)  # the raw (N, 2) table of frame times
    np.full_like(times, np.nan).tofile(index / "times.f32")
    c = client(index)
    assert c.get("/api/info").json()["sources"] is False
    hit = c.get("/api/search", params={"q": demo[1]["free_text"]["text"], "k": 1}).json()["results"][0]
    assert hit["media"] is None and hit["thumbnail"] is None and "no source files" in hit["unavailable"]
    assert c.get(f"/api/videos/{hit['video']}").json()["duration"] is None


def test_static_files_exist():
    assert {p.name for p in Path(STATIC).iterdir()} >= {"index.html", "app.js", "style.css"}
