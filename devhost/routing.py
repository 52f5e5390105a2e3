"""Functions-style HTTP route templates: `threads/{id}`, `{id:int}`, `{id?}`, `{*rest}`.

Templates compile to regular expressions; literal segments match case-insensitively, as
in the Functions host. More specific routes (more literal segments) win.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PARAM = re.compile(r"\{(\*?)([A-Za-z_][A-Za-z0-9_]*)(?::([A-Za-z]+)(?:\([^)]*\))?)?(\??)\}")
_CONSTRAINTS = {
    "int": r"-?\d+",
    "long": r"-?\d+",
    "bool": r"(?i:true|false)",
    "alpha": r"[A-Za-z]+",
    "guid": r"[0-9A-Fa-f]{8}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{12}",
    "double": r"-?\d+(?:\.\d+)?",
    "float": r"-?\d+(?:\.\d+)?",
    "decimal": r"-?\d+(?:\.\d+)?",
}


@dataclass(frozen=True)
class RouteTemplate:
    template: str
    pattern: re.Pattern[str]
    literal_segments: int

    def match(self, path: str) -> dict[str, str] | None:
        found = self.pattern.fullmatch(path.strip("/"))
        if found is None:
            return None
        return {k: v for k, v in found.groupdict().items() if v is not None}


def compile_route(template: str) -> RouteTemplate:
    parts: list[str] = []
    literal = 0
    for index, segment in enumerate(template.strip("/").split("/")):
        separator = "/" if index else ""
        whole = _PARAM.fullmatch(segment)
        if whole and whole.group(4):  # optional segment: the separator is optional too
            inner = _CONSTRAINTS.get((whole.group(3) or "").lower(), r"[^/]+")
            parts.append(f"(?:{re.escape(separator)}(?P<{whole.group(2)}>{inner}))?")
            continue
        if whole and whole.group(1):  # catch-all
            parts.append(f"(?:{re.escape(separator)}(?P<{whole.group(2)}>.*))?")
            continue
        pieces: list[str] = []
        position = 0
        for param in _PARAM.finditer(segment):
            pieces.append(f"(?i:{re.escape(segment[position : param.start()])})")
            inner = _CONSTRAINTS.get((param.group(3) or "").lower(), r"[^/]+")
            pieces.append(f"(?P<{param.group(2)}>{inner})")
            position = param.end()
        rest = segment[position:]
        if position == 0:
            literal += 1
        pieces.append(f"(?i:{re.escape(rest)})")
        parts.append(re.escape(separator) + "".join(pieces))
    return RouteTemplate(template=template, pattern=re.compile("".join(parts)), literal_segments=literal)
