#!/usr/bin/env python3
"""Lists a .smolmachine's sections and checks every hash, from
docs/smolmachine-format.md alone (no smolvm code): the table digest, each
section's SHA-256 and, in a memory section, the index's and every chunk's.

usage: docs/smolmachine_ls.py FILE     exit 0: all hashes match, 1: not
"""
import hashlib
import struct
import sys

HEADER = 4096
ENTRY = 88
ENCODINGS = {0: "raw", 1: "zstd", 2: "memory"}


def fail(msg):
    print(f"smolmachine_ls: {msg}", file=sys.stderr)
    sys.exit(1)


def read_at(f, offset, length):
    f.seek(offset)
    data = f.read(length)
    if len(data) != length:
        fail(f"short read at {offset}")
    return data


def check_memory(f, offset, stored, table_sha):
    head = read_at(f, offset, 16)
    if head[:8] != b"SMOLMEM1":
        fail("memory: bad magic")
    chunk_size, regions = struct.unpack_from("<II", head, 8)
    layout = read_at(f, offset + 16, 16 * regions)
    total = sum(struct.unpack_from("<QQ", layout, 16 * i)[1] for i in range(regions))
    sizes = []
    for i in range(regions):
        size = struct.unpack_from("<QQ", layout, 16 * i)[1]
        sizes += [chunk_size] * (size // chunk_size) + ([size % chunk_size] if size % chunk_size else [])
    index_len = 16 + 16 * regions + 48 * len(sizes)
    index = read_at(f, offset, index_len)
    if hashlib.sha256(index).digest() != table_sha:
        fail("memory: the index fails its SHA-256")
    kinds = {0: 0, 1: 0, 2: 0}
    for i in range(len(sizes)):
        e = 16 + 16 * regions + 48 * i
        c_off, c_stored, kind = struct.unpack_from("<QIB", index, e)
        kinds[kind] = kinds.get(kind, 0) + 1
        if kind == 0:
            continue
        if c_off < index_len or c_off + c_stored > stored:
            fail(f"memory: chunk {i} outside the section")
        if hashlib.sha256(read_at(f, offset + c_off, c_stored)).digest() != index[e + 16:e + 48]:
            fail(f"memory: chunk {i} fails its SHA-256")
    return f"{total >> 20} MiB RAM, {len(sizes)} chunks ({kinds[0]} zero, {kinds[1]} zstd, {kinds[2]} raw)"


def main():
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        sys.exit(2)
    with open(sys.argv[1], "rb") as f:
        header = read_at(f, 0, HEADER)
        if header[:8] != b"SMOLMACH":
            fail("not a .smolmachine")
        version, count, file_size = struct.unpack_from("<IIQ", header, 8)
        if version != 1:
            fail(f"version {version}; this reader knows 1")
        if count > (HEADER - 24 - 32) // ENTRY:
            fail(f"{count} sections")
        end = 24 + ENTRY * count
        if hashlib.sha256(header[:end]).digest() != header[end:end + 32]:
            fail("the table digest does not match")
        f.seek(0, 2)
        if f.tell() != file_size:
            fail(f"file is {f.tell()} bytes, header says {file_size}")
        names = set()
        for i in range(count):
            e = header[24 + ENTRY * i:24 + ENTRY * (i + 1)]
            name = e[:24].split(b"\0")[0].decode("ascii")
            encoding, _, offset, stored, size = struct.unpack_from("<IIQQQ", e, 24)
            sha = e[56:88]
            if name in names or encoding not in ENCODINGS or offset < HEADER or offset % 4096 \
                    or offset + stored > file_size:
                fail(f"section '{name}' is malformed")
            names.add(name)
            if encoding == 2:
                what = check_memory(f, offset, stored, sha)
            else:
                if hashlib.sha256(read_at(f, offset, stored)).digest() != sha:
                    fail(f"section '{name}' fails its SHA-256")
                what = f"{size} bytes"
            print(f"{name:<24} {ENCODINGS[encoding]:<6} {stored:>12} stored  {what}  sha256 ok")


if __name__ == "__main__":
    main()
