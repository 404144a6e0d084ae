"""A small, safe expression language for routing conditions (`when:` in a router config).

Why not Python `eval` (even "restricted"): a condition comes from a config file that a pull
request can change, and Python expressions reach `__class__`, `__subclasses__`, calls and imports
from any literal. This language has no way to name anything but a fixed set of case fields:

    expr       := or
    or         := and ("or" and)*
    and        := not ("and" not)*
    not        := "not" not | comparison
    comparison := primary [("<" | "<=" | ">" | ">=" | "==" | "!=" | "in" | "not" "in") primary]
    primary    := NUMBER | STRING | true | false | NAME | "metadata" "." NAME
                | "(" expr ")" | "[" [literal ("," literal)*] "]"

Names: prompt_chars, prompt_words, prompt_tokens (numbers), tags (a list of strings), set, id
(strings), metadata.<key> (any value, checked when evaluated). Calls, indexing, attribute access
on anything but `metadata.`, dunder names and chained comparisons are rejected. The parser builds
a tiny AST, `check` types it once at load time, and `evaluate` walks it per case; every error is
an `ExprError` with the column it is about.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

MAX_CHARS = 2000
MAX_DEPTH = 40

NUMBER, STRING, BOOL, LIST, ANY = "number", "string", "boolean", "list", "any"
# The case fields a condition may name, with their types.
FIELDS: dict[str, str] = {
    "prompt_chars": NUMBER,
    "prompt_words": NUMBER,
    "prompt_tokens": NUMBER,
    "tags": LIST,
    "set": STRING,
    "id": STRING,
}
KEYWORDS = {"and", "or", "not", "in", "true", "false", "True", "False"}
COMPARE = ("<", "<=", ">", ">=", "==", "!=", "in", "not in")


class ExprError(Exception):
    """A condition that does not parse or type-check; `column` is 1-based (0: whole text)."""

    def __init__(self, message: str, column: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.column = column

    def __str__(self) -> str:
        return f"{self.message} (column {self.column})" if self.column else self.message


# -- tokens ----------------------------------------------------------------------------------

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<num>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<str>'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")
  | (?P<op><=|>=|==|!=|<|>)
  | (?P<punct>[()\[\],.])
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
""", re.VERBOSE)


@dataclass(frozen=True)
class Token:
    kind: str   # num | str | op | punct | name | end
    text: str
    col: int


def _unquote(text: str, col: int) -> str:
    body, out, i = text[1:-1], [], 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            nxt = body[i + 1]
            if nxt not in "\\'\"":
                raise ExprError(f"unknown escape \\{nxt} in a string (only \\\\, \\' and \\\")",
                                col + i + 1)
            out.append(nxt)
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def tokenize(text: str) -> list[Token]:
    if len(text) > MAX_CHARS:
        raise ExprError(f"condition is longer than {MAX_CHARS} characters")
    tokens, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            ch = text[pos]
            hint = " (use == to compare)" if ch == "=" else ""
            raise ExprError(f"unexpected character {ch!r}{hint}", pos + 1)
        kind = m.lastgroup or ""
        if kind != "ws":
            tokens.append(Token(kind, m.group(), pos + 1))
        pos = m.end()
    tokens.append(Token("end", "", len(text) + 1))
    return tokens


# -- AST -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Lit:
    value: Any
    col: int


@dataclass(frozen=True)
class Name:
    name: str        # a FIELDS key, or "metadata.<key>"
    col: int


@dataclass(frozen=True)
class ListLit:
    items: tuple[Lit, ...]
    col: int


@dataclass(frozen=True)
class Not:
    operand: Node
    col: int


@dataclass(frozen=True)
class BoolOp:
    op: str          # and | or
    operands: tuple[Node, ...]
    col: int


@dataclass(frozen=True)
class Compare:
    op: str
    left: Node
    right: Node
    col: int


Node = Lit | Name | ListLit | Not | BoolOp | Compare


# -- parser ----------------------------------------------------------------------------------

class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.i = 0
        self.depth = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def is_kw(self, word: str, offset: int = 0) -> bool:
        tok = self.tokens[min(self.i + offset, len(self.tokens) - 1)]
        return tok.kind == "name" and tok.text == word

    def expect(self, text: str) -> Token:
        if self.tok.text != text or self.tok.kind in ("str", "end"):
            raise ExprError(f"expected {text!r}, found {self.describe(self.tok)}", self.tok.col)
        return self.take()

    @staticmethod
    def describe(tok: Token) -> str:
        return "the end of the condition" if tok.kind == "end" else repr(tok.text)

    def nest(self, col: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExprError(f"condition nests deeper than {MAX_DEPTH} levels", col)

    def parse(self) -> Node:
        node = self.or_()
        if self.tok.kind != "end":
            raise ExprError(f"unexpected {self.describe(self.tok)} after a complete condition"
                            + self.after_hint(), self.tok.col)
        return node

    def after_hint(self) -> str:
        text = self.tok.text
        if text == "(":
            return ": calls are not allowed"
        if text == "[":
            return ": indexing is not allowed"
        if text == ".":
            return ": attribute access is only allowed as metadata.<key>"
        if self.tok.kind == "op" or text in ("in", "not"):
            return ": comparisons cannot be chained (use 'and')"
        return ""

    def or_(self) -> Node:
        return self.bool_op("or", self.and_)

    def and_(self) -> Node:
        return self.bool_op("and", self.not_)

    def bool_op(self, word: str, inner: Any) -> Node:
        first = inner()
        operands = [first]
        while self.is_kw(word):
            self.take()
            operands.append(inner())
        if len(operands) == 1:
            return first
        return BoolOp(word, tuple(operands), _col(first))

    def not_(self) -> Node:
        if self.is_kw("not") and not self.is_kw("in", 1):
            tok = self.take()
            self.nest(tok.col)
            node = Not(self.not_(), tok.col)
            self.depth -= 1
            return node
        return self.comparison()

    def comparison(self) -> Node:
        left = self.primary()
        tok = self.tok
        if tok.kind == "op":
            op = self.take().text
        elif self.is_kw("in"):
            self.take()
            op = "in"
        elif self.is_kw("not") and self.is_kw("in", 1):
            self.take()
            self.take()
            op = "not in"
        else:
            return left
        right = self.primary()
        return Compare(op, left, right, tok.col)

    def primary(self) -> Node:
        tok = self.tok
        if tok.kind == "num":
            self.take()
            value = float(tok.text)
            if not math.isfinite(value):
                raise ExprError(f"number {tok.text} is out of range", tok.col)
            return self.no_postfix(Lit(value, tok.col))
        if tok.kind == "str":
            self.take()
            return self.no_postfix(Lit(_unquote(tok.text, tok.col), tok.col))
        if tok.text == "(" and tok.kind == "punct":
            self.take()
            self.nest(tok.col)
            if self.tok.text == ")" and self.tok.kind == "punct":
                raise ExprError("empty parentheses: expected a condition", self.tok.col)
            node = self.or_()
            self.expect(")")
            self.depth -= 1
            return self.no_postfix(node)
        if tok.text == "[" and tok.kind == "punct":
            return self.no_postfix(self.list_literal())
        if tok.kind == "name":
            return self.no_postfix(self.name())
        raise ExprError(f"expected a value, found {self.describe(tok)}", tok.col)

    def no_postfix(self, node: Node) -> Node:
        tok = self.tok
        if tok.kind == "punct" and tok.text in "([.":
            what = {"(": "calls are not allowed", "[": "indexing is not allowed",
                    ".": "attribute access is only allowed as metadata.<key>"}[tok.text]
            raise ExprError(what, tok.col)
        return node

    def name(self) -> Node:
        tok = self.take()
        text = tok.text
        if text.startswith("__") or text.endswith("__"):
            raise ExprError(f"name {text!r} is not allowed (dunder names are rejected)",
                            tok.col)
        if text in ("true", "True"):
            return Lit(True, tok.col)
        if text in ("false", "False"):
            return Lit(False, tok.col)
        if text in KEYWORDS:
            raise ExprError(f"expected a value, found {text!r}", tok.col)
        if text == "metadata":
            if not (self.tok.kind == "punct" and self.tok.text == "."):
                raise ExprError("use metadata.<key> to read one metadata value", tok.col)
            self.take()
            key = self.tok
            if key.kind != "name":
                raise ExprError(f"expected a metadata key after 'metadata.', found "
                                f"{self.describe(key)}", key.col)
            self.take()
            if key.text.startswith("_"):
                raise ExprError(f"metadata key {key.text!r} is not allowed (no leading "
                                "underscore)", key.col)
            return Name(f"metadata.{key.text}", tok.col)
        if text not in FIELDS:
            raise ExprError(f"unknown name {text!r} (known: {', '.join(FIELDS)}, "
                            "metadata.<key>; strings need quotes)", tok.col)
        return Name(text, tok.col)

    def list_literal(self) -> ListLit:
        start = self.take()
        items: list[Lit] = []
        while not (self.tok.kind == "punct" and self.tok.text == "]"):
            if self.tok.kind == "punct" and self.tok.text in "([":
                raise ExprError("a list holds literal values only", self.tok.col)
            item = self.primary()
            if not isinstance(item, Lit):
                raise ExprError("a list holds literal values only", _col(item))
            items.append(item)
            if self.tok.kind == "punct" and self.tok.text == ",":
                self.take()
            elif not (self.tok.kind == "punct" and self.tok.text == "]"):
                raise ExprError(f"expected ',' or ']', found {self.describe(self.tok)}",
                                self.tok.col)
        self.take()
        return ListLit(tuple(items), start.col)


def _col(node: Node) -> int:
    return node.col


def parse(text: str) -> Node:
    """Parse a condition into an AST; raises ExprError only."""
    if not isinstance(text, str):
        raise ExprError("a condition must be a string")
    if not text.strip():
        raise ExprError("empty condition")
    return _Parser(tokenize(text)).parse()


# -- types -----------------------------------------------------------------------------------

def _lit_type(value: Any) -> str:
    if isinstance(value, bool):
        return BOOL
    return NUMBER if isinstance(value, float) else STRING


def type_of(node: Node) -> str:
    """The node's type, or ExprError when its parts do not fit together."""
    if isinstance(node, Lit):
        return _lit_type(node.value)
    if isinstance(node, Name):
        return ANY if node.name.startswith("metadata.") else FIELDS[node.name]
    if isinstance(node, ListLit):
        kinds = {_lit_type(i.value) for i in node.items}
        if len(kinds) > 1:
            raise ExprError("a list mixes types: " + ", ".join(sorted(kinds)), node.col)
        return LIST
    if isinstance(node, Not):
        _want_bool(node.operand, "not")
        return BOOL
    if isinstance(node, BoolOp):
        for operand in node.operands:
            _want_bool(operand, node.op)
        return BOOL
    left, right = type_of(node.left), type_of(node.right)
    op = node.op
    if op in ("in", "not in"):
        if right == STRING:
            if left not in (STRING, ANY):
                raise ExprError(f"'{op}' on a string needs a string on the left, not a {left}",
                                node.col)
        elif right == LIST:
            element = _element_type(node.right)
            if left == LIST:
                raise ExprError(f"'{op}' needs a single value on the left, not a list",
                                node.col)
            if element not in (ANY, None) and left not in (element, ANY):
                raise ExprError(f"'{op}' compares a {left} with a list of {element}s", node.col)
        elif right != ANY:
            raise ExprError(f"'{op}' needs a list or a string on the right, not a {right}",
                            node.col)
        return BOOL
    if ANY in (left, right):
        if op not in ("==", "!=") and BOOL in (left, right):
            raise ExprError(f"'{op}' cannot order booleans", node.col)
        return BOOL
    if left != right:
        raise ExprError(f"'{op}' compares a {left} with a {right}", node.col)
    if op not in ("==", "!=") and left not in (NUMBER, STRING):
        raise ExprError(f"'{op}' needs numbers or strings, not {left}s", node.col)
    return BOOL


def _element_type(node: Node) -> str | None:
    if isinstance(node, Name) and node.name == "tags":
        return STRING
    if isinstance(node, ListLit):
        return _lit_type(node.items[0].value) if node.items else None
    return ANY


def _want_bool(node: Node, op: str) -> None:
    kind = type_of(node)
    if kind not in (BOOL, ANY):
        raise ExprError(f"'{op}' needs a condition, not a {kind} (compare it with something)",
                        node.col)


def check(node: Node) -> None:
    """The whole condition must be true or false."""
    kind = type_of(node)
    if kind not in (BOOL, ANY):
        raise ExprError(f"the condition is a {kind}, not true/false (compare it with "
                        "something)", node.col)


def compile_condition(text: str) -> Node:
    """Parse and type-check; raises ExprError only."""
    try:
        node = parse(text)
        check(node)
    except RecursionError:  # belt and braces: MAX_DEPTH keeps the parser far from the limit
        raise ExprError("condition nests too deeply") from None
    return node


# -- evaluation ------------------------------------------------------------------------------

def _value(node: Node, env: dict[str, Any]) -> Any:
    if isinstance(node, Lit):
        return node.value
    if isinstance(node, Name):
        if node.name.startswith("metadata."):
            metadata = env.get("metadata") or {}
            return metadata.get(node.name.split(".", 1)[1])
        return env.get(node.name)
    if isinstance(node, ListLit):
        return [i.value for i in node.items]
    return evaluate(node, env)


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _compare(op: str, a: Any, b: Any) -> bool:
    if op in ("in", "not in"):
        if isinstance(b, str):
            found = isinstance(a, str) and a in b
        elif isinstance(b, list):
            found = any(_compare("==", a, item) for item in b)
        else:
            found = False
        return found if op == "in" else not found
    same = (_num(a) and _num(b)) or (type(a) is type(b) and isinstance(a, str | bool))
    if op == "==":
        return same and a == b
    if op == "!=":
        return not (same and a == b)
    if not same or isinstance(a, bool):  # a metadata value of another type: no match
        return False
    return bool({"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op])


def evaluate(node: Node, env: dict[str, Any]) -> bool:
    """Evaluate a checked condition against a case's fields. Never raises for data: a metadata
    value of an unexpected type simply does not match."""
    if isinstance(node, Not):
        return not evaluate(node.operand, env)
    if isinstance(node, BoolOp):
        if node.op == "and":
            return all(evaluate(o, env) for o in node.operands)
        return any(evaluate(o, env) for o in node.operands)
    if isinstance(node, Compare):
        return _compare(node.op, _value(node.left, env), _value(node.right, env))
    value = _value(node, env)
    return value is True
