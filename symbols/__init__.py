"""ISF (volatility3 intermediate symbol format) declarations of the PKRAM structs.

One file per RFC revision: ``pkram-v1.json``, ``pkram-v2.json``, ``pkram-v3.json``.
They are the single source of truth for offsets: :mod:`volatility_pkram.core.isf`
compiles readers from them, and the tests check them against the format spec.
"""
