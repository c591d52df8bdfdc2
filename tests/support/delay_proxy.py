"""A TCP proxy on loopback that adds a delay each way: `python tests/support/delay_proxy.py
TARGET_PORT DELAY_MS [LISTEN_PORT]`, printing `ready PORT` once it listens.

Each chunk read from one side is written to the other `DELAY_MS` later, in order, so a round trip
through it costs 2 x DELAY_MS more (the far-away MySQL of bench/bench_fleet.py). It is not a real
network: no loss, no jitter, no bandwidth limit. SIGSTOP it and every connection through it hangs
(a partition, for the fleet's tests to come).
"""

from __future__ import annotations

import asyncio
import socket
import sys


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
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


async def serve(target_port: int, delay: float, listen_port: int = 0) -> None:
    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            client_w.close()
            return
        _no_delay(client_w)
        _no_delay(server_w)
        await asyncio.gather(_pipe(client_r, server_w, delay), _pipe(server_r, client_w, delay))

    server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
    port = server.sockets[0].getsockname()[1]
    print(f"ready {port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    listen = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    asyncio.run(serve(int(sys.argv[1]), float(sys.argv[2]) / 1000.0, listen))
