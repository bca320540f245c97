"""``run_server``: the app of ``app.py`` under uvicorn, one process, after checking the address."""

from __future__ import annotations

import socket
from pathlib import Path

from prvr_cli.errors import PrvrError
from prvr_cli.serve.app import create_app, is_loopback


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
) -> None:
    """Serve ``index`` until interrupted. Anything but a loopback address is warned about: the
    page has no authentication, and anyone who reaches it can search and play the videos. The
    Host check stays on whatever the address: ``allowed_hosts`` adds the names (and addresses)
    the page may be reached by."""
    try:
        import uvicorn
    except ImportError:
        raise PrvrError("prvr serve needs FastAPI and uvicorn: pip install 'prvr[serve]'") from None
    _check_port(host, port)
    hosts = allowed_host_names(host, allowed_hosts)
    if not is_loopback(host):
        log(
            f"[yellow]warning:[/yellow] listening on {host}, not on loopback: anyone who can reach this "
            "machine can search the index and play its videos (there is no login); it answers the names "
            f"{', '.join(hosts)} (add others with --allowed-host NAME)"
        )
    log(f"loading {index} ...")
    app = create_app(index, device, checkpoint, clip_pretrained, videos, max_k, allowed_hosts=hosts)
    shown = f"[{host}]" if ":" in host else host
    log(f"serving {index} at http://{shown}:{port}/ (API docs at /docs); Ctrl-C stops")
    uvicorn.run(app, host=host, port=port, log_level="warning", workers=1)
