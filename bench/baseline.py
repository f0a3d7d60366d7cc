"""Baseline for the benchmark: pread the preserved pages of every file in file order
and write the same bytes out (holes as seeks), nothing else.

Input: a plan made beforehand (not timed) by run_bench.py from the generator's
image: one JSON line per output file: {"out": name, "size": n, "runs": [[file_off, phys, len], ...]}, one run per
link entry, in file order, cut at the file size.
"""

import json
import os
import sys


def main(image: str, plan: str, out_dir: str) -> None:
    fd = os.open(image, os.O_RDONLY)
    with open(plan, "r", encoding="utf-8") as fh:
        for line in fh:
            item = json.loads(line)
            path = os.path.join(out_dir, item["out"])
            with open(path, "wb") as out:
                pos = 0
                for off, phys, length in item["runs"]:
                    if off != pos:
                        out.seek(off)
                    # one pread per link entry (a page, or a whole THP), as PKRAM lists them
                    out.write(os.pread(fd, length, phys))
                    pos = off + length
                out.truncate(item["size"])
    os.close(fd)


if __name__ == "__main__":
    main(*sys.argv[1:4])
