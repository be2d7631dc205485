#!/usr/bin/env python3
"""bench/net's upload sink: on PORT, each connection is read to its end, then
answered with "got BYTES" and closed, so that the guest's `dd | nc` ends only
once every byte has arrived (busybox nc -l with /dev/null for its input, as
a background job gets, closes after its first read: the upload then timed
only a connection's reset)."""
import socket
import sys

server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("0.0.0.0", int(sys.argv[1])))
server.listen(4)
while True:
    conn, _ = server.accept()
    with conn:
        total = 0
        while chunk := conn.recv(1 << 16):
            total += len(chunk)
        conn.sendall(b"got %d\n" % total)
