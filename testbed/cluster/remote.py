"""Commands on the hosts of a cluster over SSH, with the boards' login code
(testbed.hil.boards.connect / Session: key only, host keys checked, errors that name the host
and the command).  Synchronous wrappers: the callers (the coordinator, tests, the bench) do a
handful of calls per run, each a few milliseconds on a LAN."""

from __future__ import annotations

import asyncio
from typing import Any

from testbed.cluster.hosts import target
from testbed.scenario.cluster import Host


async def _sh(h: Host, script: str, input: str | None, timeout: float, what: str) -> Any:
    from testbed.hil.boards import Session, connect

    t = target(h)
    conn = await connect(t)
    try:
        return await Session(conn, t).sh(script, input=input, timeout=timeout, what=what)
    finally:
        conn.close()
        await conn.wait_closed()


def sh(h: Host, script: str, *, input: str | None = None, timeout: float = 60.0,
       what: str = "") -> str:
    """Run `script` with sh on host `h` (root, or sudo -n ip for a non-root login is the
    caller's business); its stdout; a BoardError naming the host on failure."""
    res = asyncio.run(_sh(h, script, input, timeout, what))
    return str(res.stdout or "")


def sh_all(pairs: list[tuple[Host, str]], *, timeout: float = 60.0,
           what: str = "") -> list[str]:
    """Several hosts at once (one SSH connection each, concurrently)."""
    async def main() -> list[Any]:
        return list(await asyncio.gather(*(_sh(h, s, None, timeout, what) for h, s in pairs)))

    return [str(r.stdout or "") for r in asyncio.run(main())]
