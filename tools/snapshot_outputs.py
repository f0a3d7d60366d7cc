#!/usr/bin/env python3
"""Snapshot every plugin's ``-r json`` output on every generator and real-kernel image.

Used to prove that a change of code leaves the plugins' output byte-identical:

    python tools/snapshot_outputs.py --out /tmp/before     # on the old tree
    python tools/snapshot_outputs.py --out /tmp/after      # on the new tree
    python tools/snapshot_outputs.py --compare /tmp/before /tmp/after

``--images REGEX`` and ``--plugins REGEX`` take a subset (compare then reports
the runs missing on one side).

A snapshot holds, per (image, plugin, options): the exit status, stdout (the JSON
rows), stderr with volatility's progress lines removed, and for plugins that write
files the relative path, size and SHA-256 of every file written under ``-o``.
The images are made by tools/pkramgen.py (every scenario but the benchmarks, as
raw images; a few also as LiME and ELF) and the committed real-kernel images.

``--vol`` names the vol-pkram executable (default: the one beside this Python).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import hashlib
import json
import lzma
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import pkramgen  # noqa: E402

# (plugin, extra arguments, writes files)
RUNS = [
    ("pkram.info", [], False),
    ("pkram.ranges", [], False),
    ("pkram.files", [], False),
    ("pkram.extract", [], True),
    ("pkram.audit", ["--reference-time", "1893456000"], False),
    ("pkram.yarascan", ["--yara-string", "PKRAM"], False),
    ("pkram.yarascan", ["--yara-string", "MZ", "--all-ranges"], False),
    ("pkram.scan", [], False),
    ("timeliner.Timeliner", [], False),
]
EXTRA_FORMATS = {"v1_basic": ("raw", "lime", "elf"), "v2_basic": ("raw", "lime", "elf"),
                 "lime_gap_data": ("raw", "lime"), "hostile_lime_gap_meta": ("raw", "lime")}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def make_images(work: Path, select: str = "") -> list[tuple[str, Path]]:
    images = []
    for name in sorted(pkramgen.SCENARIOS):
        if name.startswith("bench") or not re.search(select, name):
            continue
        formats = EXTRA_FORMATS.get(name, ("raw",))
        out = work / name
        pkramgen.generate(name, str(out), seed=1, formats=formats)
        for f in sorted(out.iterdir()):
            if f.suffix in (".raw", ".lime", ".elf"):
                images.append((f"{name}{f.suffix}", f))
    real = ROOT / "testdata" / "real"
    for xz in sorted(real.glob("*.xz")) if re.search(select, "real") else ():
        if xz.name.endswith((".raw.xz", ".elf.xz")):
            dest = work / "real" / xz.name[:-3]
            dest.parent.mkdir(parents=True, exist_ok=True)
            with lzma.open(xz) as src, open(dest, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            images.append((f"real-{dest.name}", dest))
    if re.search(select, "demo"):
        images.append(("demo.raw", ROOT / "testdata" / "pkram-v1-demo.raw"))
    return images


def clean_stderr(text: str) -> str:
    keep = [line for line in text.splitlines()
            if line.strip() and not line.startswith(("Progress:", "Volatility 3 Framework"))
            and "\r" not in line]
    return "\n".join(keep)


def run_one(vol: str, label: str, image: Path, plugin: str, args: list[str], writes: bool,
            home: Path, timeout: int = 300) -> dict:
    with tempfile.TemporaryDirectory(dir=home) as tmp:
        outdir = Path(tmp) / "out"
        outdir.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VOLATILITY", "PYTHON"))}
        env.update(HOME=str(home), XDG_CACHE_HOME=str(home / "cache"), TZ="UTC")
        cmd = [vol, "-q", "-r", "json", "-f", str(image), "-o", str(outdir), plugin, *args]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=tmp)
        except subprocess.TimeoutExpired:
            return {"image": label, "plugin": plugin, "args": args, "rc": "timeout",
                    "stdout": "", "stderr": "", "files": {}}
        files = {}
        if writes:
            for p in sorted(outdir.rglob("*")):
                if p.is_file() and p.suffix == ".dfxml":    # the run's custody report: its time,
                    files[str(p.relative_to(outdir))] = "run record"   # paths, command line
                elif p.is_file():
                    files[str(p.relative_to(outdir))] = [p.stat().st_size, sha256_file(p)]
        return {"image": label, "plugin": plugin, "args": args, "rc": proc.returncode,
                "stdout": proc.stdout, "stderr": clean_stderr(proc.stderr), "files": files}


def snapshot(out: Path, vol: str, jobs: int, select: str = "", plugins: str = "") -> None:
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="snap-"))
    home = work / "home"
    (home / "cache").mkdir(parents=True)
    try:
        images = make_images(work / "img", select)
        # one warm-up run fills volatility's cache before the parallel runs
        run_one(vol, "warm", images[0][1], "pkram.info", [], False, home)
        tasks = [(label, path, plugin, args, writes)
                 for label, path in images for plugin, args, writes in RUNS
                 if re.search(plugins, plugin)]
        with cf.ThreadPoolExecutor(jobs) as pool:
            results = list(pool.map(lambda t: run_one(vol, *t, home), tasks))
        for r in results:
            key = f"{r['image']}__{r['plugin']}__{'_'.join(r['args'])}".replace("/", "_")
            (out / f"{key}.json").write_text(json.dumps(r, indent=1, sort_keys=True))
        print(f"{len(results)} runs on {len(images)} images written to {out}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def compare(a: Path, b: Path, subset: bool = False) -> int:
    """Compare two snapshots; with ``subset``, only the runs that ``b`` holds."""
    names = sorted({p.name for p in b.glob("*.json")} if subset
                   else {p.name for p in a.glob("*.json")} | {p.name for p in b.glob("*.json")})
    bad = 0
    for name in names:
        pa, pb = a / name, b / name
        if not pa.exists() or not pb.exists():
            print(f"MISSING {name}: {'before' if not pa.exists() else 'after'}")
            bad += 1
            continue
        ra, rb = json.loads(pa.read_text()), json.loads(pb.read_text())
        for field in ("rc", "stdout", "stderr", "files"):
            if ra[field] != rb[field]:
                print(f"DIFF {name}: {field}")
                bad += 1
    print(f"{len(names)} runs compared, {bad} differences")
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path)
    ap.add_argument("--compare", nargs=2, type=Path)
    ap.add_argument("--vol", default=str(Path(sys.executable).with_name("vol-pkram")))
    ap.add_argument("--subset", action="store_true", help="compare only the runs the second snapshot holds")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--images", default="", help="regex: only scenarios (and 'real', 'demo') it matches")
    ap.add_argument("--plugins", default="", help="regex: only plugins it matches")
    ns = ap.parse_args(argv)
    if ns.compare:
        return compare(*ns.compare, subset=ns.subset)
    if not ns.out:
        ap.error("--out or --compare is required")
    snapshot(ns.out, ns.vol, ns.jobs, ns.images, ns.plugins)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
