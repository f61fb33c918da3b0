"""YAML with line numbers: load a document into plain values plus a map from value paths to file locations.

The text is parsed with the safe loader's parser (libyaml's when available) into events, each with its start
mark, and the Python values are built here from those events. That records where every value and every mapping
key lives (the shallow ones while building, the rest when a problem asks: see ``Source``), refuses duplicate keys
(the plain loader silently keeps the last one, which hides typos in long specs), and is about three times faster
than ``yaml.compose`` plus a walk over the nodes: a 10,000-shot spec is 150,000 events. Only standard YAML tags
are understood (the SafeLoader's); anything else is a problem, never code.

A path is a tuple of mapping keys and sequence indexes, e.g. ``("shots", 3, "prompt")``.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from orchestrator.errors import Problem
from orchestrator.spec.shot import Location

PathKey = tuple[str | int, ...]
# Where a value or key starts: its 0-based line and column in one int, ``line << 32 | column``. One small object
# the cyclic collector never tracks, where a tuple of two numbers is three objects and tracked. A Location is built
# only when a problem needs one (``Source.location``).
_Mark = int
_COLUMN_BITS = 32
_COLUMN_MASK = (1 << _COLUMN_BITS) - 1

_Loader: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_STR_TAG = "tag:yaml.org,2002:str"
_INT_TAG = "tag:yaml.org,2002:int"
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MISSING = object()
# Event classes bound once: the builder tests the class of every one of a big spec's ~750,000 events.
_SCALAR = yaml.ScalarEvent
_MAPPING_END = yaml.MappingEndEvent
_SEQUENCE_END = yaml.SequenceEndEvent
MAX_SPEC_BYTES = 64 * 1024 * 1024  # a 10,000-shot spec is about 2 MB; this only stops /dev/zero and runaway files
MAX_DEPTH = 100  # real specs nest about 6 deep; deeper would hit Python's recursion limit here or downstream
MAX_EXPANDED = 2_000_000  # values after aliases are expanded: a 10,000-shot spec has about 150,000
# How deep a document's positions are placed as it is built: its top-level keys and each of their items (each shot).
# Deeper positions are only needed for a problem's line, so they are placed when one is asked for (``Source``).
PLACED_DEPTH = 2


@dataclass(frozen=True)
class Source:
    """A loaded YAML document: its values, where each value (and each key) starts, and what went wrong.

    ``data`` is ``None`` when the text could not be parsed at all; ``problems`` then says why and where.

    ``values`` and ``keys`` hold the positions of paths up to ``placed`` long (all of them when ``placed`` is
    ``None``). A document without problems is built placing only its shallow positions, which is all a valid spec
    asks for (each shot's); the first question about a deeper path parses the text once more, placing every one.
    """

    file: str
    text_bytes: bytes
    data: Any
    values: dict[PathKey, _Mark] = field(default_factory=dict, repr=False)
    keys: dict[PathKey, _Mark] = field(default_factory=dict, repr=False)
    problems: tuple[Problem, ...] = ()
    placed: int | None = None
    _every: list[_Builder] = field(default_factory=list, repr=False, compare=False)  # the full placing, once made

    def location(self, path: PathKey, *, key: bool = False) -> Location:
        """Where the value at ``path`` starts (or its key, with ``key=True``), else its nearest known ancestor."""
        values, keys = self._positions(len(path))
        found = keys.get(path) if key else None
        end = len(path)
        while found is None and end >= 0:
            found = values.get(path[:end])
            end -= 1
        if found is None:
            return Location(self.file, 1, 1)
        return Location(self.file, (found >> _COLUMN_BITS) + 1, (found & _COLUMN_MASK) + 1)

    def _positions(self, length: int) -> tuple[dict[PathKey, _Mark], dict[PathKey, _Mark]]:
        """Maps that place every path up to ``length`` long (with all their ancestors, which are shorter)."""
        if self.placed is None or length <= self.placed:
            return self.values, self.keys
        if not self._every:
            self._every.append(_build(self.text_bytes.decode("utf-8-sig"), self.file, placed=None))
        return self._every[0].values, self._every[0].keys

    def problem(self, path: PathKey, message: str, *, shot: str | None = None, key: bool = False) -> Problem:
        where = self.location(path, key=key)
        return Problem(where.file, where.line, where.column, message, shot=shot)

    def warning(self, path: PathKey, message: str, *, shot: str | None = None) -> Problem:
        where = self.location(path)
        return Problem(where.file, where.line, where.column, message, shot=shot, severity="warning")


def read_source(path: Path, *, display: str | None = None) -> Source:
    """Read and parse ``path``; every failure (unreadable, not UTF-8, bad YAML, duplicate keys) is a Problem."""
    file = display if display is not None else str(path)
    try:
        raw = _read_regular_file(path)
    except _NotAFile as exc:
        return _failed(file, b"", exc.message)
    except IsADirectoryError:
        return _failed(file, b"", "is a directory, not a spec file")
    except FileNotFoundError:
        return _failed(file, b"", "no such file")
    except PermissionError:
        return _failed(file, b"", "cannot read the file: permission denied")
    except OSError as exc:
        return _failed(file, b"", f"cannot read the file: {exc.strerror or exc}")
    except ValueError:  # a NUL byte in the name: no file can have it
        return _failed(file, b"", "no such file (the name contains a NUL character)")
    if len(raw) > MAX_SPEC_BYTES:
        return _failed(file, b"", f"the file is over {MAX_SPEC_BYTES // (1024 * 1024)} MB; a spec is far smaller")
    return parse_source(raw, file=file)


class _NotAFile(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _read_regular_file(path: Path) -> bytes:
    """The bytes of ``path`` if it is a regular file (symlinks followed), at most ``MAX_SPEC_BYTES + 1`` of them.

    Anything else is refused before it is read: opening a FIFO nobody writes blocks forever, and a device such as
    /dev/zero never ends. The check is made on the opened file too (non-blocking open, then fstat), so a FIFO put
    in the file's place between the two checks is refused as well.
    """
    _refuse_unless_regular(os.stat(path).st_mode)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    with os.fdopen(fd, "rb") as stream:
        _refuse_unless_regular(os.fstat(stream.fileno()).st_mode)
        return stream.read(MAX_SPEC_BYTES + 1)


def _refuse_unless_regular(mode: int) -> None:
    if stat.S_ISDIR(mode):
        raise IsADirectoryError
    if stat.S_ISFIFO(mode):
        raise _NotAFile("is a FIFO (named pipe), not a spec file")
    if not stat.S_ISREG(mode):
        raise _NotAFile("is a device or socket, not a spec file")


def parse_source(raw: bytes, *, file: str) -> Source:
    """Parse YAML bytes; syntax errors, non-UTF-8 text, an empty or multi-document file become Problems."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        return _failed(file, raw, f"the file is not UTF-8 text (byte {exc.start})", line=line)
    try:
        builder = _build(text, file, placed=PLACED_DEPTH)
        if builder.problems:
            builder = _build(text, file, placed=None)  # problems to place: the document again, every position placed
    except yaml.MarkedYAMLError as exc:
        return Source(file, raw, None, problems=_syntax_problems(file, exc))
    except yaml.YAMLError as exc:
        return _failed(file, raw, f"YAML syntax error: {exc}")
    except _TooLarge as exc:
        return _failed(file, raw, exc.message, line=exc.line, column=exc.column)
    if builder.data is _MISSING:
        return _failed(file, raw, "the file is empty; a spec starts with `version: 1`")
    return Source(file, raw, builder.data, builder.values, builder.keys, tuple(builder.problems), builder.placed)


def _build(text: str, file: str, *, placed: int | None) -> _Builder:
    """The document built from ``text``, positions placed up to ``placed`` deep (all of them for ``None``)."""
    builder = _Builder(file, placed=placed)
    loader = _Loader(text)
    try:
        # iter(get_event, None) pulls events straight from the (C) parser: no Python generator frame per event.
        builder.data = builder.document(iter(loader.get_event, None))
    finally:
        loader.dispose()
    return builder


class _TooLarge(Exception):
    """Stops building a document that nests too deeply or whose aliases expand too far (a "billion laughs")."""

    def __init__(self, event: yaml.Event, message: str) -> None:
        super().__init__(message)
        mark = event.start_mark
        self.line, self.column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        self.message = message


def _syntax_problems(file: str, exc: yaml.MarkedYAMLError) -> tuple[Problem, ...]:
    """The syntax error where the parser gave up, and a note where the construct it was in started.

    The two can be far apart: an unclosed ``{`` on line 48 is only noticed at line 51, and the fix is at 48.
    """
    problem_at = _position(exc.problem_mark or exc.context_mark)
    reason = exc.problem or exc.context or "malformed YAML"
    context_at = _position(exc.context_mark) if exc.problem_mark is not None else None
    if exc.problem is None or not exc.context or context_at is None or context_at == problem_at:
        return (Problem(file, *problem_at, f"YAML syntax error: {reason}"),)
    construct = re.sub(r"^while (parsing|scanning|constructing) ", "", exc.context)  # "a flow mapping"
    construct = re.sub(r"^an? ", "the ", construct)
    line, column = context_at
    error = Problem(
        file, *problem_at, f"YAML syntax error: {reason} (in {construct} that starts at line {line}, column {column})"
    )
    note = f"note: {construct} with the YAML syntax error at line {problem_at[0]}, column {problem_at[1]} starts here"
    return (error, Problem(file, line, column, note, severity="note"))


def _position(mark: Any) -> tuple[int, int]:
    return (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)


def _failed(file: str, raw: bytes, message: str, *, line: int = 1, column: int = 1) -> Source:
    return Source(file, raw, None, problems=(Problem(file, line, column, message),))


class _Builder:
    """Builds plain values from parser events, recording where each value and key starts.

    Anchored values are built once and shared by their aliases. Sharing alone does not defuse a "billion laughs"
    document: every later walk over the values (schema, fingerprints) would expand it. So each anchor's expanded
    size is recorded, each alias adds it to a running count, and the document is refused past ``MAX_EXPANDED``;
    nesting is bounded by ``MAX_DEPTH`` so a deep document is a problem, not a RecursionError.
    """

    def __init__(self, file: str, *, placed: int | None = None) -> None:
        self.file = file
        self.placed = placed
        self._placed_depth = placed if placed is not None else MAX_DEPTH + 1
        self.data: Any = _MISSING
        self.values: dict[PathKey, _Mark] = {}
        self.keys: dict[PathKey, _Mark] = {}
        self.problems: list[Problem] = []
        self._anchors: dict[str, Any] = {}
        self._resolve: Any = partial(yaml.resolver.Resolver().resolve, yaml.ScalarNode, implicit=(True, False))
        self._constructor = yaml.constructor.SafeConstructor()
        self._plain: dict[str, Any] = {}
        self._sizes: dict[str, int] = {}
        self._expanded = 0
        self._depth = 0

    def document(self, events: Iterator[yaml.Event]) -> Any:
        data: Any = _MISSING
        for event in events:
            if isinstance(event, yaml.DocumentStartEvent):
                if data is not _MISSING:
                    self._error(event, "a spec is one YAML document; remove the extra `---` documents")
                    break
                data = self.value(events, next(events), ())
        return data

    def value(self, events: Iterator[yaml.Event], event: yaml.Event, path: PathKey) -> Any:
        mark: Any = event.start_mark  # always set by the parser
        if len(path) <= self._placed_depth:
            self.values[path] = mark.line << _COLUMN_BITS | mark.column
        before = self._expanded
        self._expanded += 1
        if isinstance(event, yaml.ScalarEvent):
            result = self._scalar(event)
        elif isinstance(event, yaml.MappingStartEvent):
            self._check_tag(event, _MAP_TAG)
            result = self._mapping(events, event, path)
        elif isinstance(event, yaml.SequenceStartEvent):
            self._check_tag(event, _SEQ_TAG)
            result = self._sequence(events, event, path)
        elif isinstance(event, yaml.AliasEvent):
            result = self._anchors.get(event.anchor or "", _MISSING)
            if result is _MISSING:
                self._error(event, f"unknown alias `*{event.anchor}`")
                result = None
            self._count_alias(event)
            return result
        else:  # pragma: no cover - the parser only emits the events above at a value position
            self._error(event, "unexpected YAML structure")
            return None
        anchor = getattr(event, "anchor", None)
        if anchor:
            self._anchors[anchor] = result
            self._sizes[anchor] = self._expanded - before
        return result

    def _count_alias(self, event: yaml.AliasEvent) -> None:
        self._expanded += self._sizes.get(event.anchor or "", 0)
        if self._expanded > MAX_EXPANDED:
            message = f"YAML aliases expand to over {MAX_EXPANDED:,} values; a spec is far smaller (alias bomb?)"
            raise _TooLarge(event, message)

    def _enter(self, event: yaml.Event) -> None:
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _TooLarge(event, f"YAML nested more than {MAX_DEPTH} levels deep")

    def _check_tag(self, event: yaml.CollectionStartEvent, standard: str) -> None:
        # Only plain mappings and lists: `!!python/object/apply:...` and friends are refused, never constructed.
        if event.tag not in (None, "!", standard):
            self._error(event, f"bad YAML value: unsupported tag `{event.tag}`")

    def _sequence(self, events: Iterator[yaml.Event], start: yaml.Event, path: PathKey) -> list[Any]:
        self._enter(start)
        items: list[Any] = []
        place = len(path) < self._placed_depth  # the items' positions
        for event in events:
            if event.__class__ is _SEQUENCE_END:
                break
            child = (*path, len(items))
            value = self._plain_scalar(event, child, place) if event.__class__ is _SCALAR else _MISSING
            items.append(value if value is not _MISSING else self.value(events, event, child))
        self._depth -= 1
        return items

    def _mapping(self, events: Iterator[yaml.Event], start: yaml.Event, path: PathKey) -> dict[str, Any]:
        self._enter(start)
        result: dict[str, Any] = {}
        merged: list[Any] = []
        keys = self.keys
        place = len(path) < self._placed_depth  # the positions of its keys and values
        for event in events:
            if event.__class__ is _MAPPING_END:
                break
            if event.__class__ is _SCALAR and event.value == "<<" and event.implicit[0]:
                merged.append(self.value(events, next(events), path))
                continue
            key = self._key(events, event)
            value_event = next(events)
            if key is None:
                self.value(events, value_event, (*path, "?"))
                continue
            mark: Any = event.start_mark
            child = (*path, key)
            if key in result:
                # Unplaced, the first key's line is not known: a problem makes the document be built again, placed.
                first = (keys[child] >> _COLUMN_BITS) + 1 if place else 0
                message = f"duplicate key `{key}` (first at line {first}); YAML would silently keep only the last"
                self._error(event, message)
            if place:
                keys[child] = mark.line << _COLUMN_BITS | mark.column
            value = self._plain_scalar(value_event, child, place) if value_event.__class__ is _SCALAR else _MISSING
            result[key] = value if value is not _MISSING else self.value(events, value_event, child)
        self._depth -= 1
        return self._merge(start, merged, result) if merged else result

    def _plain_scalar(self, event: yaml.ScalarEvent, path: PathKey, place: bool) -> Any:
        """``value`` for the commonest events, scalars without tag or anchor (quoted, or plain and seen before); else
        ``_MISSING``.

        Most of a big spec's values are such scalars (keys, modes, durations, set names): taking them here, without
        ``value``'s dispatch, is a third of the build.
        """
        if event.anchor is not None or event.tag is not None:
            return _MISSING
        # Quoted, untagged: a string as written (what ``_construct`` makes of it). Plain: the cache of ``_scalar``.
        found = self._plain.get(event.value, _MISSING) if event.implicit[0] else event.value
        if found is not _MISSING:
            if place:
                mark: Any = event.start_mark
                self.values[path] = mark.line << _COLUMN_BITS | mark.column
            self._expanded += 1
        return found

    def _merge(self, start: yaml.Event, merged: list[Any], own: dict[str, Any]) -> dict[str, Any]:
        # `<<: *base` (or a list of them): keys from the merged mappings, the mapping's own keys winning.
        combined: dict[str, Any] = {}
        for source in merged:
            for item in source if isinstance(source, list) else [source]:
                if not isinstance(item, dict):
                    self._error(start, "`<<` merges mappings only")
                    continue
                for key, value in item.items():
                    combined.setdefault(key, value)
        combined.update(own)
        return combined

    def _key(self, events: Iterator[yaml.Event], event: yaml.Event) -> str | None:
        if event.__class__ is _SCALAR and event.tag is None and event.implicit[0]:
            found = self._plain.get(event.value)
            if found.__class__ is str:
                return found  # a plain key seen before: the usual case
        if not isinstance(event, yaml.ScalarEvent):
            self._error(event, "a mapping key must be a plain word, not a list or mapping")
            self.value(events, event, ("?",))  # consume it
            return None
        key = self._scalar(event)
        if isinstance(key, str):
            return key
        if key is None or isinstance(key, bool):
            # YAML 1.1 reads `on`, `off`, `yes`, `no`, `~` as booleans or null: almost never what was meant.
            self._error(event, f'key `{event.value}` reads as {key!r} in YAML; quote it: "{event.value}"')
            return str(event.value)
        return str(key)

    def _scalar(self, event: yaml.ScalarEvent) -> Any:
        if event.tag is None and event.implicit[0]:
            # Plain scalars repeat a lot (keys, modes, set names): resolve each distinct text once.
            found = self._plain.get(event.value, _MISSING)
            if found is _MISSING:
                found = self._construct(event)
                if not self.problems:
                    self._plain[event.value] = found
            return found
        return self._construct(event)

    def _construct(self, event: yaml.ScalarEvent) -> Any:
        tag = event.tag
        if tag is None or tag == "!":
            # What the composer does: only plain scalars get an implicit type (int, float, bool, null, ...).
            plain = event.implicit[0]
            tag = self._resolve(event.value) if plain else _STR_TAG
        if tag == _STR_TAG:
            return event.value
        try:
            if tag == _INT_TAG and event.value.isdigit() and (event.value[0] != "0" or event.value == "0"):
                return int(event.value)  # the common case; octal, hex, base 60 and "_" go through the constructor
            node = yaml.ScalarNode(tag, event.value, style=event.style)
            return self._constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            message = getattr(exc, "problem", None) or str(exc)
            self._error(event, f"bad YAML value: {message}")
        except Exception:  # the constructor raises ValueError, KeyError, ... on `!!float abc`, `!!bool maybe`
            explicit = event.tag not in (None, "!")
            self._error(event, f"bad YAML value: {_shorten(event.value)!r} is not a valid {_tag_name(tag, explicit)}")
        return None

    def _error(self, event: yaml.Event, message: str) -> None:
        mark = event.start_mark
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        self.problems.append(Problem(self.file, line, column, message))


def _tag_name(tag: str, explicit: bool) -> str:
    # "tag:yaml.org,2002:float" -> "!!float value" when the spec wrote the tag, "float" when YAML inferred it
    short = tag.removeprefix("tag:yaml.org,2002:")
    if short == tag:
        return f"value for tag {tag}"
    return f"!!{short} value" if explicit else short


def _shorten(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_path(path: PathKey) -> str:
    """``("dynamic_masks", 0, "mask")`` -> ``dynamic_masks[0].mask``: how messages name a field."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


def lookup(data: Any, path: PathKey) -> Any:
    """The value at ``path`` inside ``data``, or ``None`` when any step is missing."""
    current = data
    for part in path:
        if isinstance(current, list):
            inside = isinstance(part, int) and 0 <= part < len(current)
        else:
            inside = isinstance(part, str) and isinstance(current, Mapping) and part in current
        if not inside:
            return None
        current = current[part]
    return current
