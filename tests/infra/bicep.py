"""A small reader of Bicep files for the infrastructure tests, built on tree-sitter-bicep.

It knows just enough of the syntax tree to answer what the tests ask: which parameters a
file declares (and which have defaults), which modules it calls with which parameters,
its outputs, variables, resources and their property values. No Azure, no Bicep CLI.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import tree_sitter
import tree_sitter_bicep

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
MAIN = INFRA / "main.bicep"


@cache
def _parser() -> tree_sitter.Parser:
    return tree_sitter.Parser(tree_sitter.Language(tree_sitter_bicep.language()))


def parse(source: bytes) -> tree_sitter.Tree:
    return _parser().parse(source)


def problems(node: tree_sitter.Node) -> list[str]:
    """Every ERROR or MISSING node under `node`, as 'TYPE at line:col' (1-based)."""
    found: list[str] = []
    stack = [node]
    while stack:
        n = stack.pop()
        if n.is_error or n.is_missing:
            kind = f"MISSING {n.type}" if n.is_missing else "ERROR"
            found.append(f"{kind} at {n.start_point[0] + 1}:{n.start_point[1] + 1}: {_text(n)[:60]!r}")
        stack.extend(n.children)
    return sorted(found)


def _text(node: tree_sitter.Node) -> str:
    return (node.text or b"").decode()


def string_value(node: tree_sitter.Node) -> str | None:
    """The literal value of a string node without interpolation, else None."""
    if node.type != "string" or any(c.type == "interpolation" for c in node.named_children):
        return None
    return "".join(_text(c) for c in node.named_children if c.type == "string_content")


def key_of(prop: tree_sitter.Node) -> str:
    """The key of an object_property: a bare identifier or a quoted string."""
    key = prop.named_children[0]
    if key.type == "string":
        value = string_value(key)
        assert value is not None, f"interpolated object key {_text(key)!r}"
        return value
    return _text(key)


def value_of(prop: tree_sitter.Node) -> tree_sitter.Node:
    return [c for c in prop.named_children if c.type != "comment"][1]


def properties(obj: tree_sitter.Node) -> dict[str, tree_sitter.Node]:
    """key -> value node of an object literal."""
    assert obj.type == "object", f"expected an object, got {obj.type}: {_text(obj)[:60]!r}"
    return {key_of(p): value_of(p) for p in obj.named_children if p.type == "object_property"}


def body(declaration: tree_sitter.Node) -> tree_sitter.Node:
    """The object of a resource or module, looking through `if (...)` and `[for ...]`."""
    for child in declaration.named_children:
        if child.type == "object":
            return child
        if child.type in ("if_statement", "for_statement"):
            return body(child)
    raise AssertionError(f"no body in {_text(declaration)[:80]!r}")


def lookup(obj: tree_sitter.Node, dotted: str) -> tree_sitter.Node | None:
    """The value at a dotted path such as 'properties.siteConfig.appSettings', or None."""
    node: tree_sitter.Node | None = obj
    for part in dotted.split("."):
        if node is None or node.type != "object":
            return None
        node = properties(node).get(part)
    return node


@dataclass(frozen=True)
class Module:
    symbol: str
    path: str
    conditional: bool
    params: dict[str, tree_sitter.Node]


@dataclass(frozen=True)
class Resource:
    symbol: str
    type: str
    api_version: str
    existing: bool
    body: tree_sitter.Node


@dataclass
class BicepFile:
    path: Path
    tree: tree_sitter.Tree
    params: dict[str, bool] = field(default_factory=dict)  # name -> has a default
    param_decorators: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, tree_sitter.Node] = field(default_factory=dict)
    output_decorators: dict[str, str] = field(default_factory=dict)
    variables: dict[str, tree_sitter.Node] = field(default_factory=dict)
    modules: list[Module] = field(default_factory=list)
    resources: list[Resource] = field(default_factory=list)

    @property
    def text(self) -> str:
        return _text(self.tree.root_node)

    def resources_of(self, type_name: str) -> list[Resource]:
        return [r for r in self.resources if r.type.lower() == type_name.lower() and not r.existing]


def _declared_name(node: tree_sitter.Node) -> str:
    return _text(next(c for c in node.named_children if c.type == "identifier"))


@cache
def load(path: Path) -> BicepFile:
    tree = parse(path.read_bytes())
    result = BicepFile(path=path, tree=tree)
    decorators = ""
    for node in tree.root_node.named_children:
        if node.type == "decorators":
            decorators = _text(node)
            continue
        if node.type == "parameter_declaration":
            name = _declared_name(node)
            result.params[name] = any(c.type == "=" for c in node.children)
            result.param_decorators[name] = decorators
        elif node.type == "output_declaration":
            name = _declared_name(node)
            result.outputs[name] = node.named_children[-1]
            result.output_decorators[name] = decorators
        elif node.type == "variable_declaration":
            result.variables[_declared_name(node)] = node.named_children[-1]
        elif node.type == "module_declaration":
            target = next(c for c in node.named_children if c.type == "string")
            obj = body(node)
            params = lookup(obj, "params")
            result.modules.append(
                Module(
                    symbol=_declared_name(node),
                    path=string_value(target) or _text(target),
                    conditional=any(c.type == "if_statement" for c in node.named_children),
                    params=properties(params) if params is not None else {},
                )
            )
        elif node.type == "resource_declaration":
            target = next(c for c in node.named_children if c.type == "string")
            type_and_version = string_value(target) or ""
            type_name, _, version = type_and_version.partition("@")
            result.resources.append(
                Resource(
                    symbol=_declared_name(node),
                    type=type_name,
                    api_version=version,
                    existing=any(c.type == "existing" for c in node.children),
                    body=body(node),
                )
            )
        if node.type != "comment":
            decorators = ""
    return result


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


def walk(node: tree_sitter.Node) -> Iterator[tree_sitter.Node]:
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        stack.extend(reversed(n.children))


def text_at(obj: tree_sitter.Node, dotted: str) -> str:
    """The source text of the value at a dotted path; fails the test when it is absent."""
    node = lookup(obj, dotted)
    assert node is not None, f"no {dotted} in {_text(obj)[:60]!r}"
    return _text(node)


def string_at(obj: tree_sitter.Node, dotted: str) -> str | None:
    """The literal string at a dotted path, or None when absent or not a plain string."""
    node = lookup(obj, dotted)
    return None if node is None else string_value(node)
