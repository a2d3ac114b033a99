#!/usr/bin/env python3
"""Opens N connections one at a time, a request on each, then closes them all.

tiny_http (under rouille) hands a new connection to a pool thread only when
it sees an idle one, and an idle keep-alive connection holds its thread; a
burst of connections therefore starves until the pool has grown. Opening the
connections one by one first grows the pool, so a keep-alive measurement that
follows measures the server, not the stall (see the README's notes)."""
import socket, sys

host, port, path, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
socks = []
for _ in range(n):
    s = socket.create_connection((host, port), timeout=5)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: warm-up\r\n\r\n".encode())
    s.recv(65536)
    socks.append(s)
for s in socks:
    s.close()
