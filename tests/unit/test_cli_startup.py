"""What the CLI loads before it needs goexd (issue 19: start-up), and the tables that make it lazy.

Timings are in `make bench` (bench/cli_startup_bench.py); these tests check the modules a command
leaves unloaded, which is what the timings come from and what a later import at module level would undo.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import goex
from goex.cli import _json
from goex.cli.main import COMMANDS, build_parser

HEAVY = ("grpc", "rich", "google.protobuf", "goex.v1", "goex._client", "goex._models", "asyncio")


def _loaded_after(*argv: str) -> set[str]:
    """The top-level modules (and goex's) a fresh interpreter holds after `goex ARGV...`."""
    code = (
        "import sys, json\n"
        "from goex.cli.main import main\n"
        "try:\n"
        f"    main({list(argv)!r})\n"
        "finally:\n"
        "    sys.stderr.write(json.dumps(sorted(sys.modules)))\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    return set(json.loads(p.stderr.splitlines()[-1]))


@pytest.mark.parametrize("argv", [["--version"], ["--help"], []], ids=["--version", "--help", "bare"])
def test_version_and_help_load_no_client_stack(argv: list[str]) -> None:
    loaded = _loaded_after(*argv)
    heavy = sorted(m for m in loaded if any(m == h or m.startswith(h + ".") for h in HEAVY))
    assert heavy == [], f"goex {' '.join(argv)} loaded {heavy}"


def test_a_command_loads_only_its_own_module() -> None:
    loaded = _loaded_after("policy", "check", "/nonexistent.toml")
    commands = {m for m in loaded if m.startswith("goex.cli.cmd_")}
    assert commands == {"goex.cli.cmd_policy"}
    assert "goex._aio" not in loaded  # the asyncio client


def test_commands_table_matches_what_the_modules_register() -> None:
    """COMMANDS (name -> module, help) is what `goex --help` lists without loading the modules."""
    parser = build_parser()  # complete: every module registers its commands
    sub = next(a for a in parser._actions if isinstance(a, __import__("argparse")._SubParsersAction))
    registered = {ca.dest: ca.help for ca in sub._choices_actions}
    assert registered == {name: help_text for name, (_, help_text) in COMMANDS.items()}
    for name, (module, _) in COMMANDS.items():
        handler_owner = sub.choices[name]
        # The module named in the table is the one that defines the command (its parser's defaults or verbs).
        defined_in = {
            getattr(p.get_default("handler"), "__module__", None)
            for p in [handler_owner, *_verb_parsers(handler_owner)]
        } - {None}
        assert defined_in == {f"goex.cli.{module}"}, name


def _verb_parsers(parser: object) -> list[object]:
    import argparse

    assert isinstance(parser, argparse.ArgumentParser)
    return [p for a in parser._actions if isinstance(a, argparse._SubParsersAction) for p in a.choices.values()]


def test_lazy_package_exports_every_public_name() -> None:
    for name in sorted(set(goex.__all__) - {"__version__"}):
        assert getattr(goex, name) is not None
    with pytest.raises(AttributeError):
        _ = goex.NoSuchName  # type: ignore[attr-defined]


def test_the_sync_client_does_not_load_the_asyncio_one() -> None:
    code = "import sys, goex; goex.Client, goex.Shell, goex.ActionState; print('goex._aio' in sys.modules)"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert p.stdout.strip() == "False"


def test_version_matches_the_installed_distribution() -> None:
    from importlib import metadata

    assert goex.__version__ == metadata.version("goex-client")


def test_shipped_json_schema_is_current() -> None:
    """The schema file next to goex/cli/_json.py is what the code generates: a change to the proto (or to the
    JSON rules) shows up as a change of this file, to be reviewed (python -m goex.cli._json > that file)."""
    assert json.loads(_json.SCHEMA_PATH.read_text()) == _json.build_schema(), (
        "regenerate: .venv/bin/python -m goex.cli._json > clients/python/goex/cli/goex-json.schema.json"
    )


def test_schema_names_every_command() -> None:
    parser = build_parser()
    import argparse

    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    named: set[str] = set()
    for name, p in sub.choices.items():
        verbs = _verb_parsers(p)
        if verbs:
            verb_action = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
            named |= {f"{name} {verb}" for verb in verb_action.choices}
        else:
            named.add(name)
    assert set(_json.COMMAND_OUTPUTS) == named


def test_output_off_a_terminal_does_not_load_rich() -> None:
    """Piped output (what scripts read) is plain text written without rich (not even rich.text); a table still
    renders, and so does rich's own Text where a command has one."""
    code = (
        "import argparse, io, sys\n"
        "from goex.cli._app import App\n"
        "from goex.cli._render import action_headline, kv_grid\n"
        "from goex.cli._text import Text\n"
        "out = io.StringIO()\n"
        "app = App(argparse.Namespace(), stdout=out)\n"
        "app.out.print(kv_grid([('state', Text('executed', style='yellow')), ('exit', '0')]))\n"
        "app.out.print('[red]x', markup=False)\n"
        "line = Text('[bold]a', style='red')\n"
        "line.append(' b', style='dim')\n"
        "app.out.print(line)\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('rich'))\n"
        "from rich.table import Table\n"
        "from rich.text import Text as RichText\n"
        "t = Table(box=None, pad_edge=False)\n"
        "t.add_column('A')\n"
        "t.add_row(Text('1', style='green'))\n"
        "app.print_table(t)\n"
        "app.out.print(kv_grid([('rich', RichText('r', style='red'))]))\n"
        "print(repr(out.getvalue()), loaded)\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert p.stdout.strip() == repr("state  executed\nexit   0\n[red]x\n[bold]a b\nA\n1\nrich  r\n") + " []"


def test_goex_text_renders_with_its_styles_on_a_terminal() -> None:
    """On a terminal (here rich's console made to write colour into a buffer) goex's Text is rich's, styles and all,
    and markup in it stays text."""
    import io

    from rich.console import Console

    from goex.cli._render import kv_grid
    from goex.cli._text import Text

    line = Text("[red]x", style="bold")
    line.append(" ok", style="green")
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, color_system="standard", width=80)
    console.print(kv_grid([("k", line)]))
    written = buffer.getvalue()
    # the key bold; the text bold (its own style), its appended part bold and green
    assert written == "\x1b[1mk  \x1b[0m\x1b[1m[red]x\x1b[0m\x1b[1;32m ok\x1b[0m\n"
