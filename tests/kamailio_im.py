"""Kamailio 5.6 as registrar/proxy in front of the pyim IM server, for the tests.

:class:`KamailioFrontend` runs deploy/kamailio/im-frontend.cfg the way
:class:`peers.Kamailio` runs proxy-registrar.cfg (it is a subclass: same folder layout,
free ports, readiness by OPTIONS over UDP and TCP, JSON-RPC, stop by PID, log in the
report of a failed test), with ``IM_SERVER`` pointing at the server's UDP listener::

    kport = free_port("both")           # the server's config needs the proxy's port
    server = ImServer(ServerConfig(proxy=f"sip:127.0.0.1:{kport}",
                                   trusted_proxies=("127.0.0.1",), ...))
    await server.start()
    with KamailioFrontend(tmp_path / "k", server.sip.local_address("udp")[1],
                          port=kport, extra_users=USERS) as kamailio:
        ...

Start it from the main thread (the peer's parent-death signal follows that thread).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from peers import KAMAILIO_DIR, LOOPBACK, Kamailio

FRONTEND_CFG = KAMAILIO_DIR / "im-frontend.cfg"


class KamailioFrontend(Kamailio):
    """im-frontend.cfg on 127.0.0.1: registrar for the domain 127.0.0.1, replicating
    REGISTERs to the IM server at ``LOOPBACK:im_server_port`` (UDP) and routing chat
    INVITEs and MESSAGEs to it; the server's own requests go to the users' devices."""

    name = "kamailio-im"

    def __init__(
        self,
        workdir: Path,
        im_server_port: int,
        *,
        im_server_host: str = LOOPBACK,
        defines: Mapping[str, str | None] | None = None,
        **kwargs: Any,
    ) -> None:
        self.im_server = f"sip:{im_server_host}:{im_server_port}"
        merged = {"IM_SERVER": f'"{self.im_server}"', **(defines or {})}
        super().__init__(workdir, defines=merged, **kwargs)
        self.frontend_cfg = self.workdir / "im-frontend.cfg"

    def command(self) -> list[str]:
        cmd = super().command()
        cmd[cmd.index("-f") + 1] = str(self.frontend_cfg)
        return cmd

    def start(self) -> KamailioFrontend:
        self.workdir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(FRONTEND_CFG, self.frontend_cfg)
        super().start()
        return self

    def __enter__(self) -> KamailioFrontend:
        return self.start()

    def aor(self, user: str) -> str:
        return f"sip:{user}@{LOOPBACK}"
