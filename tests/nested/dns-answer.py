#!/usr/bin/python3
"""A resolver for the nested net scenario: answers A queries for the names
given (NAME=IPV4 ...) on 127.0.0.1:53, NXDOMAIN for any other, so a guest's
lookup through the NAT's DNS forwarder (10.0.2.3) has a host resolver to
reach in an L1 with no network of its own.
usage: dns-answer.py NAME=IPV4..."""
import socket
import sys

names = {}
for arg in sys.argv[1:]:
    name, addr = arg.split("=")
    names[name.lower().rstrip(".")] = socket.inet_aton(addr)

sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("127.0.0.1", 53))
while True:
    query, peer = sock.recvfrom(512)
    if len(query) < 17:
        continue
    labels, i = [], 12
    while i < len(query) and query[i]:
        labels.append(query[i + 1:i + 1 + query[i]].decode("ascii", "replace"))
        i += 1 + query[i]
    question_end = i + 5  # the root label, QTYPE, QCLASS
    if question_end > len(query):
        continue
    qtype = int.from_bytes(query[i + 1:i + 3], "big")
    addr = names.get(".".join(labels).lower())
    answer = addr is not None and qtype == 1
    flags = 0x8180 if addr is not None else 0x8183  # response, RD+RA; NXDOMAIN
    header = query[:2] + flags.to_bytes(2, "big") + b"\x00\x01" + \
        (b"\x00\x01" if answer else b"\x00\x00") + b"\x00\x00\x00\x00"
    reply = header + query[12:question_end]
    if answer:
        reply += b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04" + addr
    sock.sendto(reply, peer)
