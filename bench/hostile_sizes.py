#!/usr/bin/env python3
"""Issue #19 class 4: files whose header claims a size of 2^40 must cost what their data costs.

Generates a v1 image (tools/pkramgen.py) holding six 3-page files whose
``file_header.size`` says 2^40 bytes, beside a few ordinary files, then times
``pkram.extract`` on it: plain, with ``--tar``, and with hole hashing lifted
(``--hole-hash-limit 0``) at a 1 GiB ``--max-file-size``, to show what the
limit saves. For each run: wall time, exit status, the rows' Status, the
bytes on disk (apparent and allocated), ``sha256sum -c SHA256SUMS``, and the
size of the tar.

    .venv/bin/python bench/hostile_sizes.py [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import pkramgen  # noqa: E402

VOL_PKRAM = Path(sys.executable).with_name("vol-pkram")
HUGE = 1 << 40


def scenario() -> dict:
    huge = [{"name": f"huge{i}.bin", "size": 3 * 4096, "header_size": HUGE} for i in range(6)]
    normal = [{"name": "notes.txt", "text": "a preserved text file\n" * 200},
              {"name": "data.bin", "size": 300 * 4096 + 17}]
    return {"name": "hostile_sizes", "revision": 1, "paging_levels": 4, "mem_size": "64M",
            "description": "six files whose header size is 2^40", "noise_pages": 16,
            "nodes": [{"name": "shmem-huge", "files": huge}, {"name": "shmem-normal", "files": normal}]}


def make_image(work: Path) -> Path:
    # The generator hashes a lying header's size in zeros (2^40 bytes: hours); this
    # benchmark needs the image, not those digests.
    pkramgen._Hasher.hexdigest = lambda self: ""
    manifest = pkramgen.generate(scenario(), str(work / "image"), seed=1, formats=("raw",))
    return work / "image" / manifest["images"]["raw"]


def run(image: Path, outdir: Path, *args: str) -> dict:
    outdir.mkdir()
    t0 = time.monotonic()
    proc = subprocess.run([str(VOL_PKRAM), "-q", "-r", "json", "-f", str(image), "-o", str(outdir),
                           "pkram.extract", *args], capture_output=True, text=True)
    wall = time.monotonic() - t0
    rows = json.loads(proc.stdout) if proc.returncode == 0 else []
    apparent = allocated = 0
    for name in os.listdir(outdir):
        st = os.stat(outdir / name)
        apparent += st.st_size
        allocated += st.st_blocks * 512
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=outdir, capture_output=True, text=True)
    return {"args": " ".join(args) or "(defaults)", "wall_s": round(wall, 2), "rc": proc.returncode,
            "files": len(rows), "unhashed": sum(r["SHA256"] is None for r in rows),
            "statuses": sorted({r["Status"] for r in rows}),
            "apparent_bytes": apparent, "allocated_bytes": allocated,
            "sha256sum_c": f"rc={check.returncode}, {check.stdout.count(': OK')} OK",
            "warnings": [line for line in proc.stderr.splitlines() if "WARNING" in line][:8]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", help="working directory (default: a temporary one)")
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="pkram-hostile-sizes-"))
    work.mkdir(parents=True, exist_ok=True)
    image = make_image(work)
    results = [run(image, work / "out-plain"),
               run(image, work / "out-tar", "--tar"),
               run(image, work / "out-lifted", "--hole-hash-limit", "0", "--max-file-size", str(1 << 30))]
    print(json.dumps(results, indent=2))
    return 0 if all(r["rc"] == 0 and r["wall_s"] < 60 for r in results[:2]) else 1


if __name__ == "__main__":
    sys.exit(main())
