"""A per-row budget of time and size for rendering a chat template.

A chat template is a program that runs on every row: on some rows it may loop
for ever or build a huge string, and jinja's sandbox bounds neither (only
``range``, to 100,000 items). :class:`RenderBudget` bounds both per rendered
conversation, through the sandbox's documented extension points on an overlay of
the template's environment, leaving its security checks as they are. Time can
only run away in a loop or a recursion, so the clock is checked where those
happen: at every step of a ``for`` loop and at every call and filter (a macro
recursing is a call). Size can only run away through an operator or a call:
``*``, ``**``, ``+`` and ``~`` refuse results over the size limit (before
building them where they can), calls and filters refuse results over it and
filters a number argument over it (``center(10**10)``), and the output is
measured piece by piece as the template yields it. Attribute and item reads,
which neither loop nor build, are left unhooked: the hooks run on every row, so
they stay off the hot path. A row over the budget is a ``template_error`` with
the reason.

What stays unbounded: ``%`` formatting with a huge width
(``'%99999999999s' % x``) is not caught before Python builds the string.
"""

from __future__ import annotations

import functools
import time

from poet.transforms.reasons import Reason, RowRejected

RENDER_SECONDS = 5.0  # per conversation rendered (a normal render takes well under a millisecond)
RENDER_CHARS = 64 * 10**6  # characters of output, or of any one value a template builds
_SIZED = (str, bytes, list, tuple)
_STEPS = "poet_steps"  # the filter each for loop's iterable goes through


class RenderBudget:
    """Time and size limits for one rendering at a time: :meth:`install` on an environment before compiling,
    then :meth:`render` each conversation's output."""

    def __init__(self, seconds: float | None = None, chars: int | None = None):
        self.seconds = RENDER_SECONDS if seconds is None else seconds
        self.chars = RENDER_CHARS if chars is None else chars
        self.deadline = float("inf")

    def check(self) -> None:
        if time.monotonic() > self.deadline:
            raise RowRejected(Reason.TEMPLATE_ERROR, f"the chat template ran over {self.seconds:g} s on this row")

    def sized(self, value):
        if isinstance(value, _SIZED) and len(value) > self.chars:
            raise self._too_large()
        return value

    def _too_large(self) -> RowRejected:
        return RowRejected(Reason.TEMPLATE_ERROR, f"the chat template built a value over {self.chars:,} characters "
                                                  "on this row")

    def render(self, pieces) -> str:
        """The output of ``root_render_func(context)``: its pieces joined, within the budget."""
        self.deadline = time.monotonic() + self.seconds
        out, size = [], 0
        for piece in pieces:
            size += len(piece)
            if size > self.chars:
                raise RowRejected(Reason.TEMPLATE_ERROR,
                                  f"the chat template wrote over {self.chars:,} characters on this row")
            out.append(piece)
        return "".join(out)

    def compile(self, environment, source: str):
        """``source`` compiled in ``environment`` (an overlay of a sandboxed environment, hooked by :meth:`install`)
        with its ``~`` concatenations made calls, which the hooks check like every other call, and the iterable
        of every ``for`` loop passed through :meth:`steps` (as a filter: a plain call, not the sandbox's)."""
        from jinja2 import nodes
        from jinja2.runtime import markup_join, str_join
        from jinja2.visitor import NodeTransformer

        join = markup_join if environment.autoescape else str_join

        class Checked(NodeTransformer):
            def visit_Concat(self, node):
                node = self.generic_visit(node)
                return nodes.Call(nodes.EnvironmentAttribute("poet_concat"), node.nodes, [], None, None,
                                  lineno=node.lineno)

            def visit_For(self, node):
                node = self.generic_visit(node)
                node.iter = nodes.Filter(node.iter, _STEPS, [], [], None, None, lineno=node.lineno)
                return node

        environment.poet_concat = lambda *values: join(values)
        environment.filters = {**environment.filters, _STEPS: self.steps}
        return environment.from_string(Checked().visit(environment.parse(source)))

    def steps(self, iterable):
        """The items of a ``for`` loop's iterable, checking the clock before each."""
        check = self.check
        for item in iterable:
            check()
            yield item

    def install(self, environment) -> None:
        """Hook the checks into ``environment`` (an overlay of a sandboxed environment: these are its documented
        extension points); templates compiled in it afterwards (:meth:`compile`) are bounded."""
        call, binop, sized, chars = environment.call, environment.call_binop, self.sized, self.chars

        def checked_call(context, obj, *args, **kwargs):
            self.check()
            return sized(call(context, obj, *args, **kwargs))

        def checked_binop(context, operator, left, right):
            if operator == "+":  # the common case, kept short: a sum is checked once built (twice its parts at most)
                result = left + right
                if isinstance(result, _SIZED) and len(result) > chars:
                    raise self._too_large()
                return result
            self._refuse_huge(operator, left, right)
            return sized(binop(context, operator, left, right))

        environment.call = checked_call
        environment.intercepted_binops = frozenset(("*", "**", "+"))
        environment.call_binop = checked_binop
        environment.filters = {name: self._checked_filter(f) for name, f in environment.filters.items()}

    def _refuse_huge(self, operator: str, left, right) -> None:
        """``'x' * 10**10`` or ``9 ** 10**10`` would take the memory or time before any check could run."""
        if operator == "*":
            for sized, count in ((left, right), (right, left)):
                if isinstance(sized, _SIZED) and isinstance(count, int) and len(sized) * count > self.chars:
                    raise self._too_large()
        elif operator == "**" and isinstance(right, int) and isinstance(left, (int, float)) and abs(right) > 4096:
            raise RowRejected(Reason.TEMPLATE_ERROR, "the chat template raised a number to a power over 4096")

    def _checked_filter(self, function):
        @functools.wraps(function)  # keeps jinja's pass_context / pass_environment marks
        def checked(*args, **kwargs):
            self.check()
            if any(isinstance(a, int) and a > self.chars for a in (*args, *kwargs.values())):
                raise RowRejected(Reason.TEMPLATE_ERROR,
                                  f"the chat template gave a filter a number over {self.chars:,}")
            return self.sized(function(*args, **kwargs))

        return checked

