"""The three documented ways to run the plugins, as a user would type them."""

import csv
import io
import json
import stat
import subprocess
import sys
from pathlib import Path

from volatility_pkram import PLUGIN_DIR

from conftest import private_env, reserved_pfns_from_manifest, reserved_pfns_from_rows

BIN = Path(sys.executable).parent
DATA = Path(__file__).resolve().parents[1] / "testdata"
DEMO = DATA / "pkram-v1-demo.raw"
TRUTH = reserved_pfns_from_manifest(json.loads((DATA / "pkram-v1-demo.manifest.json").read_text()))


def _env(home):
    return private_env(home)


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


def _vol_pkram(tmp_path, *argv):
    return subprocess.run([str(BIN / "vol-pkram"), "-q", *map(str, argv)], capture_output=True,
                          text=True, env=_env(tmp_path / "home"), cwd=tmp_path, timeout=300)


def test_yara_value_column_is_one_line_in_text_and_csv(tmp_path):
    """Value was volatility's HexBytes: a multi-line dump beginning with a newline."""
    wanted = b"FILE shmem".hex(" ")
    csv_out = _vol_pkram(tmp_path, "-r", "csv", "-f", DEMO, "pkram.yarascan", "--yara-string",
                         "FILE shmem")
    assert csv_out.returncode == 0, csv_out.stderr
    table = list(csv.DictReader(io.StringIO(csv_out.stdout)))   # (the banner goes to stderr)
    assert table and all(r["Value"] == wanted and r["Match"] == "FILE shmem" for r in table)
    text = _vol_pkram(tmp_path, "-f", DEMO, "pkram.yarascan", "--yara-string", "FILE shmem")
    rows = [line.split("\t") for line in text.stdout.splitlines() if "\t" in line]
    assert len(rows) == len(table) + 1 and all(len(r) == len(rows[0]) for r in rows)
    js = _vol_pkram(tmp_path, "-r", "json", "-f", DEMO, "pkram.yarascan", "--yara-string",
                    "FILE shmem")
    assert {r["Value"] for r in json.loads(js.stdout)} == {wanted}   # JSON as before: a str


def test_luo_yara_value_column_is_one_line(tmp_path):
    from test_kho_builder import MemfdSpec, build_v4
    img, _truth, _ = build_v4([MemfdSpec("s", 0x1001, 2 * 4096, {0: (0, 0x41), 1: (0, 0x42)})])
    image = tmp_path / "kho.raw"
    image.write_bytes(bytes(img.buf))
    res = _vol_pkram(tmp_path, "-r", "csv", "-f", image, "luo.yarascan", "--yara-string",
                     "{41 41 42 42}")
    assert res.returncode == 0, res.stderr
    table = list(csv.DictReader(io.StringIO(res.stdout)))
    assert [r["Value"] for r in table if r["Source"] == "memfd"] == ["41 41 42 42"]


def test_max_file_size_takes_units_in_vol_pkram_and_plain_vol(tmp_path):
    manifest = json.loads((DATA / "pkram-v1-demo.manifest.json").read_text())
    sizes = {f["name"]: f["size"] for f in manifest["files"]}
    for cmd in ([str(BIN / "vol-pkram")], [str(BIN / "vol"), "-p", PLUGIN_DIR]):
        out = tmp_path / f"out{len(cmd)}"
        out.mkdir()
        proc = subprocess.run(cmd + ["-q", "-r", "json", "-f", str(DEMO), "-o", str(out),
                                     "pkram.extract", "--max-file-size", "4K"],
                              capture_output=True, text=True, env=_env(tmp_path / "home"),
                              cwd=tmp_path, timeout=300)
        assert proc.returncode == 0, proc.stderr
        rows = {r["Name"]: r for r in json.loads(proc.stdout)}
        assert {name: r["Size"] for name, r in rows.items()} == {
            name: min(size, 4096) for name, size in sizes.items()}
        assert all(("exceeds the limit" in r["Status"]) == (sizes[n] > 4096)
                   for n, r in rows.items())


def test_help_shows_every_default_and_the_options_used(tmp_path):
    script = (
        "import argparse, json\n"
        "from volatility3.framework import constants\n"
        "from volatility_pkram import PLUGIN_DIR\n"
        "constants.PLUGINS_PATH.insert(0, PLUGIN_DIR)\n"
        "import volatility3.plugins\n"
        "from volatility3 import framework\n"
        "framework.import_files(volatility3.plugins, True)\n"
        "from volatility_pkram.vol3 import cli\n"
        "command_line = cli._command_line_class()[3]\n"
        "out = {}\n"
        "for name, cls in framework.list_plugins().items():\n"
        "    if cli._ours(cls):\n"
        "        p = argparse.ArgumentParser(prog=name, epilog=cls.__doc__)\n"
        "        command_line.populate_requirements_argparse(command_line.__new__(command_line), p, cls)\n"
        "        out[name] = {'help': p.format_help(), 'options': {a.option_strings[0]: a.help\n"
        "                     for a in p._actions if a.option_strings and a.option_strings[0] != '-h'}}\n"
        "print(json.dumps(out))\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=_env(tmp_path / "home"), cwd=tmp_path, timeout=300, check=True)
    plugins = json.loads(proc.stdout)
    assert len(plugins) >= 13
    for name, plugin in plugins.items():
        for option, text in plugin["options"].items():
            assert "default" in text, (name, option, text)
    by_short = {name.split(".", 1)[1].rsplit(".", 1)[0]: p for name, p in plugins.items()}
    assert "--sb-pfn" not in by_short["pkram.scan"]["options"]
    assert "--revision" in by_short["pkram.scan"]["options"]
    for extract in ("pkram.extract", "luo.extract"):
        assert "-o DIR" in by_short[extract]["help"]
    assert "16G" in by_short["pkram.extract"]["options"]["--max-file-size"]


def test_timeliner_body_file_has_mode_owner_and_size(tmp_path):
    manifest = json.loads((DATA / "pkram-v1-demo.manifest.json").read_text())
    out = tmp_path / "out"
    out.mkdir()
    proc = _vol_pkram(tmp_path, "-f", DEMO, "-o", out, "timeliner.Timeliner", "--plugin-filter",
                      "pkram", "--create-bodyfile")
    assert proc.returncode == 0, proc.stderr
    got = {}
    for line in (out / "pkram.body").read_text().splitlines():
        md5, name, inode, mode, uid, gid, size, atime, mtime, ctime, crtime = line.split("|")
        got[name] = (mode, int(uid), int(gid), int(size), int(atime), int(mtime), int(ctime))

    def secs(ns):   # whole seconds, cut toward zero (as volatility.body has them)
        return abs(ns) // 10**9 * (1 if ns >= 0 else -1)

    assert got == {f"PKRAM file {f['node']}/{f['name']}": (
        stat.filemode(f["mode"]), f["uid"], f["gid"], f["size"], secs(f["atime_ns"]),
        secs(f["mtime_ns"]), secs(f["ctime_ns"])) for f in manifest["files"]}
    assert len((out / "volatility.body").read_text().splitlines()) == len(got)
