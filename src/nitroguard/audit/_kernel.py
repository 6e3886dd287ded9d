"""Pure parsers for kernel facts: the command line, boolean parameters, release strings.

No I/O here: the probe reads the text, these functions interpret it the way the
kernel does, so that a check can never disagree with the kernel about what a
command line means (quoting, ``--``, dash/underscore equivalence, last value wins).
"""

from __future__ import annotations

import dataclasses
import re

__all__ = [
    "Cmdline",
    "kstrtobool",
    "parse_cmdline",
    "parse_kernel_version",
]

#: The kernel truncates its command line at COMMAND_LINE_SIZE (2048 on x86, 4096 on
#: arm64); anything longer did not come from /proc/cmdline. We bound the work anyway.
MAX_CMDLINE = 64 * 1024

_VERSION_RE = re.compile(r"\s*(\d{1,6})\.(\d{1,6})(?:\.(\d{1,6}))?")


def _normalize(name: str) -> str:
    # kernel/params.c `parameq`: '-' and '_' are interchangeable in parameter names.
    return name.replace("-", "_")


@dataclasses.dataclass(frozen=True, slots=True)
class Cmdline:
    """A parsed kernel command line.

    Attributes:
        params: ``(name, value)`` pairs in order, for the parameters the kernel parses
            (those before a bare ``--``); `value` is None for a flag without ``=``.
        init_args: the words after ``--``, which the kernel passes to init untouched.
    """

    params: tuple[tuple[str, str | None], ...]
    init_args: tuple[str, ...] = ()

    def has(self, name: str) -> bool:
        """Whether parameter `name` appears (with or without a value)."""
        want = _normalize(name)
        return any(_normalize(n) == want for n, _ in self.params)

    def last(self, name: str) -> str | None:
        """The value of the last occurrence of `name` (the one the kernel keeps).

        Returns None when the parameter is absent or given without ``=``.
        """
        want = _normalize(name)
        value: str | None = None
        for n, v in self.params:
            if _normalize(n) == want:
                value = v
        return value

    def values(self, name: str) -> list[str | None]:
        """Every value given for `name`, in order."""
        want = _normalize(name)
        return [v for n, v in self.params if _normalize(n) == want]


def parse_cmdline(text: str) -> Cmdline:
    """Split a command line like the kernel's ``next_arg`` (lib/cmdline.c, kernel/params.c).

    Whitespace separates parameters; double quotes group (``a="b c"`` and
    ``"a=b c"``) and are removed; a bare ``--`` ends kernel parameters and the rest
    goes to init. Never raises: any string parses to something.

    Args:
        text: the content of ``/proc/cmdline`` (a trailing newline is fine).

    Returns:
        The parsed `Cmdline`.
    """
    text = text[:MAX_CMDLINE]
    params: list[tuple[str, str | None]] = []
    words: list[str] = []
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            break
        in_quote = False
        start = i
        while i < n and (in_quote or not text[i].isspace()):
            if text[i] == '"':
                in_quote = not in_quote
            i += 1
        words.append(text[start:i])
    for index, word in enumerate(words):
        if word == "--":
            return Cmdline(tuple(params), tuple(w.replace('"', "") for w in words[index + 1 :]))
        name, sep, value = word.partition("=")
        name = name.replace('"', "")
        params.append((name, value.replace('"', "") if sep else None))
    return Cmdline(tuple(params))


def kstrtobool(value: str | None) -> bool | None:
    """Interpret a boolean parameter value like the kernel's ``kstrtobool``.

    ``y/Y/1/t/T/on`` are true; ``n/N/0/f/F/off`` are false (only the first one or
    two characters matter, as in lib/kstrtox.c). A bare flag (`None`) or an empty
    value is true for ``bool`` module parameters (kernel/params.c ``param_set_bool``
    treats a missing value as "y").

    Returns:
        True, False, or None when the kernel would reject the value.
    """
    if value is None or value == "":
        return True
    first = value[0]
    if first in "yY1tT":
        return True
    if first in "nN0fF":
        return False
    if first in "oO" and len(value) > 1:
        second = value[1]
        if second in "nN":
            return True
        if second in "fF":
            return False
    return None


def parse_kernel_version(release: str) -> tuple[int, int, int] | None:
    """Extract ``(major, minor, patch)`` from a release string such as ``uname -r``.

    ``"6.6.79-nitro"`` -> ``(6, 6, 79)``; ``"4.14.256-209.484.amzn2.x86_64"`` ->
    ``(4, 14, 256)``; ``"6.8"`` -> ``(6, 8, 0)``; anything else -> None.
    """
    match = _VERSION_RE.match(release)
    if match is None:
        return None
    return (int(match[1]), int(match[2]), int(match[3] or 0))
