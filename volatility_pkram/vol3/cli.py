"""``vol-pkram``: volatility's own ``vol`` with this package's plugins on the plugin path."""

from __future__ import annotations

from .. import PLUGIN_DIR


def main() -> None:
    from volatility3.framework import constants

    # volatility3.plugins.__path__ is constants.PLUGINS_PATH; -p prepends to it,
    # so inserting here survives an extra -p on the command line.
    if PLUGIN_DIR not in constants.PLUGINS_PATH:
        constants.PLUGINS_PATH.insert(0, PLUGIN_DIR)
    from volatility3 import cli

    cli.main()


if __name__ == "__main__":  # pragma: no cover
    main()
