"""uvicorn's HTTP protocol with ``TCP_NODELAY`` on every connection, for ``prvr serve --workers``.

With several workers uvicorn binds the listening socket itself (``socket.socket(family=...)``,
protocol 0), and asyncio sets ``TCP_NODELAY`` only on sockets whose protocol reads as TCP: the
accepted connections keep Nagle's algorithm, and a response written as headers then body waits
for the client's delayed ACK, about 40 ms a request on a keep-alive connection (measured here:
1.6 ms one worker, 48 ms two, for a trivial route). uvicorn imports this module by name in each
worker; nothing else imports it.
"""

from __future__ import annotations

import socket

from uvicorn.protocols.http.auto import AutoHTTPProtocol


class NoDelayProtocol(AutoHTTPProtocol):
    def connection_made(self, transport) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # a socket that refuses the option answers as before
                pass
        super().connection_made(transport)
