"""The volatility3 front end: the only modules of the library (with ``plugins/``) that import volatility3."""
