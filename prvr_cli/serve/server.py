"""``run_server``: the app of ``app.py`` under uvicorn, in one process or ``workers``, after checking the address."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from prvr_cli.errors import PrvrError
from prvr_cli.serve.app import APP_ENV, create_app, is_loopback


def _check_port(host: str, port: int) -> None:
    """Fail with one line, before loading anything, when the address cannot be bound."""
    if not 0 < port < 65536:
        raise PrvrError(f"--port {port}: must lie in 1-65535")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise PrvrError(f"--host {host}: not an address of this machine ({err.strerror})") from None
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError as err:
            raise PrvrError(f"{host}:{port}: cannot listen there ({err.strerror}); choose another --port") from None


LOOPBACK_NAMES = ["127.0.0.1", "localhost", "[::1]"]


def allowed_host_names(host: str, extra: list[str] | None = None) -> list[str]:
    """The Host headers answered: the loopback names, the address listened on (unless it is
    every address, 0.0.0.0 or ::), and the names the user chose."""
    names = list(LOOPBACK_NAMES)
    if host not in ("0.0.0.0", "::", "") and not is_loopback(host):
        names.append(f"[{host}]" if ":" in host else host)
    names += [n.strip() for n in extra or [] if n.strip()]
    return list(dict.fromkeys(names))


def run_server(
    index: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    device="cpu",
    checkpoint=None,
    clip_pretrained=None,
    videos=None,
    max_k: int = 100,
    log=print,
    allowed_hosts: list[str] | None = None,
    workers: int = 1,
) -> None:
    """Serve ``index`` until interrupted. Anything but a loopback address is warned about: the
    page has no authentication, and anyone who reaches it can search and play the videos. The
    Host check stays on whatever the address: ``allowed_hosts`` adds the names (and addresses)
    the page may be reached by. ``workers``: processes answering requests, each with its own
    searcher (over the local store each maps the same files; over Qdrant each is a client)."""
    try:
        import uvicorn
    except ImportError:
        raise PrvrError("prvr serve needs FastAPI and uvicorn: pip install 'prvr[serve]'") from None
    if workers < 1:
        raise PrvrError(f"--workers {workers}: must be at least 1")
    _check_port(host, port)
    if workers > 1:
        _check_workers(index)
    hosts = allowed_host_names(host, allowed_hosts)
    if not is_loopback(host):
        log(
            f"[yellow]warning:[/yellow] listening on {host}, not on loopback: anyone who can reach this "
            "machine can search the index and play its videos (there is no login); it answers the names "
            f"{', '.join(hosts)} (add others with --allowed-host NAME)"
        )
    shown = f"[{host}]" if ":" in host else host
    if workers > 1:
        args = {"index_dir": str(index), "device": str(device), "max_k": max_k, "allowed_hosts": hosts}
        args |= {
            k: str(v)
            for k, v in (("checkpoint", checkpoint), ("clip_pretrained", clip_pretrained), ("videos", videos))
            if v
        }
        os.environ[APP_ENV] = json.dumps(args)
        log(
            f"serving {index} at http://{shown}:{port}/ with {workers} worker processes (API docs at /docs); "
            "Ctrl-C stops"
        )
        uvicorn.run(
            "prvr_cli.serve.app:app_from_env",
            factory=True,
            host=host,
            port=port,
            log_level="warning",
            workers=workers,
            http="prvr_cli.serve.nodelay:NoDelayProtocol",  # see nodelay.py: Nagle's 40 ms otherwise
        )
        return
    log(f"loading {index} ...")
    app = create_app(index, device, checkpoint, clip_pretrained, videos, max_k, allowed_hosts=hosts)
    log(f"serving {index} at http://{shown}:{port}/ (API docs at /docs); Ctrl-C stops")
    uvicorn.run(app, host=host, port=port, log_level="warning", workers=1)


def _check_workers(index) -> None:
    """Before any worker starts: the index loads, and its vectors can be opened by several
    processes (qdrant-client's local mode locks its folder to one)."""
    from prvr_cli.index.store import FrameStore

    store = FrameStore.load(index)
    if store.remote and store.location.kind == "qdrant-local":
        raise PrvrError(
            f"--workers: {index} keeps its vectors in qdrant-client's local mode, which one process opens at a "
            "time; serve it with --workers 1, or index into qdrant-edge or a Qdrant server"
        )
