"""A TCP proxy on loopback that adds a delay each way: `python tests/support/delay_proxy.py
TARGET_PORT DELAY_MS [LISTEN_PORT] [--who]`, printing `ready PORT` once it listens.

Each chunk read from one side is written to the other `DELAY_MS` later, in order, so a round trip
through it costs 2 x DELAY_MS more (the far-away MySQL of bench/bench_fleet.py). It is not a real
network: no loss, no jitter, no bandwidth limit. SIGSTOP it and every connection through it hangs.

A partition the proxy can report on (tests/test_fleet_outage.py): SIGUSR1 holds every
connection (new ones are accepted, as a frozen peer's kernel accepts them, and wait; no byte goes
either way), SIGUSR2 lets them go on; it prints `partitioned` or `healed` once switched. With
`--who` it prints `conn PID SID` for each connection it accepts: the process at the other end and
its session (found through /proc while the client waits for the server's greeting; 0 0 when it
cannot be found), so a test can tell which process connected.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path


async def _pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float, link: asyncio.Event
) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, data = await queue.get()
            if not data:
                break
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            await link.wait()  # partitioned: held until healed
            writer.write(data)
            await writer.drain()
        writer.close()

    delivering = asyncio.create_task(deliver())
    try:
        while data := await reader.read(65536):
            queue.put_nowait((loop.time() + delay, data))
    except ConnectionError:
        pass
    queue.put_nowait((0.0, b""))
    try:
        await delivering
    except ConnectionError:
        pass


def _no_delay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _peer_process(peer_port: int, our_port: int) -> tuple[int, int]:
    """(pid, session id) of the process holding the loopback socket `peer_port` -> `our_port`."""
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1], fields[2]
        if int(local.split(":")[1], 16) == peer_port and int(remote.split(":")[1], 16) == our_port:
            inode = fields[9]
            break
    if inode is None:
        return 0, 0
    wanted = f"socket:[{inode}]"
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                if os.readlink(fd) == wanted:
                    pid = int(entry.name)
                    return pid, os.getsid(pid)
        except OSError:  # gone, or not ours to read
            continue
    return 0, 0


async def serve(target_port: int, delay: float, listen_port: int = 0, who: bool = False) -> None:
    link = asyncio.Event()
    link.set()
    loop = asyncio.get_running_loop()

    def switch(up: bool) -> None:
        (link.set if up else link.clear)()
        print("healed" if up else "partitioned", flush=True)

    loop.add_signal_handler(signal.SIGUSR1, switch, False)
    loop.add_signal_handler(signal.SIGUSR2, switch, True)

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        if who:
            pid, sid = _peer_process(client_w.get_extra_info("peername")[1], port)
            print(f"conn {pid} {sid}", flush=True)
        await link.wait()
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            client_w.close()
            return
        _no_delay(client_w)
        _no_delay(server_w)
        await asyncio.gather(
            _pipe(client_r, server_w, delay, link), _pipe(server_r, client_w, delay, link)
        )

    server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
    port = server.sockets[0].getsockname()[1]
    print(f"ready {port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    flags = {a for a in sys.argv[1:] if a.startswith("--")}
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    listen = int(args[2]) if len(args) > 2 else 0
    asyncio.run(serve(int(args[0]), float(args[1]) / 1000.0, listen, who="--who" in flags))
