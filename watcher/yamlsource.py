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
_ENV = re.compile(r"\$(\$)?\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def format_path(path: Path_) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


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

    def read(self, text: str) -> Any:
        try:
            node = yaml.compose(text, Loader=_LOADER)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f":{mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc)
            self.problems.append(f"{self.filename}{line}: YAML syntax error: {problem}")
            return None
        return None if node is None else self._build(node, ())

    def _build(self, node: yaml.Node, path: Path_) -> Any:
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
