"""Read config.yaml keeping where each key was written, so errors can point at a line."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from shared.config.errors import ConfigError

KeyPath = tuple[str | int, ...]


@dataclass
class YamlDocument:
    data: Any
    lines: dict[KeyPath, int] = field(default_factory=dict)
    duplicates: list[tuple[KeyPath, int]] = field(default_factory=list)

    def line_of(self, path: KeyPath) -> int | None:
        """Line of the deepest key of `path` that was written in the file (1-based)."""
        for end in range(len(path), 0, -1):
            line = self.lines.get(tuple(path[:end]))
            if line is not None:
                return line
        return None


def parse_yaml(text: str, source: str) -> YamlDocument:
    """Parse `text`; a syntax error becomes a ConfigError with line and column."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([("<yaml>", f"{source}: YAML syntax error at {where}: {problem}")]) from None
    document = YamlDocument(data=data if data is not None else {})
    if node is not None:
        _index(node, (), document)
    return document


def _index(node: yaml.Node, path: KeyPath, document: YamlDocument) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            child = (*path, key)
            if key in seen:
                document.duplicates.append((child, key_node.start_mark.line + 1))
            seen.add(key)
            document.lines[child] = key_node.start_mark.line + 1
            _index(value_node, child, document)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = (*path, index)
            document.lines[child] = item.start_mark.line + 1
            _index(item, child, document)
