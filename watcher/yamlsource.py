"""Reading YAML for the config: plain data plus the line of every key, so that an error can
name the line the user wrote, and ``${VAR}`` / ``${VAR:-default}`` taken from the environment.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml

Path_ = tuple[str | int, ...]
"""Where a value sits: keys and list indexes from the top, e.g. ("rules", 1, "notify", 0)."""

_STR = "tag:yaml.org,2002:str"
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's parser when PyYAML was built with it: ten times faster on a config of thousands
of rules, and its nodes carry the same line marks."""
MAX_DEPTH = 64
"""Deepest nesting of lists and mappings: libyaml composes recursively, in C, and a file
nested a hundred thousand levels deep would crash the process."""
MAX_ALIAS_VALUES = 10_000
"""Values that aliases (``*name``) may repeat in all: aliases that expand each other
("billion laughs") would otherwise turn a few hundred bytes into gigabytes."""
_ENV = re.compile(r"\$(\$)?\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


_LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")
"""What YAML counts as the end of a line (its marks count lines by these)."""
_COUNTING = -1
_OPENING = (yaml.SequenceStartEvent, yaml.MappingStartEvent)
_CLOSING = (yaml.SequenceEndEvent, yaml.MappingEndEvent)


def _too_deep(text: str) -> int | None:
    """The line where lists and mappings first nest deeper than MAX_DEPTH, or None.

    Read as a stream of events, which libyaml produces without recursion."""
    depth = 0
    for event in yaml.parse(text, Loader=_LOADER):
        if isinstance(event, _OPENING):
            depth += 1
            if depth > MAX_DEPTH:
                return event.start_mark.line + 1 if event.start_mark else 1
        elif isinstance(event, _CLOSING):
            depth -= 1
    return None


def _tab_at(text: str, line: int, column: int) -> bool:
    """Whether a syntax error is a tab's doing: the parser stopped on a tab, or in a line
    indented with one (libyaml's "found character that cannot start any token" says neither)."""
    lines = _LINE_BREAK.split(text)
    if line >= len(lines):
        return False
    found = lines[line]
    indentation = found[: len(found) - len(found.lstrip(" \t"))]
    return "\t" in indentation or found[column : column + 1] == "\t"


def format_path(path: Path_) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


class _AliasBomb(Exception):
    """Aliases repeat too much, or an alias holds itself."""

    def __init__(self, path: Path_, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


class Source:
    """YAML text as plain data, with the line of every key, and ``${VAR}`` interpolated.

    Problems are collected, never raised, so that a file's every error is reported at once.
    """

    def __init__(self, filename: str, env: Mapping[str, str]) -> None:
        self.filename = filename
        self.env = env
        self.lines: dict[Path_, int] = {}
        self.problems: list[str] = []
        self._constructor = yaml.SafeLoader("")
        self._built: set[int] = set()
        self._sizes: dict[int, int] = {}
        self._repeated = 0

    def read(self, text: str) -> Any:
        try:
            too_deep = _too_deep(text)
            if too_deep is not None:
                self.problems.append(
                    f"{self.filename}:{too_deep}: lists and mappings nested more than "
                    f"{MAX_DEPTH} levels deep: refused"
                )
                return None
            node = yaml.compose(text, Loader=_LOADER)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f":{mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc)
            if mark is not None and _tab_at(text, mark.line, mark.column):
                problem = "a tab: YAML does not allow tabs for indentation (indent with spaces)"
            self.problems.append(f"{self.filename}{line}: YAML syntax error: {problem}")
            return None
        if node is None:
            return None
        try:
            return self._build(node, ())
        except _AliasBomb as exc:
            self.problems.append(self.at(exc.path, exc.message))
            return None

    def _build(self, node: yaml.Node, path: Path_) -> Any:
        if id(node) in self._built:  # an alias: the composer hands back the anchored node
            self.lines.setdefault(path, self.line_of(path[:-1]))
            self._repeated += self._size(node, path)
            if self._repeated > MAX_ALIAS_VALUES:
                raise _AliasBomb(
                    path,
                    f"aliases repeat more than {MAX_ALIAS_VALUES:,} values in all: refused "
                    "(write the values out, or nest fewer aliases)",
                )
        self._built.add(id(node))
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            result: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self._constructor.construct_object(key_node)
                if not isinstance(key, str | int | float | bool) or key is None:
                    self.problems.append(self.at(path, "keys must be plain text"))
                    continue
                key = str(key)
                child = (*path, key)
                self.lines[child] = key_node.start_mark.line + 1
                if key in result:
                    self.problems.append(self.at(child, f"duplicate key {key!r}"))
                result[key] = self._build(value_node, child)
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self._build(item, (*path, i)) for i, item in enumerate(node.value)]
        if node.tag == _STR:
            return self._interpolate(node.value, path)
        value = self._constructor.construct_object(node)
        if isinstance(value, str):
            value = self._interpolate(value, path)
        return value

    def _size(self, node: yaml.Node, path: Path_) -> int:
        """How many values a node holds, itself included (each node counted once: linear)."""
        size = self._sizes.get(id(node))
        if size == _COUNTING:
            raise _AliasBomb(path, "an alias refers to a value that contains it: refused")
        if size is None:
            self._sizes[id(node)] = _COUNTING
            children: list[yaml.Node] = []
            if isinstance(node, yaml.MappingNode):
                children = [child for pair in node.value for child in pair]
            elif isinstance(node, yaml.SequenceNode):
                children = node.value
            size = 1 + sum(self._size(child, path) for child in children)
            self._sizes[id(node)] = size
        return size

    def _interpolate(self, value: str, path: Path_) -> str:
        def replace(found: re.Match[str]) -> str:
            escaped, name, default = found.groups()
            if escaped:
                return found[0][1:]
            if name in self.env:
                return self.env[name]
            if default is not None:
                return default
            self.problems.append(
                self.at(
                    path,
                    f"environment variable {name} is not set "
                    f"(set it, or write ${{{name}:-default}})",
                )
            )
            return ""

        return _ENV.sub(replace, value) if "$" in value else value

    def sorted_problems(self) -> list[str]:
        """Problems in file order; the sort is stable, so one line keeps its own order."""
        prefix = len(self.filename) + 1

        def line(problem: str) -> int:
            number = problem[prefix:].split(":", 1)[0]
            return int(number) if number.isdigit() else 0

        return sorted(self.problems, key=line)

    def line_of(self, path: Path_) -> int:
        while path not in self.lines and path:
            path = path[:-1]
        return self.lines.get(path, 1)

    def at(self, path: Path_, message: str) -> str:
        where = format_path(path)
        prefix = f"{where}: " if where else ""
        return f"{self.filename}:{self.line_of(path)}: {prefix}{message}"
