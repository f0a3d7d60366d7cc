"""``vol-pkram``: volatility's own ``vol`` with this package's plugins on the plugin path.

It keeps the README's exit-status contract for every failure, with one line
on stderr and never a traceback (plain ``vol`` differs: README "Exit status"):

* 0: the plugin ran (findings in the image are rows and log lines);
* 1 (:data:`~.report.EXIT_USAGE`): it could not run: a bad option value, an
  unknown plugin, a missing ``-o`` directory, YARA rules that cannot be read
  or compiled, a ``-f`` that does not exist or is no memory image
  volatility can open, an unexpected error;
* 2 (:data:`~.report.EXIT_NOT_FOUND`): the image holds nothing to read (the
  plugins themselves exit so, under plain ``vol`` too);
* 3 (:data:`~.dump.EXIT_OUTPUT_FAULT`): writing under ``-o`` stopped part-way
  (no space, I/O error; the extract plugins exit so themselves);
* 130: interrupted (Ctrl-C).

The line starts ``kho: error:`` for the kho.*/luo.* plugins, ``pkram: error:``
otherwise. How: argparse's ``error`` (status 2 by its convention) is replaced
in this process by a one-line error with status 1; this package's options get
argparse types from :mod:`.values` (``--sb-pfn garbage`` names the option and
the accepted forms instead of ``invalid <lambda> value``); volatility's
multi-line reports of unsatisfied requirements and exceptions become one line
(the full trace is logged at debug level: ``-vvv``).
"""

from __future__ import annotations

import argparse
import inspect
import logging
import os
import re
import sys
import traceback
from urllib import parse

from .. import PLUGIN_DIR
from . import report, values

__all__ = ["main", "prefix_for"]

vollog = logging.getLogger("volatility_pkram")

#: the plugin named on the command line, once argparse has matched it
_chosen = {"plugin": None}


def prefix_for(plugin_name) -> str:
    """``kho`` for a kho.*/luo.* plugin, ``pkram`` for anything else."""
    parts = str(plugin_name or "").split(".")
    return "kho" if "kho" in parts or "luo" in parts else "pkram"


def _fail(message: str, status: int = report.EXIT_USAGE):
    report.fail(message, status, prefix_for(_chosen["plugin"]))


def _argparse_type(parse):
    """A parser of :mod:`.values` as an argparse ``type`` (its message, not ``invalid <lambda>``)."""
    def convert(text):
        try:
            value = parse(text)
        except values.OptionError as exc:
            raise argparse.ArgumentTypeError(exc.reason) from None
        # volatility's config holds ints and text only: a time stays the text the plugin parses
        return value if isinstance(value, int) else text
    convert.__name__ = parse.__name__
    return convert


def _ours(configurable) -> bool:
    """Whether a plugin class comes from this package's plugin directory."""
    try:
        return os.path.abspath(inspect.getfile(configurable)).startswith(PLUGIN_DIR + os.sep)
    except TypeError:
        return False


def _our_plugin_names():
    """``pkram.info``, ``kho.ranges``...: the names to type for this package's plugins."""
    base = os.path.join(PLUGIN_DIR, "linux")
    return sorted(f"{family}.{name[:-3]}" for family in os.listdir(base)
                  if os.path.isdir(os.path.join(base, family))
                  for name in os.listdir(os.path.join(base, family))
                  if name.endswith(".py") and not name.startswith("_"))


def _local(path) -> bool:
    """A path without a URL scheme (``C:`` counts as none), as volatility tells them apart."""
    if not isinstance(path, str) or not path:
        return False
    scheme = parse.urlparse(path).scheme
    return not scheme or len(scheme) <= 1


def _missing_file(path) -> bool:
    """A local path that does not exist (volatility's populate_config raises on it)."""
    return _local(path) and not os.path.exists(path)


def _check_readable(path: str) -> None:
    """Exit with status 1 when the -f file cannot be opened (a directory, no permission)."""
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        _fail(f"-f: cannot read {path}: {exc.strerror or exc}")


def _command_line_class():
    from volatility3 import cli
    from volatility3.cli import volargparse
    from volatility3.framework.configuration import requirements

    class OneLineParser(volargparse.HelpfulArgParser):
        """argparse errors as one ``pkram: error:`` line, with status 1."""

        def parse_known_args(self, args=None, namespace=None):
            parsed, rest = super().parse_known_args(args, namespace)
            _chosen["plugin"] = getattr(parsed, "plugin", None) or _chosen["plugin"]
            return parsed, rest

        def error(self, message):
            words = self.prog.split()
            if len(words) > 1:      # a plugin's subparser: "vol-pkram linux.kho.info.Info"
                _chosen["plugin"] = words[-1]
            unknown = re.match(r"argument PLUGIN: invalid choice (.*) \(choose from ", message)
            if message.startswith("File does not exist: "):
                message = "-f: no such file: " + message.split(": ", 1)[1]
            if unknown:             # not the list of all ~200 plugins
                name = unknown.group(1)
                failed = [f for f in (self.epilog or "").split(": ", 1)[-1].split(", ") if name in f]
                message = (f"argument PLUGIN: no plugin matches {name!r} (-h lists them all; this "
                           f"package's: {', '.join(_our_plugin_names())})" +
                           (f"; {', '.join(failed)} could not be loaded (-vv says why)"
                            if failed else ""))
            _fail(message)

    class PkramCommandLine(cli.CommandLine):
        """volatility's command line, with the README's exit statuses and one-line errors."""

        def populate_requirements_argparse(self, parser, configurable):
            super().populate_requirements_argparse(parser, configurable)
            if not _ours(configurable):
                return
            for requirement in configurable.get_requirements():
                action = parser._option_string_actions.get("--" + requirement.name.replace("_", "-"))
                parse = values.PARSERS.get(requirement.name)
                if action is not None and parse is not None:
                    action.type = _argparse_type(parse)

        def process_unsatisfied_exceptions(self, excp):
            names = ", ".join(sorted(str(path).rsplit(".", 1)[-1] for path in excp.unsatisfied))
            layer = any(isinstance(req, requirements.TranslationLayerRequirement)
                        for req in excp.unsatisfied.values())
            hint = ("is -f a memory image volatility can open: raw, LiME, ELF core, AVML...?"
                    if layer else "does a symbol table (-s DIR) match the image?")
            _fail(f"cannot run the plugin: unsatisfied requirement(s) {names} ({hint})")

        def process_exceptions(self, excp):
            vollog.debug("".join(traceback.format_exception(type(excp), excp, excp.__traceback__)))
            _fail(f"volatility could not run the plugin: {type(excp).__name__}: {excp}")

        def populate_config(self, context, configurables_list, args, plugin_config_path):
            plugin = configurables_list.get(args.plugin)
            if _ours(plugin) and not (args.file or args.single_location or args.config):
                _fail("no memory image: give -f FILE (before the plugin name)")
            if _local(args.file):
                _check_readable(args.file)
            for requirement in plugin.get_requirements() if plugin is not None else []:
                path = vars(args).get(requirement.name)
                if isinstance(requirement, requirements.URIRequirement) and _missing_file(path):
                    _fail(f"--{requirement.name.replace('_', '-')}: no such file: {path}")
            super().populate_config(context, configurables_list, args, plugin_config_path)

    return cli, volargparse, OneLineParser, PkramCommandLine


def main() -> None:
    from volatility3.framework import constants

    # volatility3.plugins.__path__ is constants.PLUGINS_PATH; -p prepends to it,
    # so inserting here survives an extra -p on the command line.
    if PLUGIN_DIR not in constants.PLUGINS_PATH:
        constants.PLUGINS_PATH.insert(0, PLUGIN_DIR)
    cli, volargparse, parser_class, command_line = _command_line_class()
    # run() builds its parser as volargparse.HelpfulArgParser(...): ours in this process only
    volargparse.HelpfulArgParser = parser_class
    try:
        command_line().run()
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except BrokenPipeError:            # the reader of stdout went away (| head): no message
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(report.EXIT_USAGE)
    except Exception as exc:           # never a traceback; -vvv logs it
        vollog.debug("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
        _fail(f"{type(exc).__name__}: {exc} (run with -vvv for the traceback)")


if __name__ == "__main__":  # pragma: no cover
    main()
