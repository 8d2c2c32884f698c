"""The `update-alternatives --install` calls of maintainer scripts, read (never run) and applied as
links, so that e.g. ImageMagick's /usr/bin/convert exists although its postinst never ran.

The scripts are read, not executed: a small reader follows `for VAR in words; do … done` loops
and literal `VAR=value` assignments, which is how Debian's scripts write these calls (ImageMagick
loops over its programs). A call whose words stay computed (`$(…)`, a variable set elsewhere) is
not applied and is reported, so the job log says which link is missing. As on a fresh install in
auto mode, the highest priority wins per alternative name; the base image's own alternatives
are not consulted (a new package's registration replaces one of the base).
"""

from __future__ import annotations

import itertools
import os
import re
import shlex
from dataclasses import dataclass

from services.imager.layer_tree import LayerTree, make_dirs

_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")
_ASSIGNMENT = re.compile(r"^([A-Za-z_]\w*)=([^$`]*)$")
_PUNCTUATION = ";&|()"  # shlex groups runs of these into one token: `;;`, `()`, `&&`
_KEYWORDS = {"do", "then", "else", "elif", "if", "!", "{", "}"}
_REDIRECTS = (">", "<")
MAX_EXPANSIONS = 1000


@dataclass(frozen=True)
class Link:
    link: str  # the generic path, e.g. /usr/bin/convert
    name: str  # the alternative, e.g. convert (-> /etc/alternatives/convert)
    path: str  # the provider, e.g. /usr/bin/convert-im6.q16


@dataclass(frozen=True)
class Alternative:
    master: Link
    priority: int
    slaves: tuple[Link, ...] = ()


def install_calls(script: str) -> tuple[list[Alternative], list[str]]:
    """The alternatives a maintainer script installs, and the calls it makes that cannot be read."""
    found: list[Alternative] = []
    unread: list[str] = []
    loops: list[tuple[str, list[str]]] = []
    assigned: dict[str, str] = {}
    for statement in _statements(script):
        while statement and statement[0] in _KEYWORDS:
            statement = statement[1:]
        if not statement:
            continue
        if statement[0] == "for" and len(statement) >= 3 and statement[2] == "in":
            loops.append((statement[1], statement[3:]))
        elif statement[0] in ("while", "until"):
            loops.append(("", [""]))  # its `done` closes it, not the `for` around it
        elif statement[0] == "done":
            if loops:
                loops.pop()
        elif len(statement) == 1 and (match := _ASSIGNMENT.match(statement[0])):
            assigned[match.group(1)] = match.group(2)
        elif statement[0].rsplit("/", 1)[-1] == "update-alternatives" and "--install" in statement:
            words = _without_redirects(statement[statement.index("--install") + 1 :])
            calls = _expand(words, loops, assigned)
            if calls is None:
                unread.append(" ".join(statement))
                continue
            for call in calls:
                alternative = _parse_install(call)
                if alternative is None:
                    unread.append(" ".join(statement))
                    break
                found.append(alternative)
    return found, unread


def choose(alternatives: list[Alternative]) -> list[Alternative]:
    """Auto mode: per name, the highest priority (ties: the first provider path in sort order)."""
    best: dict[str, Alternative] = {}
    for candidate in sorted(alternatives, key=lambda a: (-a.priority, a.master.path)):
        best.setdefault(candidate.master.name, candidate)
    return [best[name] for name in sorted(best)]


def apply(tree: LayerTree, chosen: list[Alternative]) -> list[str]:
    """Create `link -> /etc/alternatives/name -> path` in the layer for every master and slave whose
    provider is in the layer, placed as dpkg would (merged /usr, links; never outside the layer).
    Never replaces a file the packages ship. Returns the links made."""
    made = []
    for alternative in chosen:
        for link in (alternative.master, *alternative.slaves):
            if "/" in link.name or link.name in ("", ".", ".."):
                continue
            provider = tree.root / tree.resolve(link.path)
            generic = tree.root / tree.resolve(link.link)
            handle = tree.root / tree.resolve(f"/etc/alternatives/{link.name}")
            if not os.path.lexists(provider):
                continue  # e.g. a manual page slave: documentation is not in the layer
            if os.path.lexists(generic) and not generic.is_symlink():
                continue  # a file a package ships: update-alternatives would not replace it either
            for path, target in ((handle, link.path), (generic, f"/etc/alternatives/{link.name}")):
                make_dirs(path.parent)
                if path.is_symlink():
                    path.unlink()
                path.symlink_to(target)
            made.append(f"{link.link} -> {link.path}")
    return made


def _statements(script: str) -> list[list[str]]:
    text = script.replace("\\\n", " ")
    lexer = shlex.shlex(text, posix=True, punctuation_chars=_PUNCTUATION)
    lexer.whitespace = " \t\r"  # newlines separate statements
    lexer.commenters = "#"
    lexer.wordchars += "$/{}=-.:+,@%~"
    statements: list[list[str]] = [[]]
    try:
        for token in lexer:
            if token == "\n" or all(char in _PUNCTUATION for char in token):
                statements.append([])
            else:
                statements[-1].append(token)
    except ValueError:  # an unbalanced quote: read what came before it
        pass
    return [statement for statement in statements if statement]


def _expand(words: list[str], loops: list[tuple[str, list[str]]], assigned: dict[str, str]):
    """Every list of words the loops around the call give it; None if a word stays computed."""
    used = {name for word in words for match in _VARIABLE.finditer(word) for name in match.groups() if name}
    active = [(name, values) for name, values in loops if name in used]
    combinations = list(itertools.islice(itertools.product(*(v for _, v in active)), MAX_EXPANSIONS + 1))
    if len(combinations) > MAX_EXPANSIONS:
        return None
    calls = []
    for values in combinations:
        scope = {**assigned, **{name: value for (name, _), value in zip(active, values, strict=True)}}
        call = [_VARIABLE.sub(lambda m, s=scope: s.get(m.group(1) or m.group(2), "\0"), w) for w in words]
        if any("\0" in word or "$" in word or "`" in word for word in call):
            return None
        calls.append(call)
    return calls


def _without_redirects(words: list[str]) -> list[str]:
    """The call's own words: `… 50 >/dev/null 2>&1` loses its redirections (and their fd digit)."""
    cut = next((i for i, word in enumerate(words) if word.startswith(_REDIRECTS)), len(words))
    kept = words[:cut]
    if cut < len(words) and len(kept) % 4 == 1 and kept[-1].isdigit() and len(kept[-1]) == 1:
        kept = kept[:-1]
    return kept


def _parse_install(words: list[str]) -> Alternative | None:
    """`link name path priority [--slave link name path]…`"""
    if len(words) < 4 or not words[3].isdigit():
        return None
    master = Link(*words[:3])
    slaves, rest = [], words[4:]
    while len(rest) >= 4 and rest[0] == "--slave":
        slaves.append(Link(*rest[1:4]))
        rest = rest[4:]
    if rest or not all(p.startswith("/") for link in (master, *slaves) for p in (link.link, link.path)):
        return None
    return Alternative(master, int(words[3]), tuple(slaves))
