"""The README's exit-status contract, through the real entry points, as a user types them.

Every failure: the documented status, exactly one line on stderr
(``pkram: error: ...``, ``kho: error: ...`` for kho/luo plugins), no traceback.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import private_env
from volatility_pkram import PLUGIN_DIR
from volatility_pkram.vol3 import values

BIN = Path(sys.executable).parent
DATA = Path(__file__).resolve().parents[1] / "testdata"
DEMO = str(DATA / "pkram-v1-demo.raw")
BAD_RULE = 'rule bad { strings: $a = "x" condition: $b }'

USAGE, NOT_FOUND = 1, 2


@pytest.fixture
def run(tmp_path):
    """Run a command in ``tmp_path`` with a private volatility cache; return the process."""
    env = private_env(tmp_path / "home")
    (tmp_path / "bad.yar").write_text(BAD_RULE)
    (tmp_path / "empty.raw").write_bytes(b"")
    (tmp_path / "adir").mkdir()

    def go(*argv):
        return subprocess.run([str(a) for a in argv], capture_output=True, text=True, env=env,
                              cwd=tmp_path, timeout=300)
    return go


def _one_error_line(proc, prefix="pkram"):
    lines = proc.stderr.splitlines()
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"{prefix}: error: "), proc.stderr
    return lines[0]


# (arguments after vol-pkram -q, status, prefix, words the error line must hold)
CASES = [
    (["-f", "missing.raw", "pkram.info"], USAGE, "pkram", ["-f", "missing.raw"]),
    (["-f", "adir", "pkram.ranges"], USAGE, "pkram", ["-f", "adir"]),
    (["pkram.info"], USAGE, "pkram", ["-f FILE"]),
    (["-f", DEMO, "pkram.info", "--revision", "9"], USAGE, "pkram", ["--revision", "'9'"]),
    (["-f", DEMO, "pkram.info", "--sb-pfn", "garbage"], USAGE, "pkram",
     ["--sb-pfn", "'garbage'", "accepted", "0x"]),
    (["-f", DEMO, "pkram.info", "--sb-pfn", "-5"], USAGE, "pkram", ["--sb-pfn", "'-5'", ">= 0"]),
    (["-f", DEMO, "-o", "no-such-dir", "pkram.extract"], USAGE, "pkram", ["no-such-dir"]),
    (["-f", DEMO, "pkram.extract", "--max-file-size", "1X"], USAGE, "pkram",
     ["--max-file-size", "'1X'", "512M"]),
    (["-f", DEMO, "pkram.audit", "--reference-time", "yesterday"], USAGE, "pkram",
     ["--reference-time", "'yesterday'", "ISO 8601"]),
    (["-f", DEMO, "pkram.yarascan", "--yara-string", ""], USAGE, "pkram", ["--yara-string", "empty"]),
    (["-f", DEMO, "pkram.yarascan", "--yara-file", "missing.yar"], USAGE, "pkram",
     ["--yara-file", "missing.yar"]),
    (["-f", DEMO, "pkram.yarascan", "--yara-file", "bad.yar"], USAGE, "pkram",
     ["--yara-file", "$b"]),
    (["-f", DEMO, "pkram.yarascan"], USAGE, "pkram", ["--yara-string"]),
    (["-f", DEMO, "pkram.nosuch"], USAGE, "pkram", ["pkram.nosuch", "pkram.info"]),
    (["-f", DEMO, "pkram.info", "--bogus"], USAGE, "pkram", ["--bogus"]),
    (["-f", "empty.raw", "pkram.info"], NOT_FOUND, "pkram", ["no valid PKRAM super block"]),
    (["-f", DEMO, "kho.info", "--fdt", "zz"], USAGE, "kho", ["--fdt", "'zz'"]),
    (["-f", DEMO, "-o", "no-such-dir", "luo.extract"], USAGE, "kho", ["no-such-dir"]),
    (["-f", DEMO, "luo.yarascan", "--yara-file", "bad.yar"], USAGE, "kho", ["--yara-file"]),
    (["-f", DEMO, "luo.sessions", "--max-file-size", "2"], USAGE, "kho", ["--max-file-size"]),
    (["-f", DEMO, "kho.info"], NOT_FOUND, "kho", ["no KHO FDT"]),
]


@pytest.mark.parametrize("argv,status,prefix,words", CASES,
                         ids=[" ".join(c[0]).replace(DEMO, "DEMO") or "-" for c in CASES])
def test_vol_pkram_failure(run, argv, status, prefix, words):
    proc = run(BIN / "vol-pkram", "-q", *argv)
    assert proc.returncode == status, proc.stderr
    line = _one_error_line(proc, prefix)
    for word in words:
        assert word in line, line
    assert not re.search(r"0x-[0-9]", line) and "<lambda>" not in line


def test_success_is_zero_and_quiet(run):
    proc = run(BIN / "vol-pkram", "-q", "-f", DEMO, "pkram.info", "--sb-pfn", "0x983")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert "occurrence(s): \n" not in proc.stdout and "0 occurrence" not in proc.stdout


def test_accepted_values_reach_the_plugin(run):
    """vol-pkram's parser checks a value and hands volatility what its config holds (a time as
    text, a PFN or size as an int)."""
    proc = run(BIN / "vol-pkram", "-q", "-f", DEMO, "pkram.audit", "--reference-time",
               "2026-12-04T18:20:00Z", "--min-severity", "high")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    proc = run(BIN / "vol-pkram", "-q", "-f", DEMO, "-o", ".", "pkram.extract", "--sb-pfn", "2435",
               "--max-file-size", "512MiB")
    assert proc.returncode == 0 and "shmem-test" in proc.stdout, proc.stderr
    proc = run(BIN / "vol-pkram", "-q", "-f", DEMO, "kho.info", "--fdt", "0x1000", "4096")
    assert proc.returncode == NOT_FOUND and "no KHO FDT" in _one_error_line(proc, "kho")


def test_plain_vol_refuses_what_its_parser_lets_through(run):
    """Plain vol: argparse's own errors exit 2 with its usage text (README), but a value its
    parser accepts and ours refuses gets the plugin's own line and status 1."""
    vol = [BIN / "vol", "-q", "-p", PLUGIN_DIR, "-f", DEMO]
    proc = run(*vol, "pkram.info", "--sb-pfn", "-5")
    assert proc.returncode == USAGE and "'-5'" in _one_error_line(proc)
    proc = run(*vol, "pkram.yarascan", "--yara-file", "bad.yar")
    assert proc.returncode == USAGE and "--yara-file" in _one_error_line(proc)
    proc = run(*vol, "pkram.info", "--revision", "9")
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


def test_python_m_volatility_pkram(run):
    proc = run(sys.executable, "-m", "volatility_pkram", "bogus")
    assert proc.returncode == USAGE and "bogus" in _one_error_line(proc)
    proc = run(sys.executable, "-m", "volatility_pkram")
    assert proc.returncode == USAGE and "command" in _one_error_line(proc)
    proc = run(sys.executable, "-m", "volatility_pkram", "install-config", "--config", "adir")
    assert proc.returncode == USAGE and "adir" in _one_error_line(proc)
    proc = run(sys.executable, "-m", "volatility_pkram", "-h")
    assert proc.returncode == 0 and "``" not in proc.stdout and "plugin-dir" in proc.stdout


@pytest.mark.parametrize("text,expected", [
    ("1G", 1 << 30), ("512M", 512 << 20), ("512m", 512 << 20), ("4096", 4096), ("0x1000", 4096),
    ("16GiB", 16 << 30), ("1 KB", 1024), ("0", 0), (2048, 2048),
])
def test_size_forms(text, expected):
    assert values.size(text) == expected


@pytest.mark.parametrize("text", ["1X", "", "-1", "G", "1.5G", "0x", "1GG"])
def test_size_refused(text):
    with pytest.raises(values.OptionError) as err:
        values.size(text)
    assert err.value.option == "--max-file-size" and "accepted" in err.value.reason


def test_pfn_and_time_forms():
    assert values.pfn("0x983") == 0x983 and values.pfn("10") == 10 and values.pfn(0) == 0
    for bad in ("-5", "garbage", "0x-5", "", True):
        with pytest.raises(values.OptionError):
            values.pfn(bad)
    when = values.reference_time("2026-12-04T18:20:00Z")
    assert when == values.reference_time("2026-12-04T19:20:00+01:00")
    assert values.reference_time("2026-12-04").utcoffset().total_seconds() == 0
    with pytest.raises(values.OptionError):
        values.reference_time("yesterday")
    assert [values.format_size(n) for n in (16 << 30, 512 << 20, 4097, 0)] == ["16G", "512M",
                                                                               "4097", "0"]


def test_output_closed_early_ends_quietly(run, tmp_path):
    """``vol-pkram ... | head -1``: no BrokenPipeError traceback, status 1, no error line."""
    env = private_env(tmp_path / "home")
    # 850 rows as JSON: well over a pipe buffer (64 KiB), so the writer is still writing
    proc = subprocess.Popen([str(BIN / "vol-pkram"), "-q", "-r", "json", "-f", DEMO, "pkram.ranges"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=tmp_path)
    assert proc.stdout.read(8).strip().startswith(b"[")
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == USAGE
    assert "Traceback" not in stderr and "error" not in stderr, stderr   # (the banner is there)


@pytest.mark.parametrize("raised,status,words", [
    ("RuntimeError('boom')", USAGE, ["RuntimeError: boom", "-vvv"]),
    ("KeyboardInterrupt()", 130, ["interrupted"]),
])
def test_unexpected_exception_is_one_line(run, raised, status, words):
    """Anything escaping volatility's command line (a bug, Ctrl-C) still ends in one line."""
    script = ("import sys\n"
              "from volatility3 import cli\n"
              "from volatility_pkram.vol3 import cli as ours\n"
              "def run(self):\n"
              f"    raise {raised}\n"
              "cli.CommandLine.run = run\n"
              "sys.argv = ['vol-pkram', '-f', 'x', 'pkram.info']\n"
              "ours.main()\n")
    proc = run(sys.executable, "-c", script)
    assert proc.returncode == status
    line = _one_error_line(proc)
    assert all(word in line for word in words), line


@pytest.mark.parametrize("call,words", [
    ("process_exceptions(exceptions.LayerException('primary', 'segment table broken'))",
     ["LayerException", "segment table broken"]),
    ("process_unsatisfied_exceptions(exceptions.UnsatisfiedException("
     "{'plugins.Info.primary': requirements.TranslationLayerRequirement('primary')}))",
     ["primary", "-f"]),
])
def test_volatility_reports_are_one_line(run, call, words):
    """volatility's multi-line reports (a plugin's exception, unsatisfied requirements)."""
    script = ("from volatility3.framework import exceptions\n"
              "from volatility3.framework.configuration import requirements\n"
              "from volatility_pkram.vol3 import cli\n"
              "command_line = cli._command_line_class()[3]\n"
              f"command_line.__new__(command_line).{call}\n")
    proc = run(sys.executable, "-c", script)
    assert proc.returncode == USAGE
    line = _one_error_line(proc)
    assert all(word in line for word in words), line
