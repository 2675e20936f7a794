"""Strict tools (`"strict": true` on a tool definition), as the real API holds them.

With `strict`, the API constrains sampling to the tool's `input_schema` (grammar-
constrained decoding), so it accepts only schemas it can compile, and then guarantees
that every call's input matches. The fake does both halves:

- `check_strict_tools` refuses (a 400 `invalid_request_error`, `tools.N.custom: ...`)
  what the API refuses in a strict tool's schema: an object whose `additionalProperties`
  is not explicitly `false` (the API's own words: "For 'object' type,
  'additionalProperties' must be explicitly set to false"), a keyword outside the
  supported subset, a remote or recursive `$ref`, an `enum` of non-primitive values,
  `minItems` other than 0 or 1, an unsupported string `format`; and the request-wide
  grammar limits: at most 20 strict tools, 24 optional parameters and 16 parameters
  with union types, counted across every strict schema of the request.
- `input_mismatch` says how an input breaks its schema, for the fake to refuse a
  scenario that scripts such a call to a strict tool: the real model cannot make it.

The supported subset is the one the SDK itself emits for strict schemas
(`anthropic.lib._parse._transform.transform_schema`): `type` (one name or a list),
`properties`, `required`, `additionalProperties: false`, `items`, `minItems` 0 or 1,
`enum` and `const` of primitives, `anyOf`, `allOf`, `$ref` into the root's `$defs`
(or `definitions`), `format` on strings, and the annotations `description` and `title`.
Everything else (`minimum`, `maxLength`, `pattern`, `oneOf`, `default`, ...) is refused:
the SDK moves such keywords into the description instead of sending them. Optional
properties are allowed (the API does not require every property in `required`); they
count toward the limit of 24.

`input_mismatch` is a checker for exactly that subset, so the fake needs no
`jsonschema` at run time (it is a test extra only, and the fake also serves the demo);
the tests check it against `jsonschema` on the same schemas and inputs. Formats are
not checked.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from .validation import ApiError, invalid

MAX_STRICT_TOOLS = 20
MAX_OPTIONAL_PARAMETERS = 24
MAX_UNION_PARAMETERS = 16
TYPES = ("object", "array", "string", "integer", "number", "boolean", "null")
STRING_FORMATS = frozenset(
    {"date-time", "time", "date", "duration", "email", "hostname", "uri", "ipv4", "ipv6", "uuid"}
)
KEYWORDS = frozenset(
    {
        "type",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "minItems",
        "enum",
        "const",
        "anyOf",
        "allOf",
        "$ref",
        "format",
        "description",
        "title",
    }
)
DEFS = ("$defs", "definitions")
LIMITS_DOC = "https://platform.claude.com/docs/en/build-with-claude/structured-outputs"


def is_strict(tool: Mapping[str, Any]) -> bool:
    return tool.get("strict") is True and tool.get("type", "custom") in ("custom", None)


def check_strict_tools(tools: list[Any]) -> None:
    """400 unless every strict tool's schema is one the API compiles, within the limits."""
    strict = [(k, t) for k, t in enumerate(tools) if isinstance(t, dict) and "strict" in t]
    for k, tool in strict:
        if not isinstance(tool["strict"], bool):
            raise invalid(f"tools.{k}.custom.strict: Input should be a valid boolean.")
    compiled = [(k, t) for k, t in strict if is_strict(t)]
    if len(compiled) > MAX_STRICT_TOOLS:
        raise invalid(
            f"Too many strict tools ({len(compiled)}): a request may have at most "
            f"{MAX_STRICT_TOOLS} tools with `strict: true`. Reduce the number of strict tools."
        )
    optional = unions = 0
    for k, tool in compiled:
        counts = _SchemaCheck(k, tool["input_schema"]).run()
        optional += counts[0]
        unions += counts[1]
    if optional > MAX_OPTIONAL_PARAMETERS:
        raise invalid(
            f"Schemas contains too many optional parameters ({optional}), which would make "
            "grammar compilation inefficient. Reduce the number of optional parameters in "
            f"your tool schemas (limit: {MAX_OPTIONAL_PARAMETERS})."
        )
    if unions > MAX_UNION_PARAMETERS:
        raise invalid(
            f"Schemas contains too many parameters with union types ({unions}), which would "
            "make grammar compilation inefficient. Reduce the number of parameters with "
            f"union types in your tool schemas (limit: {MAX_UNION_PARAMETERS})."
        )


class _SchemaCheck:
    """One strict tool's schema, walked once (each `$defs` entry once too)."""

    def __init__(self, k: int, schema: dict[str, Any]) -> None:
        self.k = k
        self.root = schema
        self.optional = 0
        self.unions = 0

    def fail(self, problem: str, at: str) -> ApiError:
        return invalid(f"tools.{self.k}.custom: {problem} (at {at}). See {LIMITS_DOC}")

    def run(self) -> tuple[int, int]:
        for key in DEFS:
            defs = self.root.get(key)
            if defs is None:
                continue
            if not isinstance(defs, dict):
                raise self.fail(f"`{key}` must be an object of schemas", f"input_schema.{key}")
            for name, schema in defs.items():
                self.node(schema, f"input_schema.{key}.{name}")
        self.node({k: v for k, v in self.root.items() if k not in DEFS}, "input_schema")
        for key in DEFS:
            for name in self.root.get(key) or {}:
                self._no_cycle(f"#/{key}/{name}", [])
        return self.optional, self.unions

    def node(self, schema: Any, at: str) -> None:
        if not isinstance(schema, dict):
            raise self.fail(f"a schema must be an object, not {type(schema).__name__}", at)
        unsupported = sorted(set(schema) - KEYWORDS)
        if unsupported:
            nested = [k for k in unsupported if k in DEFS]
            if nested:
                raise self.fail(f"`{nested[0]}` is supported at the top of input_schema only", at)
            raise self.fail(
                f"{', '.join(f'`{k}`' for k in unsupported)} "
                f"{'is' if len(unsupported) == 1 else 'are'} not supported for strict tools "
                f"(supported: {', '.join(sorted(KEYWORDS))})",
                at,
            )
        types = self.types(schema, at)
        if "$ref" in schema:
            self.resolve(schema["$ref"], at)
        self.literals(schema, at)
        for key in ("anyOf", "allOf"):
            if key in schema:
                variants = schema[key]
                if not isinstance(variants, list) or not variants:
                    raise self.fail(f"`{key}` must be a non-empty list of schemas", at)
                for n, variant in enumerate(variants):
                    self.node(variant, f"{at}.{key}.{n}")
        if "anyOf" in schema or len(types) > 1:
            self.unions += 1
        if "object" in types or "properties" in schema:
            self.object(schema, at)
        if "array" in types or "items" in schema:
            self.array(schema, at)
        if "format" in schema and (types != ["string"] or schema["format"] not in STRING_FORMATS):
            raise self.fail(
                f"format {schema['format']!r} is not supported: formats apply to "
                f"`type: string` only, and are one of {', '.join(sorted(STRING_FORMATS))}",
                at,
            )

    def types(self, schema: dict[str, Any], at: str) -> list[str]:
        if "type" not in schema:
            return []
        raw = schema["type"]
        names = raw if isinstance(raw, list) else [raw]
        if not names or any(n not in TYPES for n in names) or len(set(names)) != len(names):
            raise self.fail(f"`type` must be one of {', '.join(TYPES)} (or a list of them)", at)
        return list(names)

    def literals(self, schema: dict[str, Any], at: str) -> None:
        if "enum" in schema:
            values = schema["enum"]
            if not isinstance(values, list) or not values:
                raise self.fail("`enum` must be a non-empty list", at)
            if not all(_primitive(v) for v in values):
                raise self.fail("`enum` values must be strings, numbers, booleans or null", at)
        if "const" in schema and not _primitive(schema["const"]):
            raise self.fail("`const` must be a string, number, boolean or null", at)

    def object(self, schema: dict[str, Any], at: str) -> None:
        if schema.get("additionalProperties", True) is not False:
            raise self.fail(
                "For 'object' type, 'additionalProperties' must be explicitly set to false", at
            )
        properties = schema.get("properties", {})
        if not isinstance(properties, dict):
            raise self.fail("`properties` must be an object of schemas", at)
        required = schema.get("required", [])
        if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
            raise self.fail("`required` must be a list of property names", at)
        missing = [name for name in required if name not in properties]
        if missing:
            raise self.fail(
                f"`required` names {', '.join(map(repr, missing))}, which "
                f"{'is' if len(missing) == 1 else 'are'} not in `properties`",
                at,
            )
        self.optional += sum(1 for name in properties if name not in required)
        for name, sub in properties.items():
            self.node(sub, f"{at}.properties.{name}")

    def array(self, schema: dict[str, Any], at: str) -> None:
        if "items" in schema:
            self.node(schema["items"], f"{at}.items")
        if "minItems" in schema and (
            isinstance(schema["minItems"], bool) or schema["minItems"] not in (0, 1)
        ):
            raise self.fail("`minItems` may only be 0 or 1", at)

    def resolve(self, ref: Any, at: str) -> Any:
        for key in DEFS:
            prefix = f"#/{key}/"
            if isinstance(ref, str) and ref.startswith(prefix):
                defs = self.root.get(key)
                name = ref.removeprefix(prefix)
                if isinstance(defs, dict) and name in defs:
                    return defs[name]
        raise self.fail(
            f"$ref {ref!r} is not supported: only references into this schema's $defs "
            "(#/$defs/NAME) are",
            at,
        )

    def _no_cycle(self, ref: str, path: list[str]) -> None:
        if ref in path:
            cycle = " -> ".join([*path[path.index(ref) :], ref])
            raise self.fail(f"recursive schemas are not supported ({cycle})", "input_schema")
        for inner in _refs(self.resolve(ref, "input_schema")):
            self._no_cycle(inner, [*path, ref])


def _refs(schema: Any) -> Iterator[str]:
    if isinstance(schema, dict):
        if isinstance(schema.get("$ref"), str):
            yield schema["$ref"]
        for key, value in schema.items():
            if key not in ("enum", "const"):
                yield from _refs(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from _refs(value)


def _primitive(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


# -- does an input match? ------------------------------------------------------------------


def input_mismatch(schema: Mapping[str, Any], value: Any) -> list[str]:
    """How `value` breaks `schema` (a strict schema `check_strict_tools` accepted), each
    problem as `path: what`; empty when it matches."""
    return list(_problems(schema, value, "", schema))


def _problems(schema: Any, value: Any, path: str, root: Mapping[str, Any]) -> Iterator[str]:
    where = path or "(the input)"
    if not isinstance(schema, Mapping):
        return
    if "$ref" in schema:
        yield from _problems(_target(root, schema["$ref"]), value, path, root)
    if "const" in schema and not _same(value, schema["const"]):
        yield f"{where}: must be {_show(schema['const'])}, not {_show(value)}"
    if "enum" in schema and not any(_same(value, v) for v in schema["enum"]):
        options = ", ".join(_show(v) for v in schema["enum"])
        yield f"{where}: must be one of {options}, not {_show(value)}"
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is(value, t) for t in types):
            wanted = " or ".join(_article(t) for t in types)
            yield f"{where}: expected {wanted}, got {_kind(value)}"
            return
    for variant in schema.get("allOf", ()):
        yield from _problems(variant, value, path, root)
    variants = schema.get("anyOf")
    if variants and not any(not list(_problems(v, value, path, root)) for v in variants):
        yield f"{where}: matches none of the `anyOf` alternatives ({_kind(value)})"
    if isinstance(value, Mapping):
        yield from _object_problems(schema, value, path, root)
    if isinstance(value, list | tuple):
        if len(value) < schema.get("minItems", 0):
            yield f"{where}: must have at least {schema['minItems']} item"
        items = schema.get("items")
        if items is not None:
            for n, item in enumerate(value):
                yield from _problems(items, item, _join(path, n), root)


def _object_problems(
    schema: Mapping[str, Any], value: Mapping[str, Any], path: str, root: Mapping[str, Any]
) -> Iterator[str]:
    where = path or "(the input)"
    properties = schema.get("properties") or {}
    for name in schema.get("required", ()):
        if name not in value:
            yield f"{where}: missing required property {name!r}"
    if schema.get("additionalProperties") is False:
        extra = [name for name in value if name not in properties]
        if extra:
            yield f"{where}: unexpected propert{'y' if len(extra) == 1 else 'ies'} " + ", ".join(
                map(repr, extra)
            )
    for name, sub in properties.items():
        if name in value:
            yield from _problems(sub, value[name], _join(path, name), root)


def _target(root: Mapping[str, Any], ref: str) -> Any:
    for key in DEFS:
        prefix = f"#/{key}/"
        if ref.startswith(prefix):
            return (root.get(key) or {}).get(ref.removeprefix(prefix))
    return None


def _is(value: Any, name: str) -> bool:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return {
        "null": value is None,
        "boolean": isinstance(value, bool),
        "integer": number and (isinstance(value, int) or float(value).is_integer()),
        "number": number,
        "string": isinstance(value, str),
        "array": isinstance(value, list | tuple),
        "object": isinstance(value, Mapping),
    }.get(name, False)


def _same(a: Any, b: Any) -> bool:
    """JSON equality: 1 and 1.0 are equal, True and 1 are not."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def _join(path: str, key: str | int) -> str:
    return f"{path}.{key}" if path else str(key)


def _article(name: str) -> str:
    return {"array": "an array", "integer": "an integer", "object": "an object"}.get(
        name, "null" if name == "null" else f"a {name}"
    )


def _kind(value: Any) -> str:
    for name in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _is(value, name):
            return f"{_article(name)} ({_show(value)})"
    return type(value).__name__


def _show(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
