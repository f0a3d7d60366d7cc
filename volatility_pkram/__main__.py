"""python -m volatility_pkram: helper commands for running the plugins.

    plugin-dir       print the directory to give vol -p
    install-config   add that directory to volatility's vol.json (opt-in; merges)
    remove-config    take it out again
"""

from __future__ import annotations

import argparse
import sys

from . import PLUGIN_DIR, __version__

from .vol3 import config

EXIT_USAGE = 1


class _Parser(argparse.ArgumentParser):
    """argparse with the package's one-line errors and status 1 (README "Exit status")."""

    def error(self, message):
        sys.stderr.write(f"pkram: error: {message}\n")
        raise SystemExit(EXIT_USAGE)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m volatility_pkram",
                     description="Helper commands for running the volatility-pkram plugins.",
                     epilog="Exit status: 0 done; 1 bad usage, or a vol.json that cannot be read "
                            "or written (one 'pkram: error: ...' line on stderr).")
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    sub.add_parser("plugin-dir", help="print the directory to give vol -p")
    for name, what in (("install-config", "add that directory to volatility's vol.json "
                                          "(opt-in; merges with what is there)"),
                       ("remove-config", "take it out of vol.json again")):
        p = sub.add_parser(name, help=what)
        p.add_argument("--config", help="path of vol.json (default: ~/.config/volatility3/vol.json)")
    return parser


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "plugin-dir":
        print(PLUGIN_DIR)
        return 0
    try:
        if args.command == "install-config":
            path, changed = config.install(args.config)
            print(f"{'added' if changed else 'already present'}: {PLUGIN_DIR} in {path}")
        else:
            path, changed = config.remove(args.config)
            print(f"{'removed' if changed else 'not present'}: {PLUGIN_DIR} in {path}")
    except (OSError, ValueError) as exc:
        where = args.config or "~/.config/volatility3/vol.json"
        sys.stderr.write(f"pkram: error: {args.command}: {where}: {exc}\n")
        return EXIT_USAGE
    return 0


if __name__ == "__main__":
    sys.exit(main())
