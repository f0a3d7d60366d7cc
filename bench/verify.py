"""Check a benchmark run's output against the generator's manifest (ground truth).

The benchmark's timed commands render with ``-r none``; this check runs the
same plugins once more, untimed, with ``-r json``, and compares:

* ``pkram.ranges``: the rows, as ``(first byte, pages)``, equal the maximal
  runs of the manifest's ``reserved`` list;
* ``pkram.extract``: every file of a chained node has one row whose Size and
  SHA256 are the manifest's, and the written file hashes to the same SHA256
  (read back from disk); every raw object's ``bytes`` and ``pages`` streams
  likewise.

Returns counts and the first mismatches; the caller prints them.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import List, Tuple

#: mismatches kept in a report
KEEP = 20


def _maximal_runs(runs: List[Tuple[int, int]]) -> List[Tuple[int, int]]:
    """``(start byte, pages)`` runs merged where they overlap or touch, ascending."""
    out: List[List[int]] = []
    for start, pages in sorted(runs):
        end = start + pages * 4096
        if out and start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return [(s, (e - s) // 4096) for s, e in out]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _json_rows(cmd: list, env, cwd) -> list:
    proc = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} failed: {proc.stderr.decode(errors='replace')[-2000:]}")
    return json.loads(proc.stdout)


def verify_ranges(vol: list, manifest: dict, env, cwd) -> dict:
    rows = _json_rows([c if c != "none" else "json" for c in vol] + ["pkram.ranges"], env, cwd)
    got = [(r["Start"], r["Pages"]) for r in rows]
    want = _maximal_runs([tuple(r) for r in manifest["reserved"]])
    bad = [f"ranges: {len(got)} rows, manifest has {len(want)} maximal runs"] if len(got) != len(want) else []
    bad += [f"range {i}: got {g}, manifest {w}" for i, (g, w) in enumerate(zip(got, want)) if g != w]
    return {"ranges": len(got), "reserved_pages": sum(p for _, p in want), "mismatches": bad[:KEEP],
            "mismatch_count": len(bad)}


def verify_extract(vol: list, outdir: Path, manifest: dict, env, cwd) -> dict:
    cmd = [c if c != "none" else "json" for c in vol[:1] + ["-o", str(outdir)] + vol[1:]] + ["pkram.extract"]
    rows = _json_rows(cmd, env, cwd)
    chained = {n["name"] for n in manifest["nodes"] if n["chained"]}
    by_file = {(r["Node"], r["Name"]): r for r in rows if r["Stream"] == "file"}
    bad: List[str] = []
    files = streams = nbytes = 0

    def check(what: str, row, size: int, sha: str) -> None:
        nonlocal nbytes
        if row is None:
            bad.append(f"{what}: no row")
            return
        if row["Size"] != size or row["SHA256"] != sha:
            bad.append(f"{what}: row says {row['Size']} bytes {row['SHA256'][:16]}, manifest {size} {sha[:16]}")
            return
        written = outdir / row["File"]
        if not written.is_file() or written.stat().st_size != size or _sha256(written) != sha:
            bad.append(f"{what}: written file {row['File']} differs from the manifest")
            return
        nbytes += size

    for f in manifest["files"]:
        if f["node"] in chained:
            files += 1
            check(f"{f['node']}/{f['name']}", by_file.get((f["node"], f["name"])), f["size"], f["sha256"])
    for obj in manifest["raw_objects"]:
        if obj["node"] not in chained:
            continue
        mine = {r["Stream"]: r for r in rows if r["ObjPFN"] == obj["obj_pfn"]}
        for stream in ("bytes", "pages"):
            streams += 1
            check(f"obj 0x{obj['obj_pfn']:x} {stream}", mine.get(stream), obj[f"{stream}_len"],
                  obj[f"{stream}_sha256"])
    extra = len(by_file) - files
    if extra:
        bad.append(f"{extra} file rows the manifest does not list")
    return {"files": files, "raw_streams": streams, "bytes_checked": nbytes, "mismatches": bad[:KEEP],
            "mismatch_count": len(bad)}
