"""squidpy/config/settings.py declares the type of each directive's value for the type
checker; the registry is the one source of truth.  These tests keep the two in exact
agreement, so that a directive added, removed or given another parser without its
declaration fails here (and a declaration mypy trusts cannot drift from what the loader
stores)."""

from __future__ import annotations

import pytest

from squidpy.config import loader
from squidpy.config.registry import APPEND, CUSTOM, DIRECTIVES, REPLACE, Directive
from squidpy.config.settings import Settings

WITH_VALUES = [d for d in DIRECTIVES.values() if d.has_value]


def _members(annotation: str) -> set[str]:
    """The members of a union written ``A | B | None`` (at the top level only)."""
    members, depth, start = set(), 0, 0
    for i, c in enumerate(annotation):
        depth += c in "[(" and 1 or c in "])" and -1 or 0
        if c == "|" and depth == 0:
            members.add(annotation[start:i].strip())
            start = i + 1
    members.add(annotation[start:].strip())
    return members


def _returns(d: Directive) -> str:
    assert d.parse is not None
    annotation = d.parse.__annotations__.get("return")
    assert isinstance(annotation, str), f"{d.name}: its parser {d.parse.__qualname__} declares no return type"
    return annotation


def test_declared_names_are_the_directives_with_values_in_registry_order():
    assert list(Settings.__annotations__) == [d.name for d in WITH_VALUES]


def test_directives_without_a_value_of_their_own_store_elsewhere():
    """acl, cache_peer_access, *_header_replace and *_header_add: CUSTOM parsers that
    write into another directive's value, so Config has no attribute of theirs."""
    without = sorted(d.name for d in DIRECTIVES.values() if d.status == "implemented" and not d.has_value)
    assert without == ["acl", "cache_peer_access", "reply_header_add", "reply_header_replace",
                       "request_header_add", "request_header_replace"]
    config = loader.load(text="")
    assert not any(hasattr(config, name) for name in without)


@pytest.mark.parametrize("d", [d for d in WITH_VALUES if d.kind == REPLACE], ids=lambda d: d.name)
def test_replaced_value_is_what_the_parser_returns(d):
    """A later line replaces an earlier one: the value is what the parser returns, or
    None when the directive has no default and no line sets it."""
    expected = _members(_returns(d)) | ({"None"} if d.default is None else set())
    assert _members(Settings.__annotations__[d.name]) == expected


@pytest.mark.parametrize("d", [d for d in WITH_VALUES if d.kind == APPEND], ids=lambda d: d.name)
def test_appended_value_is_a_list_of_what_the_parser_returns(d):
    assert Settings.__annotations__[d.name] == f"list[{_returns(d)}]"


@pytest.mark.parametrize("d", [d for d in WITH_VALUES if d.kind == CUSTOM], ids=lambda d: d.name)
def test_custom_value_starts_as_the_declared_type(d):
    """A CUSTOM parser stores into ``ctx.config.NAME`` itself (mypy checks it does so with
    the declared type); the value it starts from is of that type."""
    assert _returns(d) == "None"
    declared = Settings.__annotations__[d.name].split("[", 1)[0]
    assert type(d.initial()).__name__ == declared


def test_loaded_configuration_has_every_declared_attribute():
    config = loader.load(text="")
    missing = [name for name in Settings.__annotations__ if not hasattr(config, name)]
    assert missing == []
