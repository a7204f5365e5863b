"""`dataclass`, `field`, `fields`, `replace` and `asdict` as the standard library's, for
the modules every start of `ocirun proot` and `ocirun run` imports, without the cost of
`import dataclasses`.

`dataclasses` imports inspect, re, copy and ast (~14 ms on a 2-vCPU Xeon, a quarter of
`ocirun proot /bin/true`), and makes each class in ~0.3 ms (here ~0.05 ms: only __init__
is generated source, as dataclasses' is, so instances cost what a dataclass's cost).
The subset ocirun uses: __init__ with defaults, default_factory and init=False fields,
__post_init__, __repr__, __eq__, the __hash__ rules, frozen, slots, kw_only (for the whole
class), __match_args__. Not supported: order, unsafe_hash, per-field kw_only, InitVar
(TypeError); ClassVar annotations are class attributes, as in dataclasses. Classes made
here are not dataclasses for the `dataclasses` module: use this module's functions on them.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing's, without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Any, dataclass_transform
else:
    def dataclass_transform(**_kwargs):
        """PEP 681's marker: type checkers read `dataclass` below as dataclasses' own."""
        return lambda decorator: decorator

_MISSING = object()
_FIELDS = "__record_fields__"


class FrozenInstanceError(AttributeError):
    """Assignment to a field of a frozen record (dataclasses' error of the same name)."""


class Field:
    """One field: its name, default or default_factory, and what the methods use it for."""

    __slots__ = ("name", "default", "default_factory", "init", "repr", "compare", "hash", "kw_only")

    def __init__(self, default=_MISSING, default_factory=_MISSING, init=True, repr=True,
                 compare=True, hash=None):
        if default is not _MISSING and default_factory is not _MISSING:
            raise ValueError("cannot specify both default and default_factory")
        self.name, self.kw_only = "", False
        self.default, self.default_factory = default, default_factory
        self.init, self.repr, self.compare, self.hash = init, repr, compare, hash

    def __repr__(self) -> str:
        return f"Field(name={self.name!r})"


def field(*, default=_MISSING, default_factory=_MISSING, init=True, repr=True, compare=True,
          hash=None) -> Any:
    """A field with options (dataclasses.field's keywords that ocirun uses); typed Any, as
    dataclasses types its field(), so that `x: list = field(default_factory=list)` checks."""
    return Field(default, default_factory, init, repr, compare, hash)


@dataclass_transform(field_specifiers=(Field, field))
def dataclass(cls=None, /, *, frozen=False, eq=True, slots=False, init=True, repr=True, kw_only=False):
    """The class decorator: `@dataclass` or `@dataclass(frozen=True, ...)`."""

    def wrap(c: type) -> type:
        return _make(c, frozen=frozen, eq=eq, slots=slots, init=init, repr=repr, kw_only=kw_only)

    return wrap if cls is None else wrap(cls)


def fields(obj) -> tuple[Field, ...]:
    """The fields of a record class or instance, in order."""
    try:
        return tuple(getattr(obj, _FIELDS).values())
    except AttributeError:
        raise TypeError("must be called with a record class or instance") from None


def asdict(obj) -> dict:
    """A record as a dict, records in it (also in lists, tuples, dicts) as dicts too."""
    return {f.name: _plain(getattr(obj, f.name)) for f in getattr(obj, _FIELDS).values()}


def _plain(value):
    if hasattr(type(value), _FIELDS):
        return asdict(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, dict):
        return type(value)((_plain(k), _plain(v)) for k, v in value.items())
    return value


def replace(obj, /, **changes):
    """A copy of record `obj` with `changes` (dataclasses.replace)."""
    for f in getattr(obj, _FIELDS).values():
        if not f.init:
            if f.name in changes:
                raise ValueError(f"field {f.name} is declared with init=False, it cannot be "
                                 "specified with replace()")
        elif f.name not in changes:
            changes[f.name] = getattr(obj, f.name)
    return obj.__class__(**changes)


def _own_fields(cls: type, kw_only: bool) -> list[Field]:
    """The fields cls's own annotations declare (string annotations: ClassVar by name)."""
    own = []
    for name, note in cls.__dict__.get("__annotations__", {}).items():
        note = note if isinstance(note, str) else getattr(note, "__name__", "")
        if note.startswith(("ClassVar", "typing.ClassVar")):
            continue
        if note.startswith(("InitVar", "dataclasses.InitVar", "KW_ONLY", "dataclasses.KW_ONLY")):
            raise TypeError(f"{cls.__name__}.{name}: {note} is not supported by ocirun.util.records")
        value = cls.__dict__.get(name, _MISSING)
        f = value if isinstance(value, Field) else Field(default=value)
        if f.default.__class__ in (list, dict, set):
            raise ValueError(f"mutable default {type(f.default)} for field {name} is not allowed: "
                             "use default_factory")
        f.name, f.kw_only = name, kw_only
        own.append(f)
    return own


def _make(cls: type, *, frozen: bool, eq: bool, slots: bool, init: bool, repr: bool,
          kw_only: bool) -> type:
    all_fields: dict[str, Field] = {}
    for base in cls.__mro__[-1:0:-1]:
        all_fields.update(getattr(base, _FIELDS, {}) if _FIELDS in base.__dict__ else {})
    for f in _own_fields(cls, kw_only):
        all_fields[f.name] = f
        if isinstance(cls.__dict__.get(f.name), Field):
            if f.default is _MISSING:
                delattr(cls, f.name)
            else:
                setattr(cls, f.name, f.default)
    setattr(cls, _FIELDS, all_fields)
    values = list(all_fields.values())
    methods = {}
    if init:  # generated source, as dataclasses' (instances are made often); the rest are closures
        scope: dict = {"_MISSING": _MISSING}
        exec(_init_source(values, frozen, hasattr(cls, "__post_init__"), scope), scope)
        methods["__init__"] = scope["__init__"]
    if repr:
        methods["__repr__"] = _repr_method(tuple(f.name for f in values if f.repr))
    if eq:
        methods["__eq__"] = _eq_method(tuple(f.name for f in values if f.compare))
    if frozen:
        methods.update(__setattr__=_frozen_setattr, __delattr__=_frozen_delattr)
    for name, method in methods.items():
        if name in ("__init__", "__repr__", "__eq__"):
            method.__qualname__ = f"{cls.__qualname__}.{name}"
        setattr(cls, name, method)
    _set_hash(cls, values, eq, frozen)
    cls.__match_args__ = tuple(f.name for f in values if f.init and not f.kw_only)
    return _with_slots(cls, values) if slots else cls


def _init_source(values: list[Field], frozen: bool, post_init: bool, scope: dict) -> str:
    """__init__'s source; defaults and factories go in `scope` under _d_NAME / _f_NAME."""
    params, keyword, body, seen_default = ["self"], [], [], False
    for f in values:
        if f.default is not _MISSING:
            scope[f"_d_{f.name}"] = f.default
        if f.default_factory is not _MISSING:
            scope[f"_f_{f.name}"] = f.default_factory
        if f.init:
            here = keyword if f.kw_only else params
            if f.default is not _MISSING:
                here.append(f"{f.name}=_d_{f.name}")
            elif f.default_factory is not _MISSING:
                here.append(f"{f.name}=_MISSING")
            elif f.kw_only:
                here.append(f.name)
            elif seen_default:
                raise TypeError(f"non-default argument {f.name!r} follows default argument")
            else:
                params.append(f.name)
            seen_default = seen_default or not f.kw_only and (f.default is not _MISSING
                                                              or f.default_factory is not _MISSING)
        value = _init_value(f)
        if value is not None:
            body.append(f"object.__setattr__(self, {f.name!r}, {value})" if frozen
                        else f"self.{f.name} = {value}")
    if post_init:
        body.append("self.__post_init__()")
    params += ["*", *keyword] if keyword else []
    return f"def __init__({', '.join(params)}):\n    " + "\n    ".join(body or ["pass"])


def _init_value(f: Field) -> str | None:
    """The expression __init__ stores in field f (None: left unset)."""
    if f.default_factory is not _MISSING:
        return f"_f_{f.name}() if {f.name} is _MISSING else {f.name}" if f.init else f"_f_{f.name}()"
    if f.init:
        return f.name
    return None if f.default is _MISSING else f"_d_{f.name}"


def _repr_method(names: tuple[str, ...]):
    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in names)
        return f"{self.__class__.__qualname__}({shown})"

    return __repr__


def _eq_method(names: tuple[str, ...]):
    def __eq__(self, other) -> bool:
        if other.__class__ is self.__class__:
            return tuple(getattr(self, n) for n in names) == tuple(getattr(other, n) for n in names)
        return NotImplemented

    return __eq__


def _frozen_setattr(self, name: str, value) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _frozen_delattr(self, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field {name!r}")


def _set_hash(cls: type, values: list[Field], eq: bool, frozen: bool) -> None:
    """dataclasses' rules: eq and frozen hash the compared fields; eq alone makes the
    instances unhashable unless the class defines __hash__; no eq keeps the inherited one."""
    if not eq or "__hash__" in cls.__dict__ and cls.__dict__["__hash__"] is not None:
        return
    if not frozen:
        cls.__hash__ = None  # type: ignore[assignment]
        return
    hashed = tuple(f.name for f in values if (f.compare if f.hash is None else f.hash))

    def __hash__(self) -> int:
        return hash(tuple(getattr(self, name) for name in hashed))

    cls.__hash__ = __hash__  # type: ignore[assignment]


def _with_slots(cls: type, values: list[Field]) -> type:
    """The class again, with __slots__ for its fields (the class attributes holding
    defaults go: __init__ has them)."""
    names = tuple(f.name for f in values)
    body = {k: v for k, v in cls.__dict__.items() if k not in (*names, "__dict__", "__weakref__")}
    body["__slots__"] = tuple(n for n in names if not any(n in getattr(b, "__slots__", ())
                                                           for b in cls.__mro__[1:]))
    new = type(cls)(cls.__name__, cls.__bases__, body)
    new.__qualname__ = cls.__qualname__
    return new
