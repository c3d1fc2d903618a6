"""The simulator's minimal HTTP client against a real socket server: bodies by length and chunked,
a keep-alive connection the server dropped, and a server that never answers."""

from __future__ import annotations

import asyncio

import pytest

from edgewise.fleet.tools.light_http import Connection, TransportError


async def serve(replies: list[bytes], close_after_each: bool = False) -> tuple[asyncio.Server, list[bytes]]:
    """A server that answers each request with the next canned reply; returns what it received."""
    received: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while replies:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length")), 0)
            received.append(head + await reader.readexactly(length))
            writer.write(replies.pop(0))
            await writer.drain()
            if close_after_each:
                break
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0), received


def test_bodies_by_length_and_chunked_over_one_connection() -> None:
    async def go() -> None:
        server, received = await serve([
            b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nETag: \"7\"\r\n\r\n{\"ok\":true}",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n[1,2\r\n2\r\n,3\r\n1\r\n]\r\n0\r\n\r\n",
            b"HTTP/1.1 304 Not Modified\r\nETag: \"7\"\r\n\r\n",
        ])
        port = server.sockets[0].getsockname()[1]
        connection = Connection(f"http://127.0.0.1:{port}")
        first = await connection.request("POST", "/a", b'{"x":1}', {"Content-Type": "application/json"})
        assert (first.status_code, first.json(), first.headers["etag"]) == (200, {"ok": True}, '"7"')
        assert (await connection.request("GET", "/b")).json() == [1, 2, 3]
        assert (await connection.request("GET", "/c")).status_code == 304
        assert received[0].endswith(b'{"x":1}') and b"Content-Length: 7" in received[0]
        await connection.close()
        server.close()

    asyncio.run(go())


def test_a_dropped_keep_alive_connection_is_reopened_once() -> None:
    async def go() -> None:
        reply = b"HTTP/1.1 204 No Content\r\n\r\n"
        server, received = await serve([reply, reply], close_after_each=True)
        port = server.sockets[0].getsockname()[1]
        connection = Connection(f"http://127.0.0.1:{port}")
        assert (await connection.request("PUT", "/state", b"{}")).status_code == 204
        await asyncio.sleep(0.05)  # the server has closed that connection by now
        assert (await connection.request("PUT", "/state", b"{}")).status_code == 204
        assert len(received) == 2
        await connection.close()
        server.close()

    asyncio.run(go())


def test_a_silent_server_is_a_transport_error_not_a_hang() -> None:
    async def go() -> None:
        async def never_answer(reader: asyncio.StreamReader, _writer: asyncio.StreamWriter) -> None:
            await reader.read(1 << 16)
            await asyncio.sleep(5)

        server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(TransportError, match="TimeoutError"):
            await Connection(f"http://127.0.0.1:{port}").request("GET", "/desired", timeout=0.2)
        server.close()

    asyncio.run(go())


def test_only_http_urls_are_accepted() -> None:
    with pytest.raises(ValueError, match="http"):
        Connection("ftp://example")
