"""Read config.yaml keeping where each key was written, so errors can point at a line.

Two readers: `parse_yaml` for the operator's file (trusted: anchors and aliases are fine), and
`parse_untrusted_yaml` for a repository's config.yaml, which anyone who can push a branch
writes. The second refuses, before anything is built from the text, what makes a small file
expensive or surprising: anchors and aliases (a 400-byte alias bomb expands to gigabytes),
explicit tags, more than one document, deep nesting and files over a size limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from shared.config.errors import ConfigError

KeyPath = tuple[str | int, ...]
# libyaml when present: the pure-Python parser takes ~10 s for a 200 KiB file, libyaml ~1 s.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# A repository config describes factories, tiers and services: a few KiB. 256 KiB is far beyond
# any real one and keeps a hostile file's parse around a second.
REPOSITORY_CONFIG_MAX_BYTES = 256 * 1024
# Deeper than any config section goes (packages.p.services.s.env.K is 6); the parser recurses.
MAX_NESTING = 32


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
        loader = _LOADER(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise ConfigError(
            [("<yaml>", f"{source}: YAML syntax error at {_where(exc)}: {_problem(exc)}")]
        ) from None
    document = YamlDocument(data=data if data is not None else {})
    if node is not None:
        _index(node, (), document)
    return document


def parse_untrusted_yaml(
    data: bytes, source: str, max_bytes: int = REPOSITORY_CONFIG_MAX_BYTES
) -> YamlDocument:
    """`parse_yaml` for a file from a pushed tree: size, anchors, aliases, tags and nesting are
    checked on the event stream first, so nothing is expanded or constructed from a hostile file."""
    if len(data) > max_bytes:
        raise ConfigError(
            [("<file>", f"{source} is {len(data)} bytes; a repository config may be at most {max_bytes}")]
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([("<file>", f"{source} is not UTF-8 text (byte {exc.start})")]) from None
    problems = _refused_constructs(text, source)
    if problems:
        raise ConfigError(problems)
    return parse_yaml(text, source)


def _refused_constructs(text: str, source: str) -> list[tuple[str, str]]:
    depth, documents = 0, 0
    try:
        for event in yaml.parse(text, Loader=_LOADER):
            line = event.start_mark.line + 1
            if isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    return [("<yaml>", f"{source}: line {line}: only one YAML document is allowed")]
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
                return [
                    (
                        "<yaml>",
                        f"{source}: line {line}: YAML anchors and aliases (&name, *name, <<) are not "
                        "allowed in a repository config; write the values out",
                    )
                ]
            if getattr(event, "tag", None) is not None:
                return [("<yaml>", f"{source}: line {line}: YAML tags ({event.tag}) are not allowed")]
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_NESTING:
                    return [("<yaml>", f"{source}: line {line}: nested deeper than {MAX_NESTING} levels")]
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError as exc:
        return [("<yaml>", f"{source}: YAML syntax error at {_where(exc)}: {_problem(exc)}")]
    return []


def _where(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"


def _problem(exc: yaml.YAMLError) -> str:
    return getattr(exc, "problem", None) or str(exc)


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
