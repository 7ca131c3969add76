"""Squid's regular expressions: the POSIX-to-Python translator against glibc's regcomp.

Each row of CASES is what glibc 2.36 (Debian 12, the library Squid 5.7 uses)
answers; where glibc can be loaded the row is checked against it again, and a
property test compares random patterns with it.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from squidpy.config.posix_regex import PosixRegex, PosixRegexError, translate
from tests.regcomp import AVAILABLE, glibc_search

CASES = [
    ('[[:digit:]]', False, ['a1', 'abc'], [True, False]),
    ('\\d', False, ['d', '7'], [True, False]),
    ('\\D', False, ['D', 'x'], [True, False]),
    ('\\w+', False, ['_a9', '--'], [True, False]),
    ('\\s', False, [' ', '\t', 'x'], [True, True, False]),
    ('\\bfoo\\b', False, ['a foo b', 'afoob'], [True, False]),
    ('\\<ad', False, ['x ad', 'bad'], [True, False]),
    ('ads\\>', False, ['ads x', 'adsl'], [True, False]),
    ('\\n', False, ['n', '\n'], [True, False]),
    ('\\t', False, ['t', '\t'], [True, False]),
    ('\\x41', False, ['x41', 'A'], [True, False]),
    ('\\.exe$', False, ['setup.exe', 'setupXexe', 'a.exe/'], [True, False, False]),
    ('^http://ads\\.', False, ['http://ads.example/', 'https://ads.example/'], [True, False]),
    ('(^|\\.)ads?[0-9]*\\.', False, ['ads1.example', 'www.ad.example', 'bads.example'], [True, True, False]),
    ('\\.(exe|msi)$', True, ['A.EXE', 'a.Msi', 'a.zip'], [True, True, False]),
    ('[a-c]', True, ['B', 'd'], [True, False]),
    ('[_-z]', True, ['x'], 'Invalid range end'),
    ('[_-z]', False, ['x', 'A'], [True, False]),
    ('\\a', True, ['a', 'A'], [False, False]),
    ('\\A', True, ['a', 'A'], [True, True]),
    ('[[:upper:]]', True, ['a', '1'], [True, False]),
    ('[[:lower:]]', False, ['A', 'a'], [False, True]),
    ('a{2,3}', False, ['a', 'aa'], [False, True]),
    ('a{,2}b', False, ['b', 'aab'], [True, True]),
    ('a{1', False, ['a'], 'Unmatched \\{'),
    ('a{1,2,3}', False, ['a'], 'Invalid content of \\{\\}'),
    ('a{2,1}', False, ['a'], 'Invalid content of \\{\\}'),
    ('a{32768}', False, ['a'], 'Regular expression too big'),
    ('x{1\\,2}', False, ['x'], [True]),
    ('*a', False, ['a'], 'Invalid preceding regular expression'),
    ('a|*b', False, ['b'], 'Invalid preceding regular expression'),
    ('(*a)', False, ['a'], 'Invalid preceding regular expression'),
    ('(?i)abc', False, ['abc'], 'Invalid preceding regular expression'),
    ('^*', False, ['*'], 'Invalid preceding regular expression'),
    ('a**', False, ['', 'aaa'], [True, True]),
    ('ba+?c', False, ['bc', 'bac'], [True, True]),
    ('a)', False, ['a)', 'a'], [True, False]),
    ('((a)', False, ['a'], 'Unmatched ( or \\('),
    ('()', False, ['x'], [True]),
    ('(a|)', False, ['x'], [True]),
    ('a||b', False, ['x'], [True]),
    ('a^b', False, ['a^b'], [False]),
    ('a$b', False, ['a$b'], [False]),
    ('x$', False, ['x', 'x\n'], [True, False]),
    ('.', False, ['\n', ''], [True, False]),
    ('[^a]', False, ['\n', 'a'], [True, False]),
    ('[\\d]', False, ['\\', 'd', '1'], [True, True, False]),
    ('[\\]]', False, ['\\]', ']'], [True, False]),
    ('[]a]', False, [']'], [True]),
    ('[^]a]', False, ['b', ']'], [True, False]),
    ('[a-]', False, ['-'], [True]),
    ('[-a]', False, ['-'], [True]),
    ('[a-z-0]', False, ['x'], 'Invalid range end'),
    ('[z-a]', False, ['x'], 'Invalid range end'),
    ('[%--]', False, ['+', '.'], [True, False]),
    ('[--/]', False, ['.'], [True]),
    ('[]', False, ['x'], 'Unmatched [, [^, [:, [., or [='),
    ('[', False, ['x'], 'Invalid regular expression'),
    ('[a', False, ['x'], 'Unmatched [, [^, [:, [., or [='),
    ('[[:alpha:]', False, ['a'], 'Unmatched [, [^, [:, [., or [='),
    ('[[:foo:]]', False, ['a'], 'Invalid character class name'),
    ('[[:alpha:]-z]', False, ['-'], 'Invalid range end'),
    ('[[.a.]-c]', False, ['b'], [True]),
    ('[[.space.]]', False, [' '], 'Invalid collation character'),
    ('[[=a=]]', False, ['a'], [True]),
    ('(a)\\1', False, ['aa', 'ab'], [True, False]),
    ('\\1', False, ['x'], 'Invalid back reference'),
    ('(a\\1)', False, ['aa'], 'Invalid back reference'),
    ('\\', False, ['x'], 'Trailing backslash'),
    ('{', False, ['{'], 'Invalid preceding regular expression'),
    ('a}', False, ['a}'], [True]),
    ('\\{', False, ['{'], [True]),
    ('\\(', False, ['('], [True]),
    ('\\B', False, ['', 'a'], [True, False]),
    ('\\b', False, [''], [False]),
    ("\\`a\\'", False, ['a', 'ba'], [True, False]),
    ('é', False, ['café'], [True]),
    ('É', True, ['é'], [False]),
    ('^.*foo', False, ['xfoo'], [True]),
]


def ours(pattern: str, texts: list[str], icase: bool) -> list[bool] | str:
    try:
        regex = PosixRegex(pattern, icase)
    except PosixRegexError as e:
        return str(e)
    return [regex.search(t) for t in texts]


@pytest.mark.parametrize("pattern,icase,texts,expected", CASES)
def test_translation_matches_glibc(pattern, icase, texts, expected):
    assert ours(pattern, texts, icase) == expected
    if AVAILABLE:
        assert glibc_search(pattern, texts, icase) == expected, "the table no longer says what glibc says"


@pytest.mark.parametrize("pattern,note", [
    (r"\d+", r"'\d' is a literal 'd' here"),
    (r"a\nb", r"'\n' is a literal 'n' here"),
    (r"[\w.]+", "a '\\' inside [...] is a backslash here"),
    (r"ba+?c", "are not lazy repetitions here"),
])
def test_perl_habits_get_a_note(pattern, note):
    assert any(note in n for n in translate(pattern)[1])


def test_posix_expressions_get_no_note():
    for pattern in (r"^https?://[^/]+\.example\.com/", r"[[:digit:]]{3}", r"\.(jpe?g|png)$", r"\bads\b"):
        assert translate(pattern)[1] == []


def test_text_stops_at_nul_as_a_c_string_does():
    assert not PosixRegex("b").search("a\x00b")


ALPHABET = ["a", "b", "A", "(", ")", "[", "]", "{", "}", "|", "*", "+", "?", ".", "^", "$", "\\", "-", ",",
            "1", "2", "0", ":", "=", "[:alpha:]", "[:digit:]", "[:upper:]", "[.a.]", "[=b=]", "d", "w", "s",
            "<", ">", "`", "'", " ", "_", "\xe9"]
patterns = st.lists(st.sampled_from(ALPHABET), max_size=12).map("".join)
texts = st.lists(st.text(alphabet="abAB_ -1(){}[]\xe9.2dDwW", max_size=8), min_size=1, max_size=4)


@pytest.mark.slow
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(patterns, st.booleans(), texts)
def test_random_patterns_compile_and_match_as_in_glibc(pattern, icase, subjects):
    assert ours(pattern, subjects, icase) == glibc_search(pattern, subjects, icase)
