"""ocirun.util.records against the standard library's dataclasses: the same classes made
by both behave alike (the engine's records are made by the former at every start)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from typing import ClassVar

import pytest

from ocirun.util import records
from tests.helpers import ocirun_argv, ocirun_env


def _pair(**options):
    """The same class body made by dataclasses and by records."""

    def body(dc, field):
        @dc(**options)
        class Point:
            """A point."""

            x: int
            y: int = 2
            tags: list[str] = field(default_factory=list)
            note: str = field(default="n", compare=False, repr=False)
            limit: ClassVar[int] = 10

        return Point

    return body(dataclasses.dataclass, dataclasses.field), body(records.dataclass, records.field)


@pytest.mark.parametrize("options", [{}, {"frozen": True}, {"eq": False}, {"slots": True},
                                     {"frozen": True, "slots": True}])
def test_same_behaviour_as_dataclasses(options):
    std, own = _pair(**options)
    for cls in (std, own):
        assert cls.limit == 10
    a_std, a_own = std(1), own(1)
    assert repr(a_own) == repr(a_std).replace(std.__qualname__, own.__qualname__)
    assert (own(1, 2, ["t"]) == own(1, 2, ["t"])) == (std(1, 2, ["t"]) == std(1, 2, ["t"]))
    assert (own(1, note="a") == own(1, note="b")) == (std(1, note="a") == std(1, note="b"))
    assert own(1) != own(3)
    assert own(1).tags is not own(1).tags
    assert (own.__hash__ is None) == (std.__hash__ is None)
    if options.get("frozen"):  # the list field makes both unhashable, as tuples of it are
        for cls in (std, own):
            with pytest.raises(TypeError, match="unhashable"):
                hash(cls(1))
    assert own.__match_args__ == std.__match_args__
    assert hasattr(a_own, "__dict__") == hasattr(a_std, "__dict__")
    if options.get("frozen"):
        with pytest.raises(dataclasses.FrozenInstanceError):
            a_std.x = 5
        with pytest.raises(records.FrozenInstanceError):
            a_own.x = 5
    changed = records.replace(a_own, y=7)
    assert (changed.x, changed.y) == (1, 7) == (dataclasses.replace(a_std, y=7).x, 7)
    assert [f.name for f in records.fields(own)] == [f.name for f in dataclasses.fields(std)]


def test_post_init_and_init_false():
    @records.dataclass(frozen=True)
    class Arch:
        name: str
        derived: str = records.field(init=False, repr=False, compare=False)

        def __post_init__(self) -> None:
            object.__setattr__(self, "derived", self.name.upper())

    a = Arch("x86_64")
    assert a.derived == "X86_64" and repr(a) == "test_post_init_and_init_false.<locals>.Arch(name='x86_64')"
    assert records.replace(a, name="i386").derived == "I386"
    with pytest.raises(ValueError, match="init=False"):
        records.replace(a, derived="no")


def test_inherited_fields_and_explicit_hash():
    @records.dataclass
    class Base:
        a: int

    @records.dataclass
    class Child(Base):
        b: int = 0

        def __hash__(self) -> int:
            return 7

    assert Child(1, 2) == Child(1, 2) and repr(Child(1)).endswith("Child(a=1, b=0)")
    assert hash(Child(1)) == 7 and Base.__hash__ is None


def test_mistakes_are_refused_like_dataclasses():
    with pytest.raises(ValueError, match="mutable default"):
        @records.dataclass
        class Bad:
            items: list = []  # noqa: RUF012

    with pytest.raises(TypeError, match="non-default argument 'b' follows default argument"):
        @records.dataclass
        class Order:
            a: int = 1
            b: int

    with pytest.raises(ValueError):
        records.field(default=1, default_factory=int)
    with pytest.raises(TypeError):
        records.fields(object())


def test_a_proot_start_imports_no_dataclasses_nor_typing(bb_root):
    """`ocirun proot -r ROOTFS /bin/true` from start to end (the engine, its always-on
    extensions, the probes) imports none of these (each ~10 ms of a start; -S: not what
    the site of a development install imports)."""
    cp = subprocess.run([sys.executable, "-S", "-X", "importtime", *ocirun_argv("proot", "-r", bb_root, "/bin/true")[1:]],
                        capture_output=True, text=True, env=ocirun_env(), timeout=120, cwd="/",
                        stdin=subprocess.DEVNULL)
    assert cp.returncode == 0, cp.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in cp.stderr.splitlines() if "|" in line}
    assert "ocirun.engine.loop" in imported
    assert not imported & {"click", "dataclasses", "typing", "inspect", "re"}


def test_kw_only_and_asdict_like_dataclasses():
    def body(dc, field):
        @dc
        class Inner:
            v: int = 1

        @dc(kw_only=True)
        class Base:
            image: str
            tags: tuple[str, ...] = ()

        @dc(kw_only=True)
        class Given(Base):
            inner: list[Inner] = field(default_factory=lambda: [Inner(), Inner(2)])
            named: dict[str, Inner] = field(default_factory=dict)

        return Given, Inner

    (std, std_inner), (own, own_inner) = body(dataclasses.dataclass, dataclasses.field), \
        body(records.dataclass, records.field)
    for cls in (std, own):
        with pytest.raises(TypeError):
            cls("positional")
    a_std = std(image="x", named={"k": std_inner(3)})
    a_own = own(image="x", named={"k": own_inner(3)})
    assert records.asdict(a_own) == dataclasses.asdict(a_std)
    assert own.__match_args__ == std.__match_args__ == ()
    assert [f.name for f in records.fields(a_own)] == [f.name for f in dataclasses.fields(a_std)]
