"""Shared fixtures: generated images (tools/pkramgen.py) and a vol-pkram runner."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import pkramgen  # noqa: E402  (the independent generator: ground truth for every image test)

VOL_PKRAM = Path(sys.executable).with_name("vol-pkram")


@pytest.fixture(scope="session")
def image_cache(tmp_path_factory):
    """Generate each (scenario, seed, formats) once per session."""
    root = tmp_path_factory.mktemp("images")
    made = {}

    def get(scenario, seed=1, formats=("raw",)):
        key = (json.dumps(scenario, sort_keys=True) if isinstance(scenario, dict) else scenario,
               seed, tuple(formats))
        if key not in made:
            name = scenario if isinstance(scenario, str) else scenario.get("name", "custom")
            out = root / f"{name}-{seed}-{'-'.join(formats)}"
            manifest = pkramgen.generate(scenario, str(out), seed=seed, formats=tuple(formats))
            made[key] = (out, manifest)
        return made[key]

    return get


def private_env(home):
    """The environment of a subprocess run as a new user would: ``home`` as a fresh
    home with its own volatility cache, no VOLATILITY*/PYTHON* variables of ours."""
    (home / "cache").mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VOLATILITY", "PYTHON"))}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / "cache"))
    return env


class VolResult:
    def __init__(self, proc, outdir):
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.outdir = outdir
        self.rows = None
        if self.rc == 0 and proc.stdout.strip():
            self.rows = json.loads(proc.stdout)


@pytest.fixture
def vol(tmp_path):
    """Run ``vol-pkram -q -r json -f IMAGE [-o OUT] PLUGIN ARGS`` in a subprocess, as a user would."""
    env = private_env(tmp_path / "home")

    def run(image, plugin, *args, output=True, timeout=300, extra=()):
        outdir = tmp_path / f"out-{plugin}-{len(list(tmp_path.iterdir()))}"
        outdir.mkdir()
        cmd = [str(VOL_PKRAM), "-q", "-r", "json", *extra, "-f", str(image)]
        if output:
            cmd += ["-o", str(outdir)]
        cmd += [plugin, *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=tmp_path)
        assert "Traceback" not in proc.stderr, proc.stderr
        return VolResult(proc, outdir)

    return run


def runs_of_pages(pages):
    """Maximal runs ``(first_pfn, npages)`` of a set of PFNs, ascending (the brute-force model)."""
    out = []
    for p in sorted(pages):
        if out and out[-1][0] + out[-1][1] == p:
            out[-1][1] += 1
        else:
            out.append([p, 1])
    return [tuple(r) for r in out]


def reserved_pfns_from_rows(rows):
    pfns = set()
    for row in rows:
        start, pages = row["Start"], row["Pages"]
        assert start % 4096 == 0
        pfns.update(range(start // 4096, start // 4096 + pages))
    return pfns


def reserved_pfns_from_manifest(manifest):
    pfns = set()
    for start, pages in manifest["reserved"]:
        pfns.update(range(start // 4096, start // 4096 + pages))
    return pfns


def pytest_collection_modifyitems(config, items):
    """The quick tier (``-m "not slow"``): an end-to-end test parametrized over images
    runs on its first image only; its other cases are marked ``slow``. The default
    run (CI, the README's test command) runs them all."""
    seen = set()
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is None or "vol" not in getattr(item, "fixturenames", ()):
            continue
        key = (str(item.fspath), item.originalname)
        if key in seen:
            item.add_marker(pytest.mark.slow)
        seen.add(key)
