"""Reading call records from JSON: the checking converter, the generated readers, the msgspec
twins and the generated record builder.

A record is read from its snake_case field names or their camelCase twins (v3) into the same
`CallRecord` attribute; a field of the wrong type is an error naming the field, never coerced.
Three decoders give the same records, fastest first:

- the msgspec *twins* (`SnakeRecord`, `CamelRecord`) decode a clean page straight from its
  bytes, and `build_records` makes records of them;
- the generated *readers* (`structure_record`, `structure_records`) read a decoded object;
- the cattrs *converter* reads what the readers refuse and says which field is wrong and why
  (`describe_structure_error`).

Everything here is generated once, at import, from the attrs fields of the models in `_models`,
so a field added to a model is read by all three.
"""

from __future__ import annotations

import linecache
import re
import types
import typing
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Annotated, Any, Final

import attrs
import cattrs
import msgspec
from cattrs.gen import make_dict_structure_fn, override

from ._models import NO_EXTRAS, WEBHOOK_ONLY, CallRecord, CollectedField, Hotline, Member

__all__ = [
    "STRUCTURE_ERRORS",
    "CallRow",
    "CamelRecord",
    "SnakeRecord",
    "build_records",
    "camel_case",
    "describe_structure_error",
    "structure_record",
    "structure_records",
]


def camel_case(name: str) -> str:
    """``name`` (snake_case) as the v3 API spells it: ``trans_id`` is ``transId``."""
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _camel_aliases(cls: type) -> Mapping[str, str]:
    """Each camelCase field name of ``cls`` (``transId``) to its attribute (``trans_id``)."""
    names = (a.name for a in attrs.fields(cls) if a.name != "extras")
    return MappingProxyType({camel_case(name): name for name in names if camel_case(name) != name})


_ALIASES: Final[Mapping[type, Mapping[str, str]]] = MappingProxyType(
    {cls: _camel_aliases(cls) for cls in (Member, Hotline, CollectedField, CallRecord)}
)


def _snake_keys(data: dict[str, Any], aliases: Mapping[str, str]) -> dict[str, Any]:
    """``data`` with each camelCase field name replaced by its attribute name."""
    return {aliases.get(key, key): value for key, value in data.items()}


def _strict(*types: type) -> Any:
    """A structure hook for ``T | None`` that accepts exactly ``types`` (no coercion)."""
    names = " or ".join(t.__name__ for t in types)

    def structure(value: Any, _: Any) -> Any:
        if value is None or type(value) in types:
            return value
        raise TypeError(f"expected {names} or null, got {type(value).__name__} {value!r:.40}")

    return structure


#: The ints a record may hold: what every database sink stores (a signed 64-bit integer).
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1


def _int64_or_none(value: Any, _: Any) -> int | None:
    """An int within 64 bits, or null: a larger one is refused when the page is read, so
    that no sink (SQLite, PostgreSQL, DuckDB, Parquet) meets it, and all refuse it alike."""
    if value is None:
        return None
    if type(value) is not int:
        raise TypeError(f"expected int or null, got {type(value).__name__} {value!r:.40}")
    if not INT64_MIN <= value <= INT64_MAX:
        raise TypeError(f"expected an int within 64 bits (signed), got {value}")
    return value


def _float_or_none(value: Any, _: Any) -> float | None:
    kind = type(value)
    if value is None or kind is float:
        return value  # type: ignore[no-any-return]
    if kind is int:
        return float(value)
    raise TypeError(f"expected a number or null, got {kind.__name__} {value!r:.40}")


def _only_json_objects(hook: Any, aliases: Mapping[str, str]) -> Any:
    """Guard a generated hook (cattrs would read a string's characters as "keys"), and read
    camelCase field names as their attributes."""

    def structure(value: Any, cls: Any) -> Any:
        if type(value) is not dict:
            raise TypeError(f"expected an object, got {type(value).__name__} {value!r:.40}")
        return hook(_snake_keys(value, aliases), cls)

    return structure


def _make_converter() -> cattrs.Converter:
    converter = cattrs.Converter(detailed_validation=True, forbid_extra_keys=False)
    converter.register_structure_hook(str | None, _strict(str))
    converter.register_structure_hook(int | None, _int64_or_none)
    converter.register_structure_hook(bool | None, _strict(bool))
    converter.register_structure_hook(float | None, _float_or_none)
    converter.register_structure_hook(Mapping[str, Any] | None, _strict(dict))
    for cls in (Member, Hotline, CollectedField):
        converter.register_structure_hook(
            cls, _only_json_objects(make_dict_structure_fn(cls, converter), _ALIASES[cls])
        )
    collected = converter.get_structure_hook(tuple[CollectedField, ...])

    def structure_collected(value: Any, cls: Any) -> tuple[CollectedField, ...]:
        if value is None:
            return ()
        if type(value) is not list:
            raise TypeError(f"expected an array, got {type(value).__name__} {value!r:.40}")
        return collected(value, cls)  # type: ignore[no-any-return]

    converter.register_structure_hook_func(
        lambda cls: cls == tuple[CollectedField, ...], structure_collected
    )
    converter.register_structure_hook(
        CallRecord,
        _only_json_objects(
            make_dict_structure_fn(CallRecord, converter, extras=override(omit=True)),
            _ALIASES[CallRecord],
        ),
    )
    return converter


_converter: Final = _make_converter()
#: What structuring raises for data of the wrong shape.
STRUCTURE_ERRORS: Final = (TypeError, ValueError, cattrs.BaseValidationError)
_structure_record_fields: Final = _converter.get_structure_hook(CallRecord)
_RECORD_FIELDS: Final = frozenset(a.name for a in attrs.fields(CallRecord)) - {"extras"}


# -- the hot path --------------------------------------------------------------------------
#
# Structuring is most of the client's CPU per record (benchmarks/RESULTS.md). The converter
# above is thorough but slow for this: per field it dispatches through a hook inside a
# try/except that collects detailed errors, and attrs' frozen __init__ sets every attribute
# through object.__setattr__. So each model class also gets a *reader*, generated once from
# its attrs fields: straight-line code that checks every field's type inline, exactly as the
# strict hooks do (exact str/int/bool or null; int widened to float; nested objects and
# arrays), then builds the instance. A reader never explains a failure: it raises `_Invalid`
# and the record goes through the converter, whose error names the field. A reader handles an
# object whose keys are exactly the fields; any other object (camelCase ones included) is
# reshaped first (`_reshaper`).
# Objects made only of strings (members, hotlines, collected fields) repeat across a
# campaign's records, so their readers keep the last few thousand and hand the same frozen
# instance out again: no building, and a fraction of the memory and garbage-collector work.


class _Invalid(Exception):
    """A reader met a value of the wrong type; the converter will say which and why."""


_NONE_TYPES: Final = (type(None),)


def _optional(hint: Any) -> Any:
    """``T`` for ``T | None``, else ``None``."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 2:
        if args[1] in _NONE_TYPES:
            return args[0]
        if args[0] in _NONE_TYPES:
            return args[1]
    return None


# The code that checks (and converts) ``v``, the value of one field, by the field's type.
_EXACT_OR_NULL: Final = """
    if {v}.__class__ is not {kind} and {v} is not None:
        raise _Invalid
"""
_INT64_OR_NULL: Final = f"""
    if {{v}}.__class__ is not int:
        if {{v}} is not None:
            raise _Invalid
    elif not {INT64_MIN} <= {{v}} <= {INT64_MAX}:
        raise _Invalid
"""
_NUMBER_OR_NULL: Final = """
    if {v}.__class__ is not float and {v} is not None:
        if {v}.__class__ is not int:
            raise _Invalid
        {v} = float({v})
"""
_OBJECT_OR_NULL: Final = """
    if {v} is not None:
        {v} = {read}({v})
"""
_ARRAY_OR_NULL: Final = """
    if {v}.__class__ is list:
        {v} = tuple([{read}(x) for x in {v}])
    elif {v} is None:
        {v} = ()
    else:
        raise _Invalid
"""
_ANY_OTHER: Final = """
    try:
        {v} = {hook}({v}, {hint})
    except STRUCTURE_ERRORS:
        raise _Invalid from None
"""


def _check_source(v: str, hint: Any, readers: Mapping[type, Any], env: dict[str, Any]) -> str:
    """The code that checks ``v``, the value of a field of type ``hint``; fills ``env``."""
    inner, args = _optional(hint), typing.get_args(hint)
    if inner is int:
        return _INT64_OR_NULL.format(v=v)
    if inner in (str, bool):
        return _EXACT_OR_NULL.format(v=v, kind=inner.__name__)
    if inner is float:
        return _NUMBER_OR_NULL.format(v=v)
    if inner in readers:
        env[f"read_{v}"] = readers[inner]
        return _OBJECT_OR_NULL.format(v=v, read=f"read_{v}")
    if typing.get_origin(hint) is tuple and args[1:] == (...,) and args[0] in readers:
        env[f"read_{v}"] = readers[args[0]]
        return _ARRAY_OR_NULL.format(v=v, read=f"read_{v}")
    # Any other type: the converter's own hook, as strict, only slower.
    env[f"hook_{v}"], env[f"hint_{v}"] = _converter.get_structure_hook(hint), hint
    return _ANY_OTHER.format(v=v, hook=f"hook_{v}", hint=f"hint_{v}")


_READER: Final = """
def read(o):
    if o.__class__ is not dict:
        raise _Invalid
    n = len(o)
    if n != {count} and n != {required}:
        return reshape(o)
    try:
{reads}
{optional_reads}
    except KeyError:
        return reshape(o)
{lookup}{checks}
{build}{store}
    return r
"""
# Fields one dialect leaves out (v3's own fields, v3-legacy's member.vbot_id) are read when the
# object has every field, and are null when it has every field but those.
_OPTIONAL_READS: Final = """
        if n == {count}:
{reads}
        else:
            {nulls} = None
"""
# A class with a plain __init__ and an instance __dict__ gets a copy of the object, fixed up,
# as that __dict__: one C-level copy instead of one object.__setattr__ per field.
_BUILD_FROM_COPY: Final = """
    d = o.copy()
{stores}
    r = new(cls)
    set_attribute(r, "__dict__", d)
"""
_BUILD_BY_CALL: Final = """
    r = cls({arguments})
"""
_LOOKUP: Final = """
    key = ({values},)
    try:
        r = shared.get(key)
    except TypeError:  # an unhashable value, which the checks below refuse
        r = None
    if r is not None:
        return r
"""
_STORE: Final = """
    if len(shared) >= SHARED_MAX:
        shared.clear()
    shared[key] = r
"""


def _has_plain_init(cls: type) -> bool:
    """Whether ``cls.__init__`` only stores its arguments (no validators, converters, hooks)."""
    return not (
        any(a.validator or a.converter for a in attrs.fields(cls))
        or hasattr(cls, "__attrs_pre_init__")
        or hasattr(cls, "__attrs_post_init__")
    )


def _compile_reader(
    cls: type,
    readers: Mapping[type, Any],
    *,
    extras: str | None = None,
    optional: frozenset[str] = frozenset(),
    absent: frozenset[str] = frozenset(),
) -> Callable[[Any], Any]:
    """Generate the reader of ``cls`` (see above); ``extras`` names the unknown-keys field,
    ``optional`` the fields an object may leave out all together and still be read directly,
    ``absent`` those no pulled object has (`WEBHOOK_ONLY`): they are set to ``None``, and an
    object that has one goes to the converter."""
    hints = typing.get_type_hints(cls)
    names = [a.name for a in attrs.fields(cls) if a.name != extras and a.name not in absent]
    env: dict[str, Any] = {
        "cls": cls,
        "_Invalid": _Invalid,
        "STRUCTURE_ERRORS": STRUCTURE_ERRORS,
        "EMPTY": NO_EXTRAS,
        "new": object.__new__,
        "set_attribute": object.__setattr__,
    }
    values = {name: f"v{i}" for i, name in enumerate(names)}
    required = [name for name in names if name not in optional]
    left_out = [name for name in names if name in optional]
    reads = "\n".join(f"        {values[name]} = o[{name!r}]" for name in required)
    optional_reads = ""
    if optional:
        optional_reads = _OPTIONAL_READS.format(
            count=len(names),
            reads="\n".join(f"            {values[name]} = o[{name!r}]" for name in left_out),
            nulls=" = ".join(values[name] for name in left_out),
        )
    checks = "".join(_check_source(v, hints[name], readers, env) for name, v in values.items())
    if _has_plain_init(cls) and "__slots__" not in cls.__dict__:
        # Only the values a check may have replaced, and the fields the object may lack,
        # are stored again.
        stores = [
            f"    d[{name!r}] = {v}"
            for name, v in values.items()
            if _optional(hints[name]) not in (str, int, bool) or name in optional
        ]
        stores += [f"    d[{name!r}] = None" for name in sorted(absent)]
        if extras is not None:
            stores.append(f"    d[{extras!r}] = EMPTY")
        build = _BUILD_FROM_COPY.format(stores="\n".join(stores))
    else:
        arguments = ", ".join(f"{name}={v}" for name, v in values.items())
        build = _BUILD_BY_CALL.format(arguments=arguments)
    lookup = store = ""
    if extras is None and all(_optional(hints[name]) is str for name in names):
        env["shared"], env["SHARED_MAX"] = {}, 4096
        lookup = _LOOKUP.format(values=", ".join(values.values()))
        store = _STORE
    source = _READER.format(
        count=len(names),
        required=len(required),
        reads=reads,
        optional_reads=optional_reads,
        lookup=lookup,
        checks=checks,
        build=build,
        store=store,
    )
    filename = f"<vbot_cdr reader {cls.__qualname__}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(compile(source, filename, "exec"), env)
    read: Callable[[Any], Any] = env["read"]
    env["reshape"] = _reshaper(read, names, extras, _ALIASES[cls], absent)
    return read


def _reshaper(
    read: Callable[[Any], Any],
    names: list[str],
    extras: str | None,
    aliases: Mapping[str, str],
    absent: frozenset[str],
) -> Any:
    """Read an object with camelCase field names, missing fields (read as null) or unknown
    ones (kept in ``extras`` as sent); leave one with an ``absent`` field to the converter."""

    def reshape(data: dict[str, Any]) -> Any:
        known: dict[str, Any] = dict.fromkeys(names)
        unknown: dict[str, Any] = {}
        for key, value in data.items():
            name = aliases.get(key, key)
            if name in known:
                known[name] = value
            elif name in absent:
                if value is not None:
                    raise _Invalid
            else:
                unknown[key] = value
        instance = read(known)
        if unknown and extras is not None:
            object.__setattr__(instance, extras, MappingProxyType(unknown))
        return instance

    return reshape


#: The fields of each class that a dialect leaves out (read directly all the same).
_LEFT_OUT: Final[Mapping[type, frozenset[str]]] = MappingProxyType(
    {
        Member: frozenset({"vbot_id"}),  # v3-legacy
        CallRecord: frozenset(  # all but v3
            {
                "external_call_id",
                "campaign_id",
                "campaign_group_id",
                "template_script_id",
                "bot_member_status_connect",
            }
        ),
    }
)


#: The fields of each class that only the webhook sends (`WEBHOOK_ONLY`): no pulled object
#: has them, so the readers do not look for them.
_ABSENT: Final[Mapping[type, frozenset[str]]] = MappingProxyType(
    {
        CallRecord: frozenset(name for name in WEBHOOK_ONLY if "." not in name),
        Member: frozenset(n.partition(".")[2] for n in WEBHOOK_ONLY if n.startswith("member.")),
    }
)


def _compile_readers() -> Callable[[Any], Any]:
    readers: dict[type, Any] = {}
    for cls in (Member, Hotline, CollectedField):
        readers[cls] = _compile_reader(
            cls,
            readers,
            optional=_LEFT_OUT.get(cls, frozenset()),
            absent=_ABSENT.get(cls, frozenset()),
        )
    return _compile_reader(
        CallRecord,
        readers,
        extras="extras",
        optional=_LEFT_OUT[CallRecord],
        absent=_ABSENT[CallRecord],
    )


_read_record: Final = _compile_readers()


def structure_record(data: Any) -> CallRecord:
    """Build a `CallRecord` from one decoded JSON object.

    Raises:
        TypeError: ``data`` is not a JSON object.
        cattrs.BaseValidationError: A field has the wrong type (`describe_structure_error`
            names it).
    """
    try:
        return _read_record(data)  # type: ignore[no-any-return]
    except _Invalid:
        return _structure_with_converter(data)


def structure_records(data: list[Any]) -> list[CallRecord]:
    """`structure_record` of each object of a page, in order (the hot path)."""
    try:
        return list(map(_read_record, data))
    except _Invalid:
        return [structure_record(item) for item in data]


def _structure_with_converter(data: Any) -> CallRecord:
    if type(data) is dict:
        data = _snake_keys(data, _ALIASES[CallRecord])
    record: CallRecord = _structure_record_fields(data, CallRecord)
    if not _RECORD_FIELDS.issuperset(data):
        # Unknown fields are rare; paying for a second construction (evolve) on every such
        # record would double the decode cost, so the frozen slot is filled in place, once.
        extras = {k: v for k, v in data.items() if k not in _RECORD_FIELDS}
        object.__setattr__(record, "extras", MappingProxyType(extras))
    return record


def _reason(exc: BaseException, kind: Any) -> str:
    """Why a value was refused: the strict hooks' own words (they say what was expected and
    what came), else cattrs'."""
    if isinstance(exc, TypeError) and str(exc).startswith("expected "):
        return str(exc)
    return cattrs.v.format_exception(exc, kind)


def describe_structure_error(exc: Exception, path: str, data: Any = None) -> tuple[str, str]:
    """The field path and reason of a failure to structure ``data`` (found at ``path``).

    The path names each field as the server sent it: ``data[3].member.name`` for a
    snake_case record, ``data[3].createAt`` for a camelCase one.
    """
    if isinstance(exc, cattrs.BaseValidationError):
        message = cattrs.transform_error(exc, path=path, format_exception=_reason)[0]
        reason, _, where = message.rpartition(" @ ")
        return _path_as_sent(data, path, where), reason
    return path, str(exc)


_PATH_STEP: Final = re.compile(r"\.(\w+)|\[(\d+)\]")


def _path_as_sent(data: Any, root: str, where: str) -> str:
    """``where`` (attribute names below ``root``) with each name spelled as ``data`` has it."""
    if not where.startswith(root):
        return where
    spelled, value = [root], data
    for match in _PATH_STEP.finditer(where, len(root)):
        name, index = match.groups()
        if index is not None:
            spelled.append(f"[{index}]")
            value = value[int(index)] if type(value) is list and int(index) < len(value) else None
            continue
        if type(value) is dict and name not in value and camel_case(name) in value:
            name = camel_case(name)
        spelled.append(f".{name}")
        value = value.get(name) if type(value) is dict else None
    return "".join(spelled)


# -- the fastest path: msgspec, from bytes straight to records -------------------------------
#
# msgspec decodes and checks a page's JSON in C, without building a dict per value first. It
# cannot build the attrs records itself the way the readers do (it would skip unknown fields
# rather than keep them, read a field only under its attribute's name, and read an int of any
# size, where orjson reads one beyond 64 bits as a float, which the readers refuse). So each
# model class gets two *twins*, msgspec structs with its fields, one naming them in
# snake_case and one in camelCase (v3), typed as the readers check them (ints within 64
# bits), refusing any field they do not name. A page decodes into the twins of its spelling
# and `build_records` makes `CallRecord`s of them (one C-level dict per record, as the readers
# build theirs; equal members and hotlines shared, as the readers share them). Anything the
# twins refuse (a bad value, an unknown field, mixed spellings, null for
# `call_collected_data`) goes through the readers above, which give the same records, the
# extras, or the error naming the field.

# orjson reads ints up to 2**64 - 1; msgspec bounds only go to 2**63 - 1, so the few ints
# between take the readers, which refuse them too (`INT64_MAX`): no sink could store them.
_INT64: Final = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
_NESTED: Final[tuple[type, ...]] = (Member, Hotline)


def _twin(cls: type, camel: bool, nested: Mapping[type, Any]) -> Any:
    """``cls``'s fields as a msgspec struct (see above), in camelCase if ``camel``."""
    hints = typing.get_type_hints(cls)

    def kind(hint: Any) -> Any:
        inner = _optional(hint)
        if inner is int:
            return _INT64 | None
        if inner in nested:
            return nested[inner] | None
        return hint

    fields = [(a.name, kind(hints[a.name]), a.default) for a in attrs.fields(cls)]
    fields = [field for field in fields if field[0] != "extras"]
    rename = {name: alias for alias, name in _ALIASES[cls].items()} if camel else None
    return msgspec.defstruct(
        f"{'Camel' if camel else 'Snake'}{cls.__name__}",
        fields,
        rename=rename,
        forbid_unknown_fields=True,
        frozen=True,  # hashable, so equal members and hotlines can be shared
        gc=False,  # short-lived and acyclic: the collector need not track them
    )


def _record_twin(camel: bool) -> Any:
    twin = _twin(CallRecord, camel, {cls: _twin(cls, camel, {}) for cls in _NESTED})
    # A class attribute, not a field: a twin reads like the `CallRecord` it stands for
    # (a clean page has no unknown fields), so every row encoder takes either.
    twin.extras = NO_EXTRAS
    return twin


#: A snake_case record as msgspec decodes it; `build_records` makes it a `CallRecord`.
SnakeRecord: Final[Any] = _record_twin(camel=False)
#: A camelCase (v3) record as msgspec decodes it; `build_records` makes it a `CallRecord`.
CamelRecord: Final[Any] = _record_twin(camel=True)

_NESTED_FIELDS: Final = tuple(
    (name, cls)
    for name, hint in typing.get_type_hints(CallRecord).items()
    for cls in _NESTED
    if _optional(hint) is cls
)
_SHARED_MAX: Final = 4096
# build_records makes a CallRecord from its __dict__, as the readers do: that takes a plain
# __init__ (nothing it would skip) and an instance __dict__.
if not _has_plain_init(CallRecord) or "__slots__" in CallRecord.__dict__:
    raise TypeError("CallRecord must keep a plain __init__ and an instance __dict__")


class CallRow(typing.Protocol):
    """A record on its way through the paging stages: a `CallRecord`, or the twin a clean
    page decodes into (`SnakeRecord`, `CamelRecord`), which becomes one in `build_records`.

    The stages read only these two fields, which both kinds have under the same names. A
    page waiting its turn thus holds twins, which the garbage collector does not track,
    rather than records, which it would walk over again and again.

    A twin has every attribute of the record it stands for, with the same values (nested
    ``member`` and ``hotline`` twins likewise, and ``extras`` empty), so the bulk outputs
    encode rows straight from it, without building a record (`Iteration.next_rows`).
    """

    @property
    def trans_id(self) -> str | None: ...

    @property
    def create_at(self) -> int | None: ...


_shared: Final[dict[Any, Any]] = {}


def _share(cls: type, twin: Any) -> Any:
    """``twin`` as a ``cls``, kept for the next equal twin (the last few thousand)."""
    if len(_shared) >= _SHARED_MAX:
        _shared.clear()
    instance = _shared[twin] = cls(**msgspec.structs.asdict(twin))
    return instance


# build_records' loop, generated: one C-level copy of a dict of every field for each record,
# then one store per field read off the twin (no dict growing key by key, as asdict's does).
_BUILDER: Final = """
def build_records(rows):
    records = []
    append = records.append
    for row in rows:
        if type(row) is CallRecord:
            append(row)
            continue
        d = template.copy()
{stores}
        record = new(CallRecord)
        set_attribute(record, "__dict__", d)
        append(record)
    return records
"""
_NESTED_STORE: Final = """
        nested = row.{name}
        if nested is not None:
            d[{name!r}] = shared(nested) or share({cls}, nested)"""


def _compile_builder() -> Callable[[typing.Sequence[CallRow]], list[CallRecord]]:
    nested = dict(_NESTED_FIELDS)
    names = [a.name for a in attrs.fields(CallRecord) if a.name != "extras"]
    stores = "".join(
        _NESTED_STORE.format(name=name, cls=nested[name].__name__)
        if name in nested
        else f"\n        d[{name!r}] = row.{name}"
        for name in names
    )
    env: dict[str, Any] = {
        "CallRecord": CallRecord,
        **{cls.__name__: cls for cls in _NESTED},
        "template": {**dict.fromkeys(names), "extras": NO_EXTRAS},
        "new": object.__new__,
        "set_attribute": object.__setattr__,
        "shared": _shared.get,
        "share": _share,
    }
    source = _BUILDER.format(stores=stores)
    filename = "<vbot_cdr record builder>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(compile(source, filename, "exec"), env)
    build: Callable[[typing.Sequence[CallRow]], list[CallRecord]] = env["build_records"]
    return build


#: ``rows`` as `CallRecord`\ s, in order: each twin built into one (without extras: twins
#: have none), each `CallRecord` as it is.
build_records: Final = _compile_builder()
