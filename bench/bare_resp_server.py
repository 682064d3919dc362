"""The floor for a Python RESP server: asyncio (uvloop when installed), hiredis, and a dict.

    python bench/bare_resp_server.py --port 6390

It answers PING, GET, SET (no options) and CONFIG GET (for redis-benchmark) and nothing else:
no durability, no limits, no KV semantics.  ``bench/resp_vs_redis.py --bare`` runs it beside
edgekv and redis-server so the gap between edgekv and Redis can be split into what any Python
server on this machine pays and what edgekv adds on top.
"""

from __future__ import annotations

import argparse
import asyncio

import hiredis

try:
    import uvloop
except ImportError:  # plain asyncio then
    uvloop = None

PONG, OK, NIL = b"+PONG\r\n", b"+OK\r\n", b"$-1\r\n"


class BareProtocol(asyncio.Protocol):
    """One connection: parse what arrived, answer every complete command in one write."""

    def __init__(self, data: dict) -> None:
        self.data = data
        self.reader = hiredis.Reader()
        self.transport = None
        self.inline: bool | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, chunk: bytes) -> None:
        if self.inline is None:  # a connection's first bytes say what it speaks
            self.inline = not chunk.startswith(b"*")
        if self.inline:  # PINGs from a readiness probe
            self.transport.write(PONG * chunk.count(b"\n"))
            return
        self.reader.feed(chunk)
        out = []
        data = self.data
        while (cmd := self.reader.gets()) is not False:
            if isinstance(cmd, list) and cmd:
                name = cmd[0].upper()
                if name == b"GET":
                    value = data.get(cmd[1])
                    out.append(NIL if value is None
                               else b"$%d\r\n%b\r\n" % (len(value), value))
                elif name == b"SET":
                    data[cmd[1]] = cmd[2]
                    out.append(OK)
                elif name == b"PING":
                    out.append(PONG)
                elif name == b"CONFIG":
                    out.append(b"*0\r\n")
                else:
                    out.append(b"-ERR unknown command\r\n")
        if out:
            self.transport.write(b"".join(out))


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    data: dict = {}
    server = await loop.create_server(lambda: BareProtocol(data), "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=6390)
    args = parser.parse_args()
    if uvloop is not None:
        uvloop.install()
    try:
        asyncio.run(serve(args.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
