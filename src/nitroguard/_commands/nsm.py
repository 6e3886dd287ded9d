"""`nitroguard nsm`: talk to the NSM (device or emulator), serve the emulator, export its root.

Examples::

    nitroguard nsm --nsm emulator:/tmp/nsm.sock describe
    nitroguard nsm pcr 16
    nitroguard nsm extend 16 0b00374863ff5c65
    nitroguard nsm lock 16
    nitroguard nsm lock-range 20
    nitroguard nsm random 32
    nitroguard nsm attest --nonce 00112233... -o doc.cbor
    nitroguard nsm serve --socket /tmp/nsm.sock [--state DIR [--init]] [--debug-mode] [--pcr 0=HEX]
    nitroguard nsm pki --state DIR --export-root root.pem
"""

from __future__ import annotations

import argparse
import base64
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from nitroguard._commands._common import emit_json, parse_hex, write_output
from nitroguard.errors import ConfigError

if TYPE_CHECKING:
    from nitroguard.nsm import Nsm

__all__ = ["register"]


def _index(value: str) -> int:
    try:
        number = int(value, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {value!r}") from None
    if not 0 <= number <= 0xFFFF:
        raise argparse.ArgumentTypeError(f"must be in [0, 65535]: {value!r}")
    return number


def _count(value: str) -> int:
    try:
        number = int(value, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {value!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {value!r}")
    return number


def _random_count(value: str) -> int:
    from nitroguard.nsm import MAX_RANDOM_BYTES

    number = _count(value)
    if number > MAX_RANDOM_BYTES:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_RANDOM_BYTES}: {value!r}")
    return number


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the `nsm` subcommand and its actions."""
    parser = sub.add_parser(
        "nsm",
        help="use the Nitro Secure Module (device or emulator), or serve the emulator",
        description=(
            "Talk to the NSM selected by --nsm, else $NITROGUARD_NSM "
            "(device | device:PATH | emulator:SOCKET), else /dev/nsm. "
            "Never falls back to the emulator silently."
        ),
    )
    parser.add_argument(
        "--nsm",
        metavar="SPEC",
        help="device | device:PATH | emulator:SOCKET (default: $NITROGUARD_NSM, else /dev/nsm)",
    )
    actions = parser.add_subparsers(dest="nsm_action", metavar="ACTION")
    actions.required = True

    p = actions.add_parser("describe", help="DescribeNSM: version, module id, locked PCRs")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_describe)

    p = actions.add_parser("pcr", help="DescribePCR: lock state and value of PCR N")
    p.add_argument("index", type=_index, metavar="N")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_pcr)

    p = actions.add_parser("extend", help="ExtendPCR: PCR[N] = SHA-384(PCR[N] || data)")
    p.add_argument("index", type=_index, metavar="N")
    p.add_argument("data", metavar="HEX", help="the data to extend with, hex")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_extend)

    p = actions.add_parser("lock", help="LockPCR: make PCR N read-only")
    p.add_argument("index", type=_index, metavar="N")
    p.set_defaults(func=_lock)

    p = actions.add_parser("lock-range", help="LockPCRs: lock PCRs [0, N)")
    p.add_argument("range", type=_index, metavar="N")
    p.set_defaults(func=_lock_range)

    p = actions.add_parser("random", help="N bytes from the NSM's RNG, hex")
    p.add_argument("count", type=_random_count, metavar="N")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_random)

    p = actions.add_parser("attest", help="get a signed attestation document")
    p.add_argument("--nonce", metavar="HEX", help="nonce to embed (hex)")
    p.add_argument("--user-data", metavar="HEX", help="user data to embed (hex)")
    p.add_argument("--public-key", metavar="HEX", help="public key to embed (hex)")
    p.add_argument("-o", "--output", metavar="FILE", help="write the raw document (CBOR) here")
    p.add_argument("--json", action="store_true", help="print JSON (document in base64)")
    p.set_defaults(func=_attest)

    p = actions.add_parser("serve", help="serve a software NSM emulator on a Unix socket")
    p.add_argument("--socket", required=True, metavar="PATH", help="Unix socket to listen on")
    p.add_argument(
        "--state",
        metavar="DIR",
        help="emulator PKI state directory (default: $XDG_STATE_HOME/nitroguard/emulator); "
        "must exist unless --init (a typo must not silently mint a new root)",
    )
    p.add_argument(
        "--init", action="store_true", help="create the state directory and a new root if missing"
    )
    p.add_argument(
        "--debug-mode", action="store_true", help="report PCR0/1/2/8 as zeros, like a debug enclave"
    )
    p.add_argument(
        "--pcr",
        action="append",
        default=[],
        metavar="N=HEX",
        help="boot measurement for PCR N (0-15), 48 bytes hex; repeatable",
    )
    p.add_argument("--instance-id", metavar="ID", help="parent instance id (i-<hex>)")
    p.add_argument("--parent-role", metavar="ARN", help="parent IAM role ARN (extended into PCR3)")
    p.add_argument("--max-connections", type=_count, default=32, help="connections served at once")
    p.set_defaults(func=_serve)

    p = actions.add_parser("pki", help="manage the emulator's PKI (export its root to pin)")
    p.add_argument(
        "--state",
        metavar="DIR",
        help="emulator PKI state directory; must exist unless --init (a typo must not "
        "silently mint a new root)",
    )
    p.add_argument(
        "--init", action="store_true", help="create the state directory and a new root if missing"
    )
    p.add_argument("--json", action="store_true", help="print JSON (fingerprint, output)")
    p.add_argument(
        "--export-root", required=True, metavar="FILE", help="write the root PEM here ('-': stdout)"
    )
    p.set_defaults(func=_pki)


def _open(args: argparse.Namespace) -> Nsm:
    from nitroguard.nsm import open as open_nsm

    return open_nsm(args.nsm)


def _describe(args: argparse.Namespace) -> int:
    with _open(args) as nsm:
        d = nsm.describe_nsm()
    if args.json:
        emit_json(
            {
                "version": d.version_string,
                "module_id": d.module_id,
                "max_pcrs": d.max_pcrs,
                "locked_pcrs": list(d.locked_pcrs),
                "digest": d.digest,
            }
        )
    else:
        sys.stdout.write(
            f"version:     {d.version_string}\nmodule_id:   {d.module_id}\n"
            f"max_pcrs:    {d.max_pcrs}\nlocked_pcrs: {_ranges(d.locked_pcrs)}\n"
            f"digest:      {d.digest}\n"
        )
    return 0


def _ranges(indices: tuple[int, ...]) -> str:
    runs: list[list[int]] = []
    for i in indices:
        if runs and runs[-1][1] == i - 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    text = [f"{a}" if a == b else f"{a}-{b}" for a, b in runs]
    return ", ".join(text) if text else "(none)"


def _pcr(args: argparse.Namespace) -> int:
    with _open(args) as nsm:
        pcr = nsm.describe_pcr(args.index)
    if args.json:
        emit_json({"index": args.index, "lock": pcr.lock, "data": pcr.data.hex()})
    else:
        sys.stdout.write(
            f"PCR{args.index} {'locked' if pcr.lock else 'unlocked'} {pcr.data.hex()}\n"
        )
    return 0


def _extend(args: argparse.Namespace) -> int:
    data = parse_hex(args.data, "data")
    with _open(args) as nsm:
        value = nsm.extend_pcr(args.index, data)
    if args.json:
        emit_json({"index": args.index, "data": value.hex()})
    else:
        sys.stdout.write(value.hex() + "\n")
    return 0


def _lock(args: argparse.Namespace) -> int:
    with _open(args) as nsm:
        nsm.lock_pcr(args.index)
    sys.stderr.write(f"PCR{args.index} locked\n")
    return 0


def _lock_range(args: argparse.Namespace) -> int:
    with _open(args) as nsm:
        nsm.lock_pcrs(args.range)
    sys.stderr.write(f"PCRs 0-{args.range - 1} locked\n" if args.range else "nothing to lock\n")
    return 0


def _random(args: argparse.Namespace) -> int:
    with _open(args) as nsm:
        data = nsm.get_random(args.count)
    if args.json:
        emit_json({"random": data.hex()})
    else:
        sys.stdout.write(data.hex() + "\n")
    return 0


def _attest(args: argparse.Namespace) -> int:
    fields = {
        name: None if getattr(args, name) is None else parse_hex(getattr(args, name), flag)
        for name, flag in (
            ("nonce", "--nonce"),
            ("user_data", "--user-data"),
            ("public_key", "--public-key"),
        )
    }
    with _open(args) as nsm:
        document = nsm.get_attestation(**fields)
    if args.output:
        write_output(args.output, document)
    if args.json:
        emit_json(
            {
                "bytes": len(document),
                "output": args.output,
                "document": base64.b64encode(document).decode("ascii"),
            }
        )
    elif args.output:
        sys.stderr.write(f"wrote {len(document)} bytes to {args.output}\n")
    else:
        sys.stdout.write(document.hex() + "\n")
    return 0


def _parse_pcrs(items: list[str]) -> dict[int, bytes]:
    pcrs: dict[int, bytes] = {}
    for item in items:
        index_text, sep, hex_text = item.partition("=")
        if not sep:
            raise ConfigError(f"--pcr expects N=HEX, got {item!r}")
        try:
            index = int(index_text, 10)
        except ValueError:
            raise ConfigError(f"--pcr: bad index in {item!r}") from None
        if index in pcrs:
            raise ConfigError(f"--pcr {index} given twice")
        pcrs[index] = parse_hex(hex_text, f"--pcr {index}")
    return pcrs


def _check_state(args: argparse.Namespace) -> None:
    """An explicit --state must exist unless --init: a typo would mint a new root, and
    every relying party that pinned the old one would then reject the emulator."""
    if args.state is not None and not args.init and not Path(args.state).is_dir():
        raise ConfigError(
            f"--state: no emulator state at {args.state} (pass --init to create a new root there)"
        )


def _pki(args: argparse.Namespace) -> int:
    from nitroguard.nsm import EmulatorPki

    _check_state(args)
    pki = EmulatorPki(args.state)
    if args.export_root == "-" and not args.json:
        sys.stdout.buffer.write(pki.root_pem)
        sys.stdout.flush()
    elif args.export_root != "-":
        write_output(args.export_root, pki.root_pem)
    if args.json:
        emit_json(
            {
                "root_sha256": pki.root_fingerprint,
                "output": None if args.export_root == "-" else args.export_root,
                "root_pem": pki.root_pem.decode("ascii"),
            }
        )
    sys.stderr.write(f"emulator root (NOT AWS) sha256 {pki.root_fingerprint}\n")
    return 0


def _serve(args: argparse.Namespace) -> int:
    import threading

    from nitroguard.nsm import EmulatedNsm, EmulatorPki, NsmServer

    pcrs = _parse_pcrs(args.pcr)
    if args.max_connections < 1:
        raise ConfigError("--max-connections must be at least 1")
    _check_state(args)
    pki = EmulatorPki(args.state)
    emulator = EmulatedNsm(
        pki,
        debug_mode=args.debug_mode,
        pcrs=pcrs,
        instance_id=args.instance_id,
        parent_role=args.parent_role,
    )
    server = NsmServer(emulator, args.socket, max_connections=args.max_connections)
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.start()
        sys.stderr.write(
            f"nitroguard NSM emulator (NOT AWS; module {emulator.module_id}"
            f"{', debug mode' if args.debug_mode else ''}); "
            f"root sha256 {pki.root_fingerprint}\n"
        )
        sys.stdout.write(f"listening on unix://{args.socket}\n")
        sys.stdout.flush()
        while not stop.wait(0.5):
            pass
    finally:
        server.shutdown()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    sys.stderr.write("emulator stopped\n")
    return 0
