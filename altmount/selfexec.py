"""The command lines with which altmount starts its own helper processes.

`python -m altmount` and `python -c ...` put the working directory first on `sys.path`,
so started from a folder that holds an `altmount/` source tree (a checkout, say) the
helper would import that uncompiled tree instead of the installed package. `-P` (Python
3.11) leaves the working directory out, so a helper runs the package its parent runs.
"""

from __future__ import annotations

import sys

__all__ = ["altmount_argv", "python_argv"]


def python_argv(*args: str) -> list[str]:
    """`python -P ARGS` with the interpreter running altmount."""
    return [sys.executable, "-P", *args]


def altmount_argv(*args: str) -> list[str]:
    """The `altmount ARGS` command, run by the interpreter running altmount."""
    return python_argv("-m", "altmount", *args)
