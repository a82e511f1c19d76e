"""The series selectors of a PromQL expression: which metric names and label matchers it uses.

Enough of PromQL's lexical structure to tell a metric name from a function, an aggregation,
a keyword, a label name in `by (...)`/`on (...)`, a duration or a Grafana variable. Syntax
errors are promtool's business (`promtool check rules`); this only has to find the names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<range>\[[^\]]*\])
  | (?P<number>(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(?:ms|[smhdwy])*)
  | (?P<variable>\$(?:\{[^}]*\}|\w+))
  | (?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<op>=~|!~|!=|==|<=|>=|[-+*/%^<>=(){},@])
""", re.VERBOSE)

# Followed by a parenthesised list of label names, not by an expression.
_LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
# Aggregations may put `by (...)` between their name and their argument.
_AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count",
                 "count_values", "bottomk", "topk", "quantile"}
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "atan2", "nan", "inf", "start", "end"}


@dataclass(frozen=True)
class Matcher:
    label: str
    op: str  # =, !=, =~, !~
    value: str


@dataclass(frozen=True)
class Selector:
    metric: str | None  # None for {__name__=...} or a bare {label="..."}
    matchers: tuple[Matcher, ...]


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str


def _unquote(text: str) -> str:
    if text[0] == "`":
        return text[1:-1]
    return re.sub(r"\\(.)", r"\1", text[1:-1])


def tokens(expr: str) -> list[_Token]:
    out: list[_Token] = []
    pos = 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None:
            raise ValueError(f"cannot read {expr[pos:pos + 20]!r} in {expr!r}")
        kind = m.lastgroup
        assert kind is not None
        if kind not in ("space", "comment"):
            out.append(_Token(kind, m.group()))
        pos = m.end()
    return out


def _skip_group(toks: list[_Token], i: int) -> int:
    """Index after the parenthesised group that starts at toks[i] == '('."""
    depth = 0
    while i < len(toks):
        if toks[i].text == "(":
            depth += 1
        elif toks[i].text == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise ValueError("unbalanced parentheses")


def _matchers(toks: list[_Token], i: int) -> tuple[tuple[Matcher, ...], int]:
    """The matchers of the `{...}` starting at toks[i]; returns them and the index after."""
    assert toks[i].text == "{"
    found = []
    i += 1
    while toks[i].text != "}":
        if toks[i].text == ",":
            i += 1
            continue
        label, op, value = toks[i], toks[i + 1], toks[i + 2]
        if label.kind != "name" or op.text not in ("=", "!=", "=~", "!~") or \
                value.kind != "string":
            raise ValueError(f"bad matcher near {label.text!r}")
        found.append(Matcher(label.text, op.text, _unquote(value.text)))
        i += 3
    return tuple(found), i + 1


def selectors(expr: str) -> list[Selector]:
    """Every series selector of expr, in order."""
    toks = tokens(expr)
    found: list[Selector] = []
    i = 0
    while i < len(toks):
        tok = toks[i]
        after = toks[i + 1].text if i + 1 < len(toks) else None
        if tok.kind == "name":
            word = tok.text.lower()
            if word in _LABEL_LISTS:
                i = _skip_group(toks, i + 1) if after == "(" else i + 1
                continue
            if word in _KEYWORDS or word in _AGGREGATIONS or after == "(":
                i += 1
                continue
            if after == "{":
                matchers, i = _matchers(toks, i + 1)
            else:
                matchers, i = (), i + 1
            found.append(Selector(tok.text, matchers))
            continue
        if tok.text == "{":
            matchers, i = _matchers(toks, i)
            found.append(Selector(None, matchers))
            continue
        i += 1
    return found


def metric_names(expr: str) -> set[str]:
    names = set()
    for s in selectors(expr):
        if s.metric is None:
            raise ValueError(f"a selector without a metric name in {expr!r}")
        names.add(s.metric)
    return names


def literal_alternatives(regex: str) -> list[str] | None:
    """The words of a regex that is only `a|b|c` (None if it is anything else)."""
    words = regex.split("|")
    if all(re.fullmatch(r"[A-Za-z0-9_-]+", w) for w in words):
        return words
    return None
