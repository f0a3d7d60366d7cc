"""The three documented ways to run the plugins, as a user would type them."""

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import reserved_pfns_from_manifest, reserved_pfns_from_rows

BIN = Path(sys.executable).parent
DATA = Path(__file__).resolve().parents[1] / "testdata"
DEMO = DATA / "pkram-v1-demo.raw"
TRUTH = reserved_pfns_from_manifest(json.loads((DATA / "pkram-v1-demo.manifest.json").read_text()))


def _env(home):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VOLATILITY", "PYTHON"))}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / "cache"))
    (home / "cache").mkdir(parents=True, exist_ok=True)
    return env


def _ranges(cmd, env, cwd):
    proc = subprocess.run(cmd + ["-q", "-r", "json", "-f", str(DEMO), "pkram.ranges"],
                          capture_output=True, text=True, env=env, cwd=cwd, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_plugin_dir_with_vol_p(tmp_path):
    env = _env(tmp_path)
    plugin_dir = subprocess.run([sys.executable, "-m", "volatility_pkram", "plugin-dir"],
                                capture_output=True, text=True, check=True).stdout.strip()
    assert (Path(plugin_dir) / "linux" / "pkram" / "ranges.py").is_file()
    assert reserved_pfns_from_rows(_ranges([str(BIN / "vol"), "-p", plugin_dir], env, tmp_path)) == TRUTH
    assert reserved_pfns_from_rows(_ranges([str(BIN / "vol-pkram")], env, tmp_path)) == TRUTH


def test_install_config_makes_plain_vol_find_the_plugins(tmp_path):
    env = _env(tmp_path)
    before = subprocess.run([str(BIN / "vol"), "-q", "-f", str(DEMO), "pkram.ranges"],
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert before.returncode != 0
    subprocess.run([sys.executable, "-m", "volatility_pkram", "install-config"], env=env, check=True,
                   capture_output=True)
    assert reserved_pfns_from_rows(_ranges([str(BIN / "vol")], env, tmp_path)) == TRUTH
    subprocess.run([sys.executable, "-m", "volatility_pkram", "remove-config"], env=env, check=True,
                   capture_output=True)
    config = json.loads((tmp_path / ".config" / "volatility3" / "vol.json").read_text())
    assert "plugin_dirs" not in config


def test_revision_can_be_forced(image_cache, vol):
    out, manifest = image_cache("v2_basic")
    res = vol(out / manifest["images"]["raw"], "pkram.info", "--revision", "3", output=False)
    rows = {(r["Section"], r["Item"]): r for r in res.rows}
    assert rows[("format", "revision")]["Value"] == "v3"
    assert "forced" in rows[("format", "revision")]["Detail"]
