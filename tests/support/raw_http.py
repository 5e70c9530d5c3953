"""Requests written by hand, for what urllib will not send: a declared length it does not send,
a chunked body past the server's limit."""

from __future__ import annotations

import contextlib
import socket

from kuberec.serving.limits import MAX_BODY_BYTES


def status(url: str, head: str, body: bytes = b"") -> int:
    """The status line's code of the answer to ``head`` + ``body`` sent to ``url``."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(head.encode())
        with contextlib.suppress(OSError):  # refused mid-body: the answer is already there
            conn.sendall(body)
        answer = b""
        while b"\r\n" not in answer:
            chunk = conn.recv(65536)
            if not chunk:
                break
            answer += chunk
    return int(answer.split()[1])


def declared_over_limit(url: str, path: str) -> int:
    """POST with a ``Content-Length`` of 200 MB and not one byte of the body."""
    return status(url, f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       f"Content-Length: {200 * 1024 * 1024}\r\n\r\n")  # fmt: skip


def chunked_over_limit(url: str, path: str) -> int:
    """POST a chunked body 2 MiB over the limit."""
    chunk = b"x" * (1024 * 1024)
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk)
                      for _ in range(MAX_BODY_BYTES // len(chunk) + 2))  # fmt: skip
    head = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n")  # fmt: skip
    return status(url, head, chunks + b"0\r\n\r\n")
