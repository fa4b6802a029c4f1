"""The client's version, read by pyproject.toml at build time and by `goex --version` at run time.

A constant rather than importlib.metadata: looking the installed distribution up costs ~30 ms of
every CLI start-up.
"""

__version__ = "0.1.0"
