"""Static checks of Python enclave code for checklist items that live in source.

Some checklist items cannot be observed at run time, only read in the code
(``../shared/spec/threat-checklist.md``, the "STA" column). This module walks the
Python AST of an application and reports, as `nitroguard.findings.Finding`:

- **VS-3** -- a ``while`` loop that calls ``recv``/``recv_into`` and never tests the
  result for end of stream: when the peer closes early it spins forever
  (aws-nitro-enclaves-cli PR 609, ``../shared/spec/landscape.md`` section 2).
- **VS-6** -- an ``AF_VSOCK`` socket of type ``SOCK_DGRAM`` (needs review).
- **SC-1** -- ``==``/``!=`` on a value named like a MAC, tag, token, digest, signature,
  secret or password: use `hmac.compare_digest`.
- **RNG-4** -- reads of ``/dev/urandom`` and ``GRND_INSECURE``: keys made before the CRNG
  is seeded are weak; use blocking ``getrandom``/`secrets`.
- **TIME-4** -- code that sets the system clock (``clock_settime``/``settimeofday``):
  never from values relayed by the parent.
- **TIME-5** -- local time and naive datetimes (``localtime``, ``mktime``,
  ``datetime.now()`` without a zone, ``utcnow``, ``fromtimestamp`` without a zone) in
  code that decides expiry or replay.
- **ATT-6** -- ``get_attestation(public_key=..., user_data=...)`` fed from a function
  parameter: the enclave must attest only keys and data it generated itself.

The checks are heuristics over syntax: a finding is a place to look, and silence is
not proof. They never import or run the scanned code.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from nitroguard.errors import ConfigError, Error, Reason
from nitroguard.findings import Finding, Status

__all__ = ["MAX_FILE_SIZE", "RULES", "scan_paths", "scan_source"]

#: Files larger than this are reported as skipped rather than parsed.
MAX_FILE_SIZE = 4 * 1024 * 1024

#: Rule id -> title, in report order.
RULES: dict[str, str] = {
    "VS-3": "recv loop exits on end of stream",
    "VS-6": "vsock sockets are SOCK_STREAM",
    "SC-1": "secrets compared in constant time",
    "RNG-4": "no early or insecure randomness",
    "TIME-4": "clock not set from relayed values",
    "TIME-5": "security time logic uses epoch UTC, not local time",
    "ATT-6": "attestation binds only enclave-generated data",
}

_SECRET_NAME = re.compile(
    r"(^|_)(h?mac|tag|token|digest|signature|sig|secret|password|passwd|api_key|auth)$",
    re.IGNORECASE,
)
_RECV_METHODS = frozenset({"recv", "recv_into", "recvfrom", "recvfrom_into"})
_EOF_AWARE_SINKS = frozenset({"receive_data"})


@dataclasses.dataclass(frozen=True, slots=True)
class _Hit:
    rule: str
    status: Status
    line: int
    message: str
    remediation: str


def _dotted(node: ast.AST) -> str:
    """``a.b.c`` for a Name/Attribute chain, else ``""``."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def _last_name(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
        return str(node.slice.value)
    return ""


def _has_kw(call: ast.Call, name: str) -> bool:
    return any(kw.arg == name for kw in call.keywords)


def _mentions(node: ast.AST, needle: str) -> bool:
    return any(
        (isinstance(n, ast.Name) and n.id == needle)
        or (isinstance(n, ast.Attribute) and n.attr == needle)
        for n in ast.walk(node)
    )


class _Visitor(ast.NodeVisitor):
    def __init__(self) -> None:
        self.hits: list[_Hit] = []
        self._params: list[set[str]] = []

    # -- helpers -----------------------------------------------------------------
    def _hit(self, rule: str, status: Status, node: ast.AST, message: str, fix: str) -> None:
        self.hits.append(_Hit(rule, status, getattr(node, "lineno", 0), message, fix))

    def _rooted_in_param(self, node: ast.AST) -> str | None:
        if not self._params:
            return None
        params = self._params[-1]
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name) and sub.id in params:
                return sub.id
        return None

    # -- functions: remember parameters for ATT-6 ---------------------------------
    def _visit_function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        args = node.args
        names = {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]}
        names.discard("self")
        names.discard("cls")
        if args.vararg:
            names.add(args.vararg.arg)
        if args.kwarg:
            names.add(args.kwarg.arg)
        self._params.append(names)
        self.generic_visit(node)
        self._params.pop()

    visit_FunctionDef = _visit_function
    visit_AsyncFunctionDef = _visit_function

    # -- VS-3 ----------------------------------------------------------------------
    def visit_While(self, node: ast.While) -> None:
        for sub in ast.walk(node):
            if not isinstance(sub, ast.Assign | ast.AnnAssign | ast.NamedExpr | ast.AugAssign):
                continue
            value = sub.value
            if not (
                isinstance(value, ast.Call)
                and isinstance(value.func, ast.Attribute)
                and value.func.attr in _RECV_METHODS
            ):
                continue
            if isinstance(sub, ast.AugAssign):
                # ``buf += sock.recv(n)``: the chunk is never looked at on its own.
                self._hit(
                    "VS-3",
                    Status.FAIL,
                    sub,
                    f"`+= ….{value.func.attr}()` in a loop: a 0-byte read (peer closed) "
                    "is appended and the loop continues",
                    "Read into a variable, and raise or break when it is empty (b'' / 0).",
                )
                continue
            target = sub.target if not isinstance(sub, ast.Assign) else sub.targets[0]
            name = _last_name(target)
            if not name:
                continue
            if not self._loop_checks_eof(node, name, sub):
                self._hit(
                    "VS-3",
                    Status.FAIL,
                    sub,
                    f"`{name} = ….{value.func.attr}()` in a loop that never tests `{name}` "
                    "for end of stream: it spins forever when the peer closes early",
                    f"Add `if not {name}: raise ConnectionError(...)` right after the read.",
                )
        self.generic_visit(node)

    @staticmethod
    def _loop_checks_eof(loop: ast.While, name: str, assign: ast.AST) -> bool:
        if _mentions(loop.test, name):
            return True
        for sub in ast.walk(loop):
            if sub is assign:
                continue
            # Sans-IO convention (h11, nitroguard.framing): receive_data(b"") means EOF,
            # so handing the chunk to a protocol object is an EOF check.
            if (
                isinstance(sub, ast.Call)
                and isinstance(sub.func, ast.Attribute)
                and sub.func.attr in _EOF_AWARE_SINKS
                and any(_mentions(arg, name) for arg in sub.args)
            ):
                return True
            if isinstance(sub, ast.If | ast.Assert | ast.IfExp) and _mentions(sub.test, name):
                return True
            if isinstance(sub, ast.Compare) and _mentions(sub, name):
                return True
        return False

    # -- calls: VS-6, RNG-4, TIME-4, TIME-5, ATT-6 ----------------------------------
    def visit_Call(self, node: ast.Call) -> None:
        func = _dotted(node.func)
        short = func.rsplit(".", 1)[-1]
        if short == "socket" and node.args:
            names = {_dotted(a).rsplit(".", 1)[-1] for a in node.args[:2]}
            names |= {_dotted(kw.value).rsplit(".", 1)[-1] for kw in node.keywords}
            if {"AF_VSOCK", "SOCK_DGRAM"} <= names:
                self._hit(
                    "VS-6",
                    Status.WARN,
                    node,
                    "AF_VSOCK socket with SOCK_DGRAM: datagrams lose the stream guarantees "
                    "the rest of the checklist assumes",
                    "Use SOCK_STREAM, or document why datagrams are safe here.",
                )
        if short == "open" and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and first.value == "/dev/urandom":
                self._hit(
                    "RNG-4",
                    Status.WARN,
                    node,
                    "reads /dev/urandom, which never blocks, even before the CRNG is seeded",
                    "Use `secrets`/`os.urandom` after `nitroguard.audit` has passed RNG-4 "
                    "(getrandom blocks until the CRNG is seeded).",
                )
        if short in {"clock_settime", "clock_settime_ns", "settimeofday"}:
            self._hit(
                "TIME-4",
                Status.WARN,
                node,
                f"sets the system clock ({func}): a value relayed by the parent would let "
                "it move the enclave's time",
                "Sync from the KVM PTP clock (/dev/ptp0) instead; never from vsock input.",
            )
        self._time5(node, func, short)
        if short == "get_attestation":
            for kw in node.keywords:
                if kw.arg in {"public_key", "user_data"}:
                    source = self._rooted_in_param(kw.value)
                    if source is not None:
                        self._hit(
                            "ATT-6",
                            Status.WARN,
                            node,
                            f"`{kw.arg}=` comes from the parameter `{source}`: if a caller "
                            "controls it, the enclave attests data it did not generate",
                            "Attest only keys generated inside the enclave; take nothing but "
                            "a nonce from callers.",
                        )
        self.generic_visit(node)

    def _time5(self, node: ast.Call, func: str, short: str) -> None:
        message = ""
        if func in {"time.localtime", "time.mktime", "time.strptime"} or func == "localtime":
            message = f"`{func}()` depends on the local time zone"
        elif short == "utcnow":
            message = "`datetime.utcnow()` returns a naive datetime"
        elif short == "now" and "datetime" in func and not node.args and not node.keywords:
            message = "`datetime.now()` without a time zone returns local, naive time"
        elif (
            short in {"fromtimestamp", "utcfromtimestamp"}
            and "datetime" in func
            and len(node.args) < 2
            and not _has_kw(node, "tz")
        ):
            message = f"`{func}()` without tz returns a naive datetime"
        if message:
            self._hit(
                "TIME-5",
                Status.WARN,
                node,
                message,
                "Use epoch integers or aware UTC datetimes (datetime.now(UTC)) for expiry "
                "and replay windows, and time.monotonic() for timeouts.",
            )

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr == "GRND_INSECURE":
            self._hit(
                "RNG-4",
                Status.WARN,
                node,
                "GRND_INSECURE returns bytes even before the CRNG is seeded",
                "Use blocking getrandom (no flags) for keys, nonces and tokens.",
            )
        self.generic_visit(node)

    # -- SC-1 ------------------------------------------------------------------------
    def visit_Compare(self, node: ast.Compare) -> None:
        operands = [node.left, *node.comparators]
        for op, left, right in zip(node.ops, operands, operands[1:], strict=False):
            if not isinstance(op, ast.Eq | ast.NotEq):
                continue
            for side, other in ((left, right), (right, left)):
                name = _last_name(side)
                # ALL_CAPS names are constants and enum members, not secrets.
                if not name or name.isupper() or not _SECRET_NAME.search(name):
                    continue
                if isinstance(other, ast.Constant) and not isinstance(other.value, bytes):
                    # `sig == None`, `digest != "SHA384"`: a public value, not a secret pair.
                    continue
                if isinstance(other, ast.Call) and _dotted(other.func) in {"len", "type"}:
                    continue
                symbol = "==" if isinstance(op, ast.Eq) else "!="
                self._hit(
                    "SC-1",
                    Status.WARN,
                    node,
                    f"`{name}` is compared with `{symbol}`, "
                    "which returns early on the first differing byte (a timing oracle)",
                    "Use hmac.compare_digest(a, b).",
                )
                break
        self.generic_visit(node)


def scan_source(source: str, filename: str = "<string>") -> list[Finding]:
    """Scan one Python source text. Pure: no I/O.

    Returns:
        One `Finding` per suspicious place (status `warn` or `fail`), ordered by line;
        a single `skip` finding when the source does not parse.
    """
    try:
        tree = ast.parse(source, filename=filename)
    except (SyntaxError, ValueError) as exc:
        line = getattr(exc, "lineno", None) or 0
        return [
            Finding(
                "SCAN",
                "source parses",
                Status.SKIP,
                f"{filename}:{line}: not valid Python ({exc.__class__.__name__}); not scanned",
                file=filename,
                line=line or None,
            )
        ]
    visitor = _Visitor()
    visitor.visit(tree)
    lines = source.splitlines()
    findings = []
    for hit in sorted(visitor.hits, key=lambda h: (h.line, h.rule)):
        code = lines[hit.line - 1].strip() if 0 < hit.line <= len(lines) else ""
        findings.append(
            Finding(
                hit.rule,
                RULES[hit.rule],
                hit.status,
                f"{filename}:{hit.line}: {hit.message}" + (f"  | {code}" if code else ""),
                hit.remediation,
                file=filename,
                line=hit.line,
            )
        )
    return findings


def _iter_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for sub in sorted(path.rglob("*.py")):
                if not any(part.startswith(".") or part == "__pycache__" for part in sub.parts):
                    yield sub
        elif path.is_file():
            yield path
        elif path.exists():
            # A FIFO would block the read, a device would never end: refuse by name.
            raise ConfigError(f"{path}: not a regular file or directory", Reason.INVALID_ARGUMENT)
        else:
            raise ConfigError(f"{path}: no such file or directory", Reason.INVALID_ARGUMENT)


def scan_paths(paths: Iterable[str | Path]) -> list[Finding]:
    """Scan files and directories (recursively, ``*.py``).

    Raises:
        ConfigError: a path does not exist.
        Error: `unreadable_input` when a file cannot be read.
    """
    findings: list[Finding] = []
    for path in _iter_files(paths):
        try:
            size = path.stat().st_size
            if size > MAX_FILE_SIZE:
                findings.append(
                    Finding(
                        "SCAN",
                        "source parses",
                        Status.SKIP,
                        f"{path}: {size} bytes, over the {MAX_FILE_SIZE}-byte limit; not scanned",
                    )
                )
                continue
            source = path.read_bytes().decode("utf-8", errors="replace")
        except OSError as exc:
            raise Error(f"cannot read {path}: {exc.strerror}", Reason.UNREADABLE_INPUT) from exc
        findings.extend(scan_source(source, str(path)))
    return findings
