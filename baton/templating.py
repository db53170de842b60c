"""Templates in tools, prompts, webhooks and enrichment: the one Jinja environment of Baton.

`{{ params.x }}`, `{{ steps.<name>.output }}`, `{{ foreach.item }}`, `{{ secrets.<name> }}`
(resolved inside activities only). A template that is a single `{{ expression }}` keeps the
expression's type (a list stays a list), so steps can hand structured data to each other;
anything else renders to text.

Templates come from tenants and their inputs from anyone who can reach a webhook, so the
environment is sandboxed (Jinja's immutable sandbox), deterministic (no `random`, `lipsum`,
`cycler` or `joiner`) and bounded. The bounds are counts, not time, because workflows render
pure steps themselves: a replay must reach the same outcome, and a render must end long before
Temporal's deadlock detector (2 s) fires. Every loop iteration, call, filter, test and operator
costs units of work in proportion to its CPU time, and a filter or method also pays for the size
of what it reads; the work of one render (or of all the renders of a `Budget`, such as a whole
tool run) is capped.
Output is counted as it is produced, also inside `{% set %}` blocks and macros, and every value
a template creates is measured (its size as text, nested values included) before it can grow
past a limit: `*` on strings and lists, `+`, `~`, widths (`center`, `ljust`, `indent`,
`format`), `join` separators, `replace`, `tojson`'s indent, big integers (`pprint` is gone:
it indents by depth). Methods of plain values are an allow-list. A render over a bound raises
`TemplateLimitError` saying which bound and what to change. Outside workflows a `Budget` may
also carry a wall-clock deadline, as a backstop only."""

from __future__ import annotations

import inspect
import json
import re
import time
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache, lru_cache
from string import Formatter
from typing import Any

from jinja2 import StrictUndefined, Template, Undefined, nodes, pass_context
from jinja2 import TemplateError as JinjaError
from jinja2.environment import TemplateExpression
from jinja2.exceptions import SecurityError, TemplateSyntaxError, UndefinedError
from jinja2.lexer import newline_re
from jinja2.runtime import Context, LoopContext, Macro
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedFormatter
from jinja2.utils import Namespace, _PassArg
from jinja2.visitor import NodeTransformer


@dataclass(frozen=True)
class Limits:
    """What one render may do. A unit of work is about a microsecond of CPU on a quiet machine
    (a few on a loaded one), so a render that spends its whole budget ends within a fraction of
    a second."""

    work: int = 100_000
    """Loop iterations, calls, filters, tests and operators, plus the size of what filters and
    methods read (one unit per item of a list, per 100 characters of text)."""
    output_chars: int = 1_000_000
    """Characters of text a render produces, counted where they are produced."""
    value_chars: int = 2_000_000
    """The size of any one value a template creates, measured as text."""
    width: int = 10_000
    """Widths and counts given as arguments: `center`, `ljust`, `indent`, format widths,
    `batch`, `slice`."""
    int_bits: int = 4_096
    """The largest integer an operator may produce."""


LIMITS = Limits()

# A tool run renders its pure steps inside the workflow, all on one budget: a foreach of many
# items or many template steps must still end well within the deadlock detector's 2 s.
TOOL_RUN_WORK = 200_000
# A webhook, a welcome message: rendered in a worker thread of the API, which also stops them
# after this long whatever their count (only outside workflows: time is not deterministic).
API_RENDER_SECONDS = 2.0


_PAUSE_EVERY = 1_000
_PAUSE_SECONDS = 0.0002


class TemplateError(ValueError):
    """A template that does not parse, or fails when rendered; the message says where."""


class TemplateLimitError(TemplateError):
    """A render that went over one of its bounds; the message names the bound."""


class Budget:
    """The work a render, or a series of renders (a tool run), may still do. A budget with a
    deadline is one of the API's render threads (workflows never have one): it also pauses
    now and then to let the event loop run."""

    def __init__(
        self,
        work: int = LIMITS.work,
        *,
        seconds: float | None = None,
        scope: str = "the template",
    ) -> None:
        self.limit = work
        self.left = work
        self.scope = scope
        self.deadline = None if seconds is None else time.monotonic() + seconds
        self.seconds = seconds
        self._pause_at = work - _PAUSE_EVERY

    def spend(self, units: int) -> None:
        self.left -= units
        if self.deadline is not None and self.left < self._pause_at:
            # A render thread of the API: a short sleep hands the GIL to the event loop,
            # which otherwise waits up to a switch interval (5 ms) for it at every step.
            self._pause_at = self.left - _PAUSE_EVERY
            time.sleep(_PAUSE_SECONDS)
        if self.left < 0:
            raise TemplateLimitError(
                f"too much work in {self.scope}: more than {self.limit} operations (loop "
                "iterations, filters, calls, and the items and text they read); loop over "
                "less, or do the work in a code or transform step"
            )
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise TemplateLimitError(
                f"{self.scope} took longer than {self.seconds} s to render; make it simpler"
            )


class _Render:
    """The state of one render: its budget, the output it produced, sizes it measured."""

    def __init__(self, budget: Budget, limits: Limits) -> None:
        self.budget = budget
        self.limits = limits
        self.output = 0
        # Values are immutable in the sandbox, so a size measured once stays true for the
        # render; the value is kept so its id cannot be reused by another object.
        self.sizes: dict[int, tuple[Any, int]] = {}

    def charge(self, units: int) -> None:
        self.budget.spend(units)

    def read(self, value: Any, units: int = 1) -> None:
        """Pays for an operation that reads `value` once."""
        self.budget.spend(units + _shallow_cost(value))

    def produced(self, text: str) -> None:
        self.output += len(text)
        if self.output > self.limits.output_chars:
            raise TemplateLimitError(
                f"the template produces more than {self.limits.output_chars} characters; "
                "render less (fewer items, shorter text)"
            )

    def too_big(self, size: int, what: str = "a value") -> TemplateLimitError:
        return TemplateLimitError(
            f"{what} of about {size} characters is larger than the limit of "
            f"{self.limits.value_chars}; work on smaller values"
        )

    def fits(self, size: int, what: str = "a value") -> None:
        if size > self.limits.value_chars:
            raise self.too_big(size, what)

    def within_width(self, width: Any, what: str) -> None:
        if isinstance(width, int) and width > self.limits.width:
            raise TemplateLimitError(
                f"{what} {width} is larger than the limit of {self.limits.width}"
            )

    def checked(self, value: Any) -> Any:
        """A value a template created: measured, and iterators counted as they are read."""
        if hasattr(type(value), "__next__"):
            return self._counted_checked(value)
        self.fits(self.size(value))
        return value

    def counted(self, iterable: Iterable[Any]) -> Iterator[Any]:
        for item in iterable:
            self.budget.spend(1)
            yield item

    def _counted_checked(self, iterator: Iterator[Any]) -> Iterator[Any]:
        """What a filter yields is new too (`batch(10000, big)` yields lists of `big`)."""
        for item in iterator:
            self.budget.spend(1)
            self.fits(self.size(item))
            yield item

    def size(self, value: Any) -> int:
        """About how many characters `value` takes as text, nested values included; values
        shared many times (`[x] * 1000`) count each time, but are measured only once."""
        flat = _flat_size(value)
        if flat is not None:
            return flat
        sizes = self.sizes
        known = sizes.get(id(value))
        if known is not None:
            return known[1]
        open_: set[int] = set()
        stack: list[tuple[Any, bool]] = [(value, False)]
        while stack:
            node, done = stack.pop()
            key = id(node)
            if key in sizes:
                continue
            children = _children(node)
            if not done:
                open_.add(key)
                stack.append((node, True))
                self.budget.spend(1 + len(children) // 10)
                for child in children:
                    ckey = id(child)
                    if _flat_size(child) is None and ckey not in sizes and ckey not in open_:
                        stack.append((child, False))
                continue
            total = 2
            for child in children:
                flat = _flat_size(child)
                if flat is None:
                    # A value that contains itself (a namespace holding itself) counts once.
                    flat = sizes[id(child)][1] if id(child) in sizes else 16
                total += flat + 2
            sizes[key] = (node, total)
            open_.discard(key)
        return sizes[id(value)][1]


# Units of work, in proportion to what each costs in CPU (a sandboxed call checks its callee
# and inspects it, a macro call builds a frame); an item read or a loop iteration is one.
_CALL_COST = 10
_MACRO_COST = 60
_FILTER_COST = 2
_OPERATOR_COST = 2
# Filters that take the same time whatever the size of their input, and the extra units per
# item of filters that sort or call back into the template for each item (groupby also
# builds a tuple and a list per group).
_CONSTANT_FILTERS = frozenset({"length", "count", "first", "last", "default", "d", "attr"})
_PER_ITEM_FILTERS = {"sort": 4, "dictsort": 4, "unique": 4, "min": 2, "max": 2, "sum": 2}
_PER_ITEM_FILTERS |= {"groupby": 10}

_active: ContextVar[_Render | None] = ContextVar("baton_template_render", default=None)


def _state() -> _Render:
    state = _active.get()
    if state is None:  # only a render through this module is allowed to run template code
        raise TemplateError("templates are rendered through baton.templating only")
    return state


def _flat_size(value: Any) -> int | None:
    if isinstance(value, (str, bytes)):
        return len(value)
    if isinstance(value, bool) or value is None:
        return 5
    if isinstance(value, int):
        return value.bit_length() // 3 + 2
    if isinstance(value, float):
        return 24
    if isinstance(value, range):
        return len(value) * 8
    if isinstance(value, (list, tuple, set, frozenset, dict, Namespace)):
        return None
    if isinstance(value, (type({}.keys()), type({}.values()), type({}.items()))):
        return None
    return 16


def _children(value: Any) -> list[Any]:
    if isinstance(value, Namespace):
        value = object.__getattribute__(value, "_Namespace__attrs")
    if isinstance(value, dict):
        return [*value.keys(), *value.values()]
    if isinstance(value, (list, tuple)):
        return value  # type: ignore[return-value]
    return list(value)


def _shallow_cost(value: Any) -> int:
    if isinstance(value, (str, bytes)):
        return len(value) // 100
    if isinstance(value, (list, tuple, dict, set, frozenset, range)):
        return len(value)
    return 0


# Methods of plain values a template may call; the rest (`int.to_bytes`, `str.expandtabs`,
# `str.translate`...) are refused like any unsafe attribute.
_SAFE_METHODS: dict[type, frozenset[str]] = {
    str: frozenset(
        {
            *("capitalize", "casefold", "center", "count", "endswith", "find", "format"),
            *("format_map", "index", "isalnum", "isalpha", "isascii", "isdecimal", "isdigit"),
            *("isidentifier", "islower", "isnumeric", "isprintable", "isspace", "istitle"),
            *("isupper", "join", "ljust", "lower", "lstrip", "partition", "removeprefix"),
            *("removesuffix", "replace", "rfind", "rindex", "rjust", "rpartition", "rsplit"),
            *("rstrip", "split", "splitlines", "startswith", "strip", "swapcase", "title"),
            *("upper", "zfill"),
        }
    ),
    dict: frozenset({"get", "items", "keys", "values"}),
    list: frozenset({"count", "index"}),
    tuple: frozenset({"count", "index"}),
    float: frozenset({"is_integer"}),
}
_PLAIN_TYPES = (str, bytes, int, float, list, tuple, dict, set, frozenset)
_WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill"})
_PERCENT_FIELD = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?[a-zA-Z%]")


def _method_of(obj: Any) -> tuple[Any, str] | None:
    if isinstance(obj, types.BuiltinMethodType):
        owner = getattr(obj, "__self__", None)
        if isinstance(owner, _PLAIN_TYPES):
            return owner, obj.__name__
    return None


def _check_replace(state: _Render, text: str, old: Any, new: Any, count: Any = -1) -> None:
    if not (isinstance(old, str) and isinstance(new, str)) or len(new) <= len(old):
        return
    hits = len(text) + 1 if old == "" else text.count(old)
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    state.fits(len(text) + hits * (len(new) - len(old)), "the result of replace")


def _check_join(state: _Render, separator: Any, items: list[Any]) -> None:
    size = state.size(items) + (len(separator) if isinstance(separator, str) else 0) * len(items)
    state.fits(size, "the result of join")


def _check_percent(state: _Render, text: Any, args: Any) -> None:
    """`"%-5000s" % x` and `"%s%s%s" % (big, big, big)`: widths and repeated fields."""
    if not isinstance(text, str):
        return
    fields = 0
    widths = 0
    for match in _PERCENT_FIELD.finditer(text):
        fields += 1
        for number in match.groups():
            if number == "*":
                raise TemplateLimitError("a `*` width in a % format is not allowed")
            if number is not None:
                state.within_width(int(number), "a format width")
                widths += int(number)
    state.fits(len(text) + widths + fields * state.size(args), "the result of a % format")


def _check_format_string(state: _Render, text: str, args: Any) -> None:
    fields = 0
    widths = 0
    for _, name, spec, _ in Formatter().parse(text):
        if name is None:
            continue
        fields += 1
        if spec and "{" in spec:
            raise TemplateLimitError("a nested field in a format spec is not allowed")
        for number in re.findall(r"\d+", spec or ""):
            state.within_width(int(number), "a format width")
            widths += int(number)
    state.fits(len(text) + widths + fields * state.size(args), "the result of format")


class _BoundedFormatter(SandboxedFormatter):
    def format_field(self, value: Any, format_spec: str) -> Any:
        for number in re.findall(r"\d+", format_spec):
            _state().within_width(int(number), "a format width")
        return super().format_field(value, format_spec)


# Filters whose arguments can multiply the size of their input, checked before they run.
def _pre_center(state: _Render, args: Mapping[str, Any]) -> None:
    state.within_width(args["width"], "the width of center")


def _pre_indent(state: _Render, args: Mapping[str, Any]) -> None:
    width, text = args["width"], args["s"]
    size = len(width) if isinstance(width, str) else width
    state.within_width(size, "the width of indent")
    if isinstance(size, int) and isinstance(text, str):
        state.fits(len(text) + (text.count("\n") + 1) * size, "the result of indent")


def _pre_wordwrap(state: _Render, args: Mapping[str, Any]) -> None:
    text, width, wrap = args["s"], args["width"], args["wrapstring"]
    if isinstance(text, str) and isinstance(width, int) and isinstance(wrap, str):
        state.fits(len(text) + (len(text) // max(width, 1) + 1) * len(wrap), "wordwrap")


def _pre_replace(state: _Render, args: Mapping[str, Any]) -> None:
    text = args["s"]
    if isinstance(text, str):
        count = args["count"]
        _check_replace(state, text, args["old"], args["new"], -1 if count is None else count)


def _pre_format(state: _Render, args: Mapping[str, Any]) -> None:
    _check_percent(state, args["value"], args["kwargs"] or args["args"])


def _pre_tojson(state: _Render, args: Mapping[str, Any]) -> None:
    indent = args["indent"]
    if isinstance(indent, int) and indent > 8:
        raise TemplateLimitError(f"the indent of tojson {indent} is larger than the limit of 8")


def _pre_batch(state: _Render, args: Mapping[str, Any]) -> None:
    state.within_width(args["linecount"], "the line count of batch")


def _pre_slice(state: _Render, args: Mapping[str, Any]) -> None:
    state.within_width(args["slices"], "the number of slices")


def _pre_sum(state: _Render, args: Mapping[str, Any]) -> None:
    if not isinstance(args["start"], (int, float)):
        raise TemplateLimitError("sum adds numbers; its start must be a number")


_PRECHECKS: dict[str, Callable[[_Render, Mapping[str, Any]], None]] = {
    "center": _pre_center,
    "indent": _pre_indent,
    "wordwrap": _pre_wordwrap,
    "replace": _pre_replace,
    "format": _pre_format,
    "tojson": _pre_tojson,
    "batch": _pre_batch,
    "slice": _pre_slice,
    "sum": _pre_sum,
}


def _bind(func: Callable[..., Any], passed: bool, value: Any, args: Any, kwargs: Any) -> Any:
    signature = _signature(func)
    try:
        bound = (
            signature.bind(None, value, *args, **kwargs)
            if passed
            else signature.bind(value, *args, **kwargs)
        )
    except TypeError:
        return None  # the filter itself reports the wrong arguments
    bound.apply_defaults()
    return bound.arguments


@cache
def _signature(func: Callable[..., Any]) -> inspect.Signature:
    return inspect.signature(func)


def _guard_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    pass_arg = _PassArg.from_obj(func)
    precheck = _PRECHECKS.get(name)

    @pass_context
    def guarded(context: Context, value: Any, *args: Any, **kwargs: Any) -> Any:
        state = _state()
        if name == "join" and isinstance(value, Iterator):
            # Read through the work count first, so that the separator is checked against
            # the items really there.
            value = list(state.counted(value))
        if name in _CONSTANT_FILTERS:
            state.charge(_FILTER_COST)
        else:
            state.read(value, _FILTER_COST)
            if name in _PER_ITEM_FILTERS:
                state.charge(_PER_ITEM_FILTERS[name] * _shallow_cost(value))
        if name == "join":
            _check_join(state, args[0] if args else kwargs.get("d", ""), list(value))
        if precheck is not None:
            arguments = _bind(func, pass_arg is not None, value, args, kwargs)
            if arguments is not None:
                precheck(state, arguments)
        if pass_arg is _PassArg.context:
            result = func(context, value, *args, **kwargs)
        elif pass_arg is _PassArg.eval_context:
            result = func(context.eval_ctx, value, *args, **kwargs)
        elif pass_arg is _PassArg.environment:
            result = func(context.environment, value, *args, **kwargs)
        else:
            result = func(value, *args, **kwargs)
        return state.checked(result)

    return guarded


def _guard_test(func: Any) -> Callable[..., Any]:
    pass_arg = _PassArg.from_obj(func)

    @pass_context
    def guarded(context: Context, value: Any, *args: Any, **kwargs: Any) -> Any:
        _state().read(value, _FILTER_COST)
        if pass_arg is _PassArg.context:
            return func(context, value, *args, **kwargs)
        if pass_arg is _PassArg.eval_context:
            return func(context.eval_ctx, value, *args, **kwargs)
        if pass_arg is _PassArg.environment:
            return func(context.environment, value, *args, **kwargs)
        return func(value, *args, **kwargs)

    return guarded


# Filters the compiled templates call where the sandbox has no hook of its own.
_LOOP = "_baton_loop"  # the iterable of a for loop, counted item by item
_OUT = "_baton_out"  # a piece of output
_VALUE = "_baton_value"  # a literal list, tuple or dict
_CONCAT = "_baton_concat"  # `a ~ b`
_READ = "_baton_read"  # a comparison's operand (`x in big`, `a == b`), a slice (`big[1:]`)


@pass_context
def _loop_filter(context: Context, iterable: Any) -> Any:
    if isinstance(iterable, Undefined):
        return iterable
    return _state().counted(iterable)


@pass_context
def _out_filter(context: Context, value: Any) -> str:
    state = _state()
    text = value if isinstance(value, str) else str(value)
    state.charge(1 + len(text) // 100)
    state.produced(text)
    return text


@pass_context
def _value_filter(context: Context, value: Any) -> Any:
    state = _state()
    state.charge(2 * _FILTER_COST)
    state.fits(state.size(value))
    return value


@pass_context
def _concat_filter(context: Context, parts: list[Any]) -> str:
    state = _state()
    state.charge(_FILTER_COST)
    state.fits(sum(state.size(part) for part in parts), "the result of ~")
    return "".join(part if isinstance(part, str) else str(part) for part in parts)


@pass_context
def _read_filter(context: Context, value: Any) -> Any:
    _state().read(value)
    return value


def _wrap(node: nodes.Node, name: str) -> nodes.Filter:
    return nodes.Filter(node, name, [], [], None, None, lineno=node.lineno)


class _Bound(NodeTransformer):
    """Puts the counting filters into a parsed template before it is compiled."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = _wrap(node.iter, _LOOP)
        return node

    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        self.generic_visit(node)
        node.nodes = [
            _wrap(nodes.Const(child.data, lineno=child.lineno), _OUT)
            if isinstance(child, nodes.TemplateData)
            else _wrap(child, _OUT)
            for child in node.nodes
        ]
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return _wrap(nodes.List(node.nodes, lineno=node.lineno), _CONCAT)

    def visit_List(self, node: nodes.List) -> nodes.Node:
        self.generic_visit(node)
        return _wrap(node, _VALUE)

    def visit_Dict(self, node: nodes.Dict) -> nodes.Node:
        self.generic_visit(node)
        return _wrap(node, _VALUE)

    def visit_Tuple(self, node: nodes.Tuple) -> nodes.Node:
        self.generic_visit(node)
        return node if node.ctx != "load" else _wrap(node, _VALUE)

    def visit_Getitem(self, node: nodes.Getitem) -> nodes.Node:
        self.generic_visit(node)
        # A slice is compiled to plain Python, not to the sandbox's getitem: it copies.
        return _wrap(node, _READ) if isinstance(node.arg, nodes.Slice) else node

    def visit_Compare(self, node: nodes.Compare) -> nodes.Node:
        self.generic_visit(node)
        node.expr = _wrap(node.expr, _READ)
        for operand in node.ops:
            operand.expr = _wrap(operand.expr, _READ)
        return node


_NOT_AVAILABLE = (nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)


class _Environment(ImmutableSandboxedEnvironment):
    """Keys win over attributes: `params.items` is the param named items, not dict.items."""

    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})

    def __init__(self) -> None:
        super().__init__(undefined=StrictUndefined, autoescape=False)
        for name in ("lipsum", "cycler", "joiner"):
            del self.globals[name]
        # `random` differs between runs; `pprint` indents nested values by their depth, so a
        # deep payload of a megabyte pretty-prints to gigabytes (`tojson` is bounded instead).
        guarded = {
            name: _guard_filter(name, func)
            for name, func in self.filters.items()
            if name not in ("random", "pprint")
        }
        self.filters = {
            **guarded,
            _LOOP: _loop_filter,
            _OUT: _out_filter,
            _VALUE: _value_filter,
            _CONCAT: _concat_filter,
            _READ: _read_filter,
        }
        self.tests = {name: _guard_test(test) for name, test in self.tests.items()}
        self.policies["json.dumps_function"] = _bounded_dumps

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        for node in tree.find_all(_NOT_AVAILABLE):
            raise TemplateSyntaxError(
                f"{type(node).__name__.lower()} is not available in Baton's templates",
                node.lineno,
            )
        return tree

    def _generate(self, source: nodes.Template, *args: Any, **kwargs: Any) -> str:
        bounded = _Bound().visit(source)
        bounded.set_environment(self)
        return super()._generate(bounded, *args, **kwargs)

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, dict) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if isinstance(obj, _PLAIN_TYPES) and callable(value):
            allowed = next((m for t, m in _SAFE_METHODS.items() if isinstance(obj, t)), None)
            if allowed is None or attr not in allowed:
                return False
        return super().is_safe_attribute(obj, attr, value)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        if not (
            isinstance(value, (types.MethodType, types.BuiltinMethodType))
            and value.__name__ in ("format", "format_map")
            and isinstance(value.__self__, str)
        ):
            return None
        text: str = value.__self__
        vformat = _BoundedFormatter(self).vformat
        is_map = value.__name__ == "format_map"

        def bounded(*args: Any, **kwargs: Any) -> str:
            if is_map:
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one argument")
                kwargs = args[0]
                args = ()
            _check_format_string(_state(), text, (args, kwargs))
            return str(vformat(text, args, kwargs))

        return bounded

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        state = _state()
        state.charge(_MACRO_COST if isinstance(__obj, Macro) else _CALL_COST)
        if isinstance(__obj, LoopContext) and args:
            args = (state.counted(args[0]), *args[1:])  # a recursive loop's next level
        method = _method_of(__obj)
        if method is not None:
            owner, name = method
            state.read(owner)
            if isinstance(owner, str):
                args = _checked_str_call(state, owner, name, args, kwargs)
        return state.checked(super().call(__context, __obj, *args, **kwargs))

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        state = _state()
        state.charge(_OPERATOR_COST)
        if operator == "*":
            _check_multiply(state, left, right)
        elif operator == "**":
            _check_power(state, left, right)
        elif operator == "+" and not isinstance(left, (int, float)):
            state.fits(state.size(left) + state.size(right), "the result of +")
        elif operator == "%" and isinstance(left, str):
            _check_percent(state, left, right)
        return state.checked(super().call_binop(context, operator, left, right))


def _bounded_dumps(value: Any, **kwargs: Any) -> str:
    """`tojson`: with an indent, each line is indented by its depth, so the text is built
    piece by piece and stopped at the size limit."""
    if kwargs.get("indent") is None:
        return json.dumps(value, **kwargs)
    state = _state()
    parts: list[str] = []
    size = 0
    for part in json.JSONEncoder(**kwargs).iterencode(value):
        state.charge(1)
        size += len(part)
        state.fits(size, "the result of tojson")
        parts.append(part)
    return "".join(parts)


def _checked_str_call(
    state: _Render, text: str, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, ...]:
    if name in _WIDTH_METHODS and args:
        state.within_width(args[0], f"the width of {name}")
    elif name == "replace" and len(args) >= 2:
        _check_replace(state, text, *args[:3])
    elif name == "join" and args:
        items = list(state.counted(args[0]))
        _check_join(state, text, items)
        args = (items, *args[1:])
    return args


def _check_multiply(state: _Render, left: Any, right: Any) -> None:
    if isinstance(left, int) and isinstance(right, int):
        if left.bit_length() + right.bit_length() > state.limits.int_bits:
            raise _too_big_int(state)
        return
    sequence, times = (right, left) if isinstance(left, int) else (left, right)
    if isinstance(times, int) and isinstance(sequence, (str, bytes, list, tuple)):
        state.fits(state.size(sequence) * max(times, 0), "the result of *")


def _check_power(state: _Render, base: Any, exponent: Any) -> None:
    if (
        isinstance(base, int)
        and isinstance(exponent, int)
        and abs(base) > 1
        and exponent * base.bit_length() > state.limits.int_bits
    ):
        raise _too_big_int(state)


def _too_big_int(state: _Render) -> TemplateLimitError:
    return TemplateLimitError(
        f"the result would be an integer of more than {state.limits.int_bits} bits"
    )


_env = _Environment()
_SINGLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>.*?)\}\}\s*$", re.DOTALL)
_SYNTAX = ("{{", "{%", "{#")


def is_template(text: str) -> bool:
    """Whether `text` has any template syntax; plain text is never parsed."""
    return any(mark in text for mark in _SYNTAX)


@dataclass(frozen=True)
class References:
    """The `namespace.name` pairs a template reads, such as ("steps", "fetch")."""

    names: frozenset[tuple[str, str]]

    def roots(self) -> set[str]:
        return {root for root, _ in self.names}

    def of(self, namespace: str) -> set[str]:
        return {name for root, name in self.names if root == namespace}


_NO_REFERENCES = References(names=frozenset())


@lru_cache(maxsize=4096)
def parse(template: str) -> nodes.Template:
    """The template's tree (shared: do not change it)."""
    if not is_template(template):
        tree = nodes.Template([nodes.Output([nodes.TemplateData(template)])], lineno=1)
        tree.set_environment(_env)
        return tree
    try:
        return _env.parse(template)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"line {exc.lineno}: {exc.message}") from exc
    except RecursionError as exc:
        raise TemplateError("the template is nested too deeply") from exc


@lru_cache(maxsize=4096)
def references(template: str) -> References:
    if not is_template(template):
        return _NO_REFERENCES
    tree = parse(template)
    pairs: set[tuple[str, str]] = set()
    for node in tree.find_all(nodes.Getattr):
        if isinstance(node.node, nodes.Name):
            pairs.add((node.node.name, node.attr))
    for sub in tree.find_all(nodes.Getitem):
        if isinstance(sub.node, nodes.Name) and isinstance(sub.arg, nodes.Const):
            pairs.add((sub.node.name, str(sub.arg.value)))
    return References(names=frozenset(pairs))


@lru_cache(maxsize=4096)
def _template(source: str) -> Template:
    return _env.from_string(source)


@lru_cache(maxsize=4096)
def _expression(source: str) -> TemplateExpression:
    return _env.compile_expression(source, undefined_to_none=False)


def _plain(text: str) -> str:
    """Plain text as Jinja renders it: newlines normalised, one trailing newline dropped."""
    text = newline_re.sub("\n", text)
    return text[:-1] if text.endswith("\n") else text


def render(template: str, context: dict[str, Any], *, budget: Budget | None = None) -> Any:
    """Renders `template`; a lone `{{ expression }}` returns the expression's value itself."""
    if not is_template(template):
        return _plain(template)
    token = _active.set(_Render(budget or Budget(), LIMITS))
    try:
        single = _SINGLE_EXPRESSION.match(template)
        if single and "{{" not in single.group("expr") and "{%" not in template:
            value = _expression(single.group("expr").strip())(**context)
            if isinstance(value, Undefined):
                value._fail_with_undefined_error()
            return value
        return _template(template).render(**context)
    except TemplateError:
        raise
    except TemplateSyntaxError as exc:
        raise TemplateError(f"line {exc.lineno}: {exc.message}") from exc
    except UndefinedError as exc:
        raise TemplateError(f"{exc.message}") from exc
    except SecurityError as exc:
        raise TemplateError(f"not allowed in a template: {exc}") from exc
    except RecursionError as exc:
        raise TemplateLimitError("the template calls itself too deeply") from exc
    except MemoryError as exc:
        raise TemplateLimitError("the template needs more memory than it may use") from exc
    except JinjaError as exc:
        raise TemplateError(f"{exc.message}") from exc
    except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
        raise TemplateError(f"{type(exc).__name__}: {exc}") from exc
    finally:
        _active.reset(token)


def render_text(template: str, context: dict[str, Any], *, budget: Budget | None = None) -> str:
    value = render(template, context, budget=budget)
    return value if isinstance(value, str) else _to_text(value)


def render_tree(value: Any, context: dict[str, Any], *, budget: Budget | None = None) -> Any:
    """Renders every string inside a JSON-like value (headers, bodies, parameter maps), all on
    one budget."""
    budget = budget or Budget()
    if isinstance(value, str):
        return render(value, context, budget=budget)
    if isinstance(value, dict):
        return {key: render_tree(item, context, budget=budget) for key, item in value.items()}
    if isinstance(value, list):
        return [render_tree(item, context, budget=budget) for item in value]
    return value


def truthy(template: str, context: dict[str, Any], *, budget: Budget | None = None) -> bool:
    """An `if` condition: a bare expression (`steps.a.output.ok`) or a `{{ ... }}` template."""
    expression = template if "{{" in template else "{{ " + template + " }}"
    value = render(expression, context, budget=budget)
    if isinstance(value, str):
        return value.strip().lower() not in ("", "false", "0", "no", "none", "null")
    return bool(value)


def _to_text(value: Any) -> str:
    if value is None:
        return ""
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(value)
