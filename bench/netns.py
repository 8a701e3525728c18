"""Workers on networks of their own, for ``bench/scale.py --netns``: what several machines
look like, on one.

Each worker gets a Linux network namespace with one veth link to the host (10.77.<i>.2 in
the namespace, 10.77.<i>.1 on the host) and nothing else: no loopback path to the host's
services. The broker and database stay on the host's 127.0.0.1; a small TCP relay on each
link's host address carries the worker's connections to them, as a network between two
machines would. Needs root (``ip netns``); everything is removed afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import threading
from collections.abc import Iterator, Sequence

PREFIX = "imgscale"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@contextlib.contextmanager
def namespaces(count: int, ports: Sequence[int]) -> Iterator[list[tuple[list[str], str]]]:
    """``count`` namespaces, each with relays of ``ports`` (host 127.0.0.1) on its link.

    Yields, per namespace, the command prefix that runs a process in it and the address it
    reaches the host's services at (same port numbers).
    """
    made: list[int] = []
    loop = asyncio.new_event_loop()
    servers: list[asyncio.base_events.Server] = []
    thread = threading.Thread(target=loop.run_forever, name="relays", daemon=True)
    thread.start()
    try:
        out = []
        for i in range(count):
            name, host, inner = f"{PREFIX}{i}", f"10.77.{i}.1", f"10.77.{i}.2"
            _ip("netns", "add", name)
            made.append(i)
            _ip("link", "add", f"{PREFIX}h{i}", "type", "veth", "peer", "name", f"{PREFIX}n{i}")
            _ip("link", "set", f"{PREFIX}n{i}", "netns", name)
            _ip("addr", "add", f"{host}/24", "dev", f"{PREFIX}h{i}")
            _ip("link", "set", f"{PREFIX}h{i}", "up")
            _ip("netns", "exec", name, "ip", "addr", "add", f"{inner}/24", "dev", f"{PREFIX}n{i}")
            _ip("netns", "exec", name, "ip", "link", "set", f"{PREFIX}n{i}", "up")
            _ip("netns", "exec", name, "ip", "link", "set", "lo", "up")
            for port in ports:
                server = asyncio.run_coroutine_threadsafe(_relay(host, port), loop).result(10)
                servers.append(server)
            out.append((["ip", "netns", "exec", name], host))
        yield out
    finally:
        for server in servers:
            loop.call_soon_threadsafe(server.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        for i in made:
            with contextlib.suppress(subprocess.CalledProcessError):
                _ip("link", "del", f"{PREFIX}h{i}")
            with contextlib.suppress(subprocess.CalledProcessError):
                _ip("netns", "del", f"{PREFIX}{i}")


async def _relay(host: str, port: int) -> asyncio.base_events.Server:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    return await asyncio.start_server(serve, host, port)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()
