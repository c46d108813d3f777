"""The public surface: one sorted `__all__` in `vbot_cdr`, naming everything public."""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import Any

import attrs
import pytest

import vbot_cdr
import vbot_cdr.testing

#: The names issue 2 fixes as the contract; later issues may add, never remove.
CONTRACT = {
    "APIError",
    "AuthenticationError",
    "BotConversation",
    "CallFilter",
    "CallRecord",
    "CollectedField",
    "Hotline",
    "Member",
    "RateLimitError",
    "ResponseFormatError",
    "RetryPolicy",
    "TransportError",
    "VBotClient",
    "VBotError",
}

# `from __future__ import annotations` leaves a public-looking `annotations` in each module.
FutureFeature = type(annotations)


def public_names(module: types.ModuleType) -> set[str]:
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not isinstance(value, (types.ModuleType, FutureFeature))
    }


def test_all_is_sorted_without_duplicates() -> None:
    """vbot_cdr.__all__ is sorted and names each member once."""
    assert vbot_cdr.__all__ == sorted(set(vbot_cdr.__all__))


def test_all_is_complete() -> None:
    """Every public name of vbot_cdr is in __all__, and every name in __all__ exists."""
    assert set(vbot_cdr.__all__) == public_names(vbot_cdr)


def test_contract_names_are_exported() -> None:
    """Every name the client-core issue fixes is importable from vbot_cdr."""
    assert set(vbot_cdr.__all__) >= CONTRACT


def test_members_belong_to_vbot_cdr() -> None:
    """Each exported member reports vbot_cdr as its module, so tracebacks show vbot_cdr.X."""
    for name in vbot_cdr.__all__:
        assert getattr(vbot_cdr, name).__module__ == "vbot_cdr", name


def test_errors_derive_from_vbot_error() -> None:
    """Every exported exception derives from VBotError."""
    for name in vbot_cdr.__all__:
        member = getattr(vbot_cdr, name)
        if isinstance(member, type) and issubclass(member, BaseException):
            assert issubclass(member, vbot_cdr.VBotError), name


def test_version_is_the_installed_version() -> None:
    """vbot_cdr.__version__ is the version of the installed distribution."""
    from importlib.metadata import version

    assert vbot_cdr.__version__ == version("vbot_cdr")


def test_testing_all_is_sorted_and_complete() -> None:
    """vbot_cdr.testing.__all__ is sorted and names every public member."""
    assert vbot_cdr.testing.__all__ == sorted(set(vbot_cdr.testing.__all__))
    assert set(vbot_cdr.testing.__all__) == public_names(vbot_cdr.testing)


def public_classes() -> list[type]:
    members = [getattr(vbot_cdr, name) for name in vbot_cdr.__all__]
    members += [getattr(vbot_cdr.testing, name) for name in vbot_cdr.testing.__all__]
    return [member for member in members if isinstance(member, type)]


@pytest.mark.parametrize("cls", public_classes(), ids=lambda cls: cls.__name__)
def test_type_hints_resolve(cls: type) -> None:
    """typing.get_type_hints works on every public class, and names real types, not strings."""
    hints = typing.get_type_hints(cls)
    assert not [name for name, hint in hints.items() if isinstance(hint, (str, typing.ForwardRef))]
    if attrs.has(cls) and cls.__module__ == "vbot_cdr":
        # The attrs fields carry the same resolved types (cattrs and dlt read these).
        assert {a.name: a.type for a in attrs.fields(cls)} == {
            a.name: hints[a.name] for a in attrs.fields(cls)
        }


def test_record_type_hints_name_the_field_types() -> None:
    """The hints of CallRecord are the types a tool needs to build or check a record."""
    hints = typing.get_type_hints(vbot_cdr.CallRecord)
    assert hints["duration"] == int | None
    assert hints["member"] == vbot_cdr.Member | None
    assert hints["call_collected_data"] == tuple[vbot_cdr.CollectedField, ...]
    assert hints["extras"] == Mapping[str, Any]
