"""The tests patch no private name of vbot_cdr: they go through its seams.

A private name is one with a component starting with ``_`` below ``vbot_cdr`` (a private
module such as ``vbot_cdr._retry``, or a private attribute such as ``VBotClient._send``).
What a test may use instead: `vbot_cdr.testing.instant_retries`, `RetryPolicy(sleep=...)`,
`vbot_cdr.testing.remembered_ids`, the transport seam (``VBotClient(transport=...)``), the
fake server's options, a constructor argument, or a subclass of its own.

The scan reads each test module's syntax tree: ``monkeypatch.setattr``/``setitem``/
``delattr``, ``unittest.mock.patch``/``patch.object``, and plain assignments to an
attribute of an imported name (``SomeClass.method = ...``), resolved through the module's
imports.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS = Path(__file__).parent

#: The patches still allowed, by test module: none. The scan fails on a stale entry.
STILL_PATCHED: dict[str, list[str]] = {}

PATCHERS = {"setattr", "setitem", "delattr", "patch", "object"}


def is_private(path: str) -> bool:
    """Whether the dotted ``path`` names something private of vbot_cdr."""
    parts = path.split(".")
    return parts[0] == "vbot_cdr" and any(part.startswith("_") for part in parts[1:])


class Imports:
    """The names a module binds to vbot_cdr by its imports (anywhere in it), with their paths."""

    def __init__(self, tree: ast.AST):
        self.paths: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "vbot_cdr":
                        bound = alias.asname or alias.name.split(".")[0]
                        self.paths[bound] = alias.name if alias.asname else "vbot_cdr"
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("vbot_cdr"):
                for alias in node.names:
                    self.paths[alias.asname or alias.name] = f"{node.module}.{alias.name}"

    def path(self, node: ast.expr) -> str | None:
        """The dotted path ``node`` names, if it is rooted at a name bound to vbot_cdr."""
        if isinstance(node, ast.Name):
            return self.paths.get(node.id)
        if isinstance(node, ast.Attribute):
            root = self.path(node.value)
            return None if root is None else f"{root}.{node.attr}"
        return None


def patched(node: ast.Call, imports: Imports) -> str | None:
    """The path a patching call replaces, if it is one and its target is vbot_cdr's."""
    function = node.func
    if not isinstance(function, ast.Attribute) or function.attr not in PATCHERS:
        return None
    args = node.args
    if args and isinstance(args[0], ast.Constant) and isinstance(args[0].value, str):
        return args[0].value  # setattr("vbot_cdr._retry._sleep", ...), patch("...")
    if len(args) >= 2 and isinstance(args[1], ast.Constant) and isinstance(args[1].value, str):
        target = imports.path(args[0])
        if target is not None:
            return f"{target}.{args[1].value}"
    return None


def private_patches(path: Path) -> Iterator[tuple[int, str]]:
    """The line and the path of each private name of vbot_cdr that the module patches."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    imports = Imports(tree)
    for node in ast.walk(tree):
        found: list[str | None] = []
        if isinstance(node, ast.Call):
            found.append(patched(node, imports))
        elif isinstance(node, (ast.Assign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            found += [imports.path(t) for t in targets if isinstance(t, ast.Attribute)]
        for name in found:
            if name is not None and is_private(name):
                yield node.lineno, name


def test_the_tests_patch_no_private_name_of_the_library() -> None:
    found: dict[str, list[str]] = {}
    for path in sorted(TESTS.rglob("*.py")):
        for line, name in private_patches(path):
            found.setdefault(path.relative_to(TESTS).as_posix(), []).append(name)
            print(f"{path.relative_to(TESTS)}:{line}: {name}")
    assert found == STILL_PATCHED, "use a seam instead (see this module's docstring)"


@pytest.mark.parametrize(
    "source",
    [
        "from vbot_cdr import _retry\nmonkeypatch.setattr(_retry, '_sleep', f)",
        "from vbot_cdr import _exactly_once as eo\nmonkeypatch.setattr(eo, 'MIN', 0)",
        "from vbot_cdr._pagination import Paginator\nmonkeypatch.setattr(Paginator, 'x', f)",
        "from vbot_cdr import VBotClient\nmonkeypatch.setattr(VBotClient, '_send', f)",
        "import vbot_cdr\nmonkeypatch.setattr(vbot_cdr._wire, 'read', None)",
        "monkeypatch.setattr('vbot_cdr._retry._sleep', f)",
        "from unittest import mock\nmock.patch('vbot_cdr._client._utc_now')",
        "from vbot_cdr import _client\nmock.patch.object(_client, 'logger')",
        "from vbot_cdr._sinks._backends import Database\nDatabase.save = f",
        "def t():\n    from vbot_cdr._sinks import _backends\n    _backends._SQLite.load = f",
    ],
)
def test_the_scan_finds_each_way_of_patching(source: str, tmp_path: Path) -> None:
    module = tmp_path / "test_example.py"
    module.write_text(source)
    assert len(list(private_patches(module))) == 1


@pytest.mark.parametrize(
    "source",
    [
        "import os\nmonkeypatch.setattr(os, 'replace', f)",
        "import getpass\nmonkeypatch.setattr(getpass, 'getpass', f)",
        "from vbot_cdr.testing import FakeVBotServer\nFakeVBotServer.x = 1",
        "server.max_in_flight = 2",
        "from vbot_cdr import RetryPolicy\nRetryPolicy(sleep=f)",
    ],
)
def test_the_scan_leaves_other_patches_alone(source: str, tmp_path: Path) -> None:
    module = tmp_path / "test_example.py"
    module.write_text(source)
    assert list(private_patches(module)) == []
