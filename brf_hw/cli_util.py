"""What every command-line entry point shares: user errors as one line and exit code 2, and
argparse types that check a number's range where it is typed.

A *user error* is something the person at the keyboard can fix (a bad path or flag, a malformed
or mismatched artifact or checkpoint, missing data or a missing tool): it gets one line on stderr
naming the problem and exit code 2, as argparse does for a bad flag. Anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable


class UserError(Exception):
    """A problem the user can fix; CLIs print the message as one line and exit with 2."""


EXIT_USER_ERROR = 2
USER_ERRORS = (UserError, OSError)  # OSError: a path that does not exist, is not writable, ...


def run_main(main: Callable[[], object], prog: str | None = None) -> None:
    """Call a CLI's ``main()``; a user error becomes ``prog: error: message`` and exit code 2."""
    prog = prog or _prog_name()
    try:
        main()
    except USER_ERRORS as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"{prog}: error: {message}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(130)


def _prog_name() -> str:
    import os

    return os.path.basename(sys.argv[0]) or "brf_hw"


def int_range(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    """argparse type: an integer in [low, high] (either bound may be open-ended)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{value} is outside {_describe(low, high)}")
        return value

    parse.__name__ = "integer"
    return parse


def float_range(low: float | None = None, high: float | None = None, *, low_open: bool = False,
                high_open: bool = False) -> Callable[[str], float]:
    """argparse type: a finite float in the interval; ``*_open`` excludes that end."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        below = low is not None and (value <= low if low_open else value < low)
        above = high is not None and (value >= high if high_open else value > high)
        if below or above:
            if high is None:
                wanted = f"{'>' if low_open else '>='} {low:g}"
            elif low is None:
                wanted = f"{'<' if high_open else '<='} {high:g}"
            else:
                wanted = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
            raise argparse.ArgumentTypeError(f"{value:g} is not {wanted}")
        return value

    parse.__name__ = "number"
    return parse


def _describe(low, high) -> str:
    if high is None:
        return f">= {low}" if low is not None else "the integers"
    if low is None:
        return f"<= {high}"
    return f"{low}..{high}"


POSITIVE_INT = int_range(1)
NON_NEGATIVE_INT = int_range(0)
POSITIVE_FLOAT = float_range(0.0, low_open=True)
NON_NEGATIVE_FLOAT = float_range(0.0)
WORD_BITS = int_range(2, 32)  # fixed-point word lengths the spec accepts
