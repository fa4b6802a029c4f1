"""Styled text as the commands build it, without loading rich.

Where nobody watches (a pipe, a file, a script's capture) the CLI writes only `.plain` and never imports
rich (rich.text alone is ~12 ms of a command's start); on a terminal a rich console renders it as rich's
own Text (`__rich__`, which rich's consoles and tables call). The API is the part of rich's Text the
commands use, so either may be passed where text is printed.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import rich.text

__all__ = ["PlainText", "Text", "plain"]


class PlainText(Protocol):
    """What a plain console writes: this class's objects and rich's Text both have it."""

    @property
    def plain(self) -> str: ...


class Text:
    """Text in parts, each with a rich style ("red", "bold", "" for none); never parsed as markup, so a file
    named "[red]x" prints as itself."""

    __slots__ = ("_parts", "style")

    def __init__(self, text: str = "", style: str = "") -> None:
        self.style = style  # the whole text's, under the parts' own (as rich's Text.style)
        self._parts: list[tuple[str, str] | PlainText] = [(text, "")] if text else []

    @property
    def plain(self) -> str:
        return "".join(p[0] if isinstance(p, tuple) else p.plain for p in self._parts)

    def append(self, text: str, style: str = "") -> Text:
        if text:
            self._parts.append((text, style))
        return self

    def append_text(self, text: PlainText) -> Text:
        """Another text (this class's or rich's), with its styles."""
        self._parts.append(text)
        return self

    def stylize(self, style: str) -> None:
        """Style the whole text (as rich's Text.stylize without a range)."""
        self.style = f"{self.style} {style}".strip()

    def __rich__(self) -> rich.text.Text:
        from rich.text import Text as RichText

        parts: list[Any] = [p if isinstance(p, tuple) else _as_rich(p) for p in self._parts]
        return RichText.assemble(*parts, style=self.style)

    def __str__(self) -> str:
        return self.plain

    def __len__(self) -> int:
        return len(self.plain)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Text):
            return NotImplemented
        return self.style == other.style and self._parts == other._parts

    __hash__ = None  # type: ignore[assignment]  # mutable, as rich's

    def __repr__(self) -> str:
        return f"Text({self.plain!r}, style={self.style!r})"


def _as_rich(text: PlainText) -> Any:
    convert = getattr(text, "__rich__", None)
    return convert() if convert is not None else text


def plain(value: object) -> str | None:
    """The text of a str, of this class's Text or of rich's (if loaded); None for anything else (a table)."""
    if isinstance(value, str):
        return value
    if isinstance(value, Text):
        return value.plain
    rich_text = sys.modules.get("rich.text")  # a rich Text can exist only once rich.text is loaded
    if rich_text is not None and isinstance(value, rich_text.Text):
        text: str = value.plain
        return text
    return None
