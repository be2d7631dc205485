#!/usr/bin/env python3
"""Changes one byte of one stored chunk of a .smolmachine's memory section
(docs/smolmachine-format.md), so that chunk fails its SHA-256 while the
index, the table and every other chunk still check: a bundle whose RAM is
corrupt where the guest reads it only after it has run for a while.

usage: corrupt-chunk.py FILE [N]   N: the Nth stored chunk from the end
                                   (default 1: the last); prints its index
"""
import struct
import sys

HEADER, ENTRY = 4096, 88


def main():
    nth = int(sys.argv[2]) if len(sys.argv) > 2 else 1
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
        head = f.read(16)
        chunk_size, regions = struct.unpack_from("<II", head, 8)
        layout = f.read(16 * regions)
        chunks = sum(-(-struct.unpack_from("<QQ", layout, 16 * r)[1] // chunk_size)
                     for r in range(regions))
        index = f.read(48 * chunks)
        stored = [i for i in range(chunks) if index[48 * i + 12] != 0]
        which = stored[-nth]
        c_off, c_stored = struct.unpack_from("<QI", index, 48 * which)
        at = offset + c_off + c_stored // 2
        f.seek(at)
        byte = f.read(1)
        f.seek(at)
        f.write(bytes([byte[0] ^ 0x55]))
        print(which)


if __name__ == "__main__":
    main()
