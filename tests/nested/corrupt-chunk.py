#!/usr/bin/env python3
"""Changes one byte of one stored chunk of a .smolmachine's memory section
(docs/smolmachine-format.md), so that chunk fails its SHA-256 while the
index, the table and every other chunk still check: a bundle whose RAM is
corrupt where the guest reads it only after it has run for a while.

usage: corrupt-chunk.py FILE [FRACTION [WORKING_SET]]
  the first stored chunk at FRACTION (default 1: the last) of the stored
  chunks in RAM order, skipping those holding a page of WORKING_SET (a
  start's .ws file: what the guest touched early); prints its index
"""
import os
import struct
import sys

HEADER, ENTRY, PAGE = 4096, 88, 4096


def touched_chunks(path, regions, chunk_size):
    """The chunks holding a page the working set at path lists (none when
    there is no such file)."""
    if not os.path.isfile(path):
        return set()
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"SMOLWS\0\1":
        sys.exit("corrupt-chunk: not a working set")
    count = struct.unpack_from("<I", data, 16)[0]
    # The chunks of RAM laid end to end: each region's, its last maybe short.
    starts, first = [], 0
    base = 0
    for size in regions:
        starts.append((base, size, first))
        first += -(-size // chunk_size)
        base += size
    chunks = set()
    for k in range(count):
        page, pages, _ = struct.unpack_from("<QII", data, 24 + 16 * k)
        for at in range(page * PAGE, (page + pages) * PAGE, PAGE):
            for rbase, size, rfirst in starts:
                if rbase <= at < rbase + size:
                    chunks.add(rfirst + (at - rbase) // chunk_size)
    return chunks


def main():
    fraction = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
    with open(sys.argv[1], "r+b") as f:
        header = f.read(HEADER)
        count = struct.unpack_from("<I", header, 12)[0]
        for i in range(count):
            e = header[24 + ENTRY * i:24 + ENTRY * (i + 1)]
            if e[:24].rstrip(b"\0") == b"memory":
                offset = struct.unpack_from("<Q", e, 32)[0]
                break
        else:
            sys.exit("corrupt-chunk: no memory section")
        f.seek(offset)
        chunk_size, nregions = struct.unpack_from("<II", f.read(16), 8)
        layout = f.read(16 * nregions)
        regions = [struct.unpack_from("<QQ", layout, 16 * r)[1] for r in range(nregions)]
        chunks = sum(-(-size // chunk_size) for size in regions)
        index = f.read(48 * chunks)
        avoid = touched_chunks(sys.argv[3], regions, chunk_size) if len(sys.argv) > 3 else set()
        stored = [i for i in range(chunks) if index[48 * i + 12] != 0]
        at = min(int(len(stored) * fraction), len(stored) - 1)
        left = [i for i in stored[at:] + stored[:at][::-1] if i not in avoid]
        which = left[0] if left else stored[-1]
        c_off, c_stored = struct.unpack_from("<QI", index, 48 * which)
        where = offset + c_off + c_stored // 2
        f.seek(where)
        byte = f.read(1)
        f.seek(where)
        f.write(bytes([byte[0] ^ 0x55]))
        print(which)


if __name__ == "__main__":
    main()
