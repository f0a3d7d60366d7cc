"""``python -m volatility_pkram``: helper commands for running the plugins.

    plugin-dir        print the directory to give ``vol -p``
    install-config    add that directory to volatility's vol.json (opt-in; merges)
    remove-config     take it out again
"""

from __future__ import annotations

import argparse
import sys

from . import PLUGIN_DIR, __version__

from .vol3 import config


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m volatility_pkram", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("plugin-dir", help="print the plugin directory for vol -p")
    for name in ("install-config", "remove-config"):
        p = sub.add_parser(name, help=f"{name.split('-')[0]} our plugin directory in vol.json")
        p.add_argument("--config", help="path of vol.json (default: ~/.config/volatility3/vol.json)")
    args = parser.parse_args(argv)
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
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
