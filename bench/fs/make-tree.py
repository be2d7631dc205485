#!/usr/bin/env python3
# The tree bench/fs unpacks: DIRS folders of 100 small text files, a few
# with the word grep looks for; the same bytes every time (seeded).
# usage: make-tree.py TAR DIRS
import io
import random
import sys
import tarfile

random.seed(1)
words = "alpha beta gamma delta epsilon zeta theta kappa lambda sigma".split()
with tarfile.open(sys.argv[1], "w") as t:
    for d in range(int(sys.argv[2])):
        for f in range(100):
            text = " ".join(random.choice(words) for _ in range(random.randint(50, 600)))
            if (d * 100 + f) % 997 == 0:
                text += " zebra"
            data = (text + "\n").encode()
            info = tarfile.TarInfo(f"src/d{d:03}/f{f:03}.c")
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
