"""Built-in tools: a calculator, dates, search over a RAG collection, and reading files in one folder.

None of them runs code the model wrote or reaches a host the user did not name: the calculator is
``simpleeval`` cut down to number literals, arithmetic operators, a short list of math functions and
``pi``/``e`` (no strings, attributes, subscripts or comparisons; products and powers bounded, since
a huge integer operation cannot be interrupted by the tool's timeout); the date tools compute with
``datetime``; retrieval reads the collection and store the user chose; the file reader resolves
every path (symlinks too) and refuses anything outside its folder. None has side effects.

``builtin_tools(["calculator", "dates", "rag:novels", "files:notes/"])`` is how the CLI names them.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

from ..errors import ConfigError
from .tool import Tool

MAX_BITS = 4096  # an integer result larger than this (about 1233 digits) is refused, not computed


def _bounded_round(x, ndigits: int = 0):
    if not isinstance(ndigits, int) or abs(ndigits) > 100:
        raise ValueError("round() takes at most 100 digits")
    return round(x, ndigits)


def _too_big(a, b) -> bool:
    return isinstance(a, int) and isinstance(b, int) and a.bit_length() + b.bit_length() > MAX_BITS


def _mult(a, b):
    if _too_big(a, b):
        raise ValueError("the result is too large")
    return a * b


def _pow(a, b):
    if isinstance(b, (int, float)) and abs(a) > 1 and b > 0 and b * math.log2(abs(a)) > MAX_BITS:
        raise ValueError("the result is too large")
    return a ** b


_FUNCTIONS = {"sqrt": math.sqrt, "abs": abs, "round": _bounded_round, "min": min, "max": max,
              "log": math.log, "log10": math.log10, "exp": math.exp, "sin": math.sin, "cos": math.cos,
              "tan": math.tan, "floor": math.floor, "ceil": math.ceil}
_NAMES = {"pi": math.pi, "e": math.e}
_SPELLINGS = str.maketrans({"×": "*", "÷": "/", "−": "-", "^": "**"})  # "^" is a power, as people write it


def _evaluator():
    """simpleeval with arithmetic only: number literals, + - * / // % **, unary signs, the functions
    and constants above; no strings, attributes, subscripts, comparisons or f-strings, and products
    and powers bounded (Python cannot interrupt a huge integer operation, so a tool timeout would not
    stop one)."""
    import ast
    import operator

    import simpleeval

    ops = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: _mult, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: _pow,
           ast.USub: operator.neg, ast.UAdd: operator.pos}
    ev = simpleeval.SimpleEval(operators=ops, functions=_FUNCTIONS, names=_NAMES)
    allowed = {ast.Expr, ast.Name, ast.UnaryOp, ast.BinOp, ast.Call, ast.Constant}
    ev.nodes = {k: v for k, v in ev.nodes.items() if k in allowed}
    constant = ev.nodes[ast.Constant]

    def number(node):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise ValueError(f"only numbers, not {node.value!r}")
        return constant(node)

    ev.nodes[ast.Constant] = number
    return ev


def calculate(expression: str) -> int | float:
    """Evaluate an arithmetic expression and return its value.

    Args:
        expression: arithmetic with + - * / // % ** and parentheses, e.g. (17 * 23) / 4
    """
    import re

    import simpleeval

    text = expression.translate(_SPELLINGS).strip().rstrip("=").strip()
    if "(" not in text:  # a thousands separator ("1,000"), never a function's argument list
        text = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", text)
    if not text:
        raise ValueError("the expression is empty")
    try:
        value = _evaluator().eval(text)
    except ZeroDivisionError:
        raise ValueError("division by zero") from None
    except (simpleeval.InvalidExpression, SyntaxError, TypeError, OverflowError, ValueError, KeyError) as exc:
        raise ValueError(f"not an arithmetic expression I can evaluate: {expression!r} ({exc})") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{expression!r} is not arithmetic")
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return round(value, 10) if isinstance(value, float) else value


def current_datetime(timezone: str = "UTC") -> dict:
    """The current date, weekday and time.

    Args:
        timezone: an IANA time zone such as Europe/Amsterdam (default UTC)
    """
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {timezone!r}") from None
    now = dt.datetime.now(zone)
    return {"date": now.date().isoformat(), "weekday": now.strftime("%A"), "time": now.strftime("%H:%M"),
            "timezone": timezone}


def days_between(start: dt.date, end: dt.date) -> int:
    """The number of days from one date to another (negative if end is earlier).

    Args:
        start: the first date, YYYY-MM-DD
        end: the second date, YYYY-MM-DD
    """
    return (end - start).days


def add_days(date: dt.date, days: int) -> dict:
    """The date a number of days after (or, if negative, before) a date, with its weekday.

    Args:
        date: the starting date, YYYY-MM-DD
        days: how many days to add; negative to go back
    """
    try:
        out = date + dt.timedelta(days=days)
    except OverflowError:
        raise ValueError("the date is out of range") from None
    return {"date": out.isoformat(), "weekday": out.strftime("%A")}


def calculator() -> Tool:
    return Tool.from_function(calculate, name="calculator", examples=[
        {"request": "What is 12 times 7?", "arguments": {"expression": "12 * 7"}, "result": "84",
         "answer": "12 times 7 is 84."},
        {"request": "What is 250 + 1375?", "arguments": {"expression": "250 + 1375"}, "result": "1625",
         "answer": "250 + 1375 is 1625."},
        {"request": "How much is 20% of 150?", "arguments": {"expression": "20 / 100 * 150"}, "result": "30",
         "answer": "20% of 150 is 30."},
        {"request": "What is 84 divided by 4?", "arguments": {"expression": "84 / 4"}, "result": "21",
         "answer": "84 divided by 4 is 21."}])


def date_tools() -> list[Tool]:
    return [
        Tool.from_function(current_datetime, examples=[
            {"request": "What is the date today?", "arguments": {},
             "answer": "Today is Wednesday, 2025-05-14.",
             "result": {"date": "2025-05-14", "weekday": "Wednesday", "time": "09:30", "timezone": "UTC"}},
            {"request": "What day of the week is it?", "arguments": {}, "answer": "It is Friday.",
             "result": {"date": "2025-08-01", "weekday": "Friday", "time": "17:05", "timezone": "UTC"}}]),
        Tool.from_function(days_between, examples=[
            {"request": "How many days are there from 2025-03-01 to 2025-04-15?",
             "arguments": {"start": "2025-03-01", "end": "2025-04-15"}, "result": 45,
             "answer": "There are 45 days from 2025-03-01 to 2025-04-15."}]),
        Tool.from_function(add_days, examples=[
            {"request": "What date is 10 days after 2025-06-25?",
             "arguments": {"date": "2025-06-25", "days": 10},
             "result": {"date": "2025-07-05", "weekday": "Saturday"}, "answer": "10 days after 2025-06-25 is "
             "Saturday, 2025-07-05."}]),
    ]


def retrieval_tool(collection: str, *, k: int = 3, store=None, retriever: str = "hybrid") -> Tool:
    """``search_documents(query)``: the ``k`` best passages of a RAG collection, with their sources."""
    from ..rag.retrieval import check_retriever

    check_retriever(retriever)

    def search_documents(query: str) -> list[dict]:
        """Search the document collection for passages about a query.

        Args:
            query: what to look for, in a few words
        """
        from ..rag.retrieval import retrieve

        hits = retrieve(query, collection, retriever=retriever, k=k, store=store)
        return [{"source": h.where(), "text": h.text} for h in hits]

    return Tool.from_function(search_documents, timeout=60.0, examples=[
        {"request": "How many days of holiday do staff get?", "arguments": {"query": "staff holiday days"},
         "result": [{"source": "handbook.md, chars 0-38", "text": "Staff get 25 days of holiday a year."}],
         "answer": "Staff get 25 days of holiday a year (handbook.md)."},
        {"request": "What time does the museum close on Sundays?",
         "arguments": {"query": "museum Sunday hours"},
         "result": [{"source": "visit.md, chars 120-190", "text": "On Sundays the museum is open from 11:00 "
                     "to 16:00."}],
         "answer": "On Sundays the museum closes at 16:00 (visit.md)."}])


def folder_search(folder: str | Path, *, k: int = 3, store=None) -> Tool:
    """``search_documents(query)`` over the text files of a folder: the folder is ingested into a RAG
    collection of its own (named after its path; an unchanged file is not read again) and searched
    with BM25, so a search needs no embedding model once the folder is in."""
    import hashlib

    from ..rag import ingest

    root = Path(folder).expanduser().resolve()
    if not root.is_dir():
        raise ConfigError(f"search:{folder}: no such folder")
    name = "folder-" + hashlib.sha256(str(root).encode()).hexdigest()[:12]
    ingest([root], name, store=store, prune=True)
    return retrieval_tool(name, k=k, store=store, retriever="bm25")


def file_reader(folder: str | Path, *, max_bytes: int = 20_000) -> Tool:
    """``read_file(path)``: a text file under ``folder`` (only there: ``..`` and symlinks out are refused)."""
    root = Path(folder).expanduser().resolve()
    if not root.is_dir():
        raise ConfigError(f"files:{folder}: no such folder")

    def read_file(path: str) -> str:
        """Read a text file from the allowed folder.

        Args:
            path: the file's path relative to the folder
        """
        target = (root / path).resolve()
        if not target.is_relative_to(root):
            raise PermissionError(f"{path!r} is outside the allowed folder")
        if not target.is_file():
            names = sorted(p.name for p in root.iterdir() if p.is_file())[:20]
            raise FileNotFoundError(f"no file {path!r}; files here: {', '.join(names) or 'none'}")
        import codecs

        with target.open("rb") as fh:  # only the first max_bytes are read, whatever the file's size
            data = fh.read(max_bytes + 1)
        try:  # incremental: a character cut at the limit is left out, not an error
            text = codecs.getincrementaldecoder("utf-8")().decode(data[:max_bytes], final=False)
        except UnicodeDecodeError:
            raise ValueError(f"{path!r} is not UTF-8 text") from None
        return text + (f" [cut at {max_bytes} bytes]" if len(data) > max_bytes else "")

    return Tool.from_function(read_file)


BUILTIN = {"calculator": "arithmetic without eval", "dates": "current date and time, days between dates, "
           "adding days", "rag:COLLECTION": "search a RAG collection", "search:FOLDER": "search the text "
           "files of a folder", "files:FOLDER": "read text files in one folder"}


def builtin_tools(names: list[str], *, store=None, base: Path | None = None) -> list[Tool]:
    """Tools by the names the CLI takes: ``calculator``, ``dates``, ``rag:COLLECTION``,
    ``search:FOLDER``, ``files:FOLDER``. With ``base`` (a task file's folder) a folder is taken
    relative to it and must lie inside it: a shared task file cannot point a tool at ``~/.ssh``."""
    tools: list[Tool] = []
    for name in names:
        kind, _, arg = name.partition(":")
        if kind in ("files", "search") and arg and base is not None:
            folder = (base / arg).resolve()
            if not folder.is_relative_to(base.resolve()):
                raise ConfigError(f"tool {name!r}: a task file's folders must lie beside it, in {base}")
            arg = str(folder)
        if kind == "calculator" and not arg:
            tools.append(calculator())
        elif kind == "dates" and not arg:
            tools += date_tools()
        elif kind == "rag" and arg:
            tools.append(retrieval_tool(arg, store=store))
        elif kind == "files" and arg:
            tools.append(file_reader(arg))
        elif kind == "search" and arg:
            tools.append(folder_search(arg, store=store))
        else:
            raise ConfigError(f"unknown tool {name!r}; built-in tools: {', '.join(BUILTIN)}")
    return tools
