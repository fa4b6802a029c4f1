"""The `goex` command line: one module per command group (cmd_*.py), wired up in main.py."""
