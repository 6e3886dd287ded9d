"""Mutation campaign against the KMS key-policy parser, evaluator and linter.

Seeds are valid policies (the generator's output, AWS's default policy, soft-operator
and Deny shapes, get-key-policy output). Each input is a seed mutated as text (byte
flips, inserts of JSON punctuation, deletes, truncations, duplicated runs) or as a
structure (a value swapped for another JSON value). It goes through `parse_policy`;
when it parses, through `evaluate` for a few requests and through `lint_policy`. Only
`nitroguard.errors.Error` may escape; anything else is a bug, printed with the input,
and makes the script exit 1.

Usage: python bench/fuzz_kms_policy.py [--count N] [--seed S]
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import sys
import time
import traceback
from collections import Counter
from typing import Any

from nitroguard.errors import Error
from nitroguard.kms import RequestContext, evaluate, parse_policy
from nitroguard.kms._generate import generate_policy
from nitroguard.kms._lint import ImagePcrs, lint_policy

ROLE = "arn:aws:iam::111122223333:role/enclave"
ROOT = "arn:aws:iam::111122223333:root"
GOOD = "3c" * 48
IMG = "kms:RecipientAttestation:ImageSha384"
PIECES = ['"', "{", "}", "[", "]", ",", ":", "\\", "\\u0000", "\\ud800", "*", "?", "null"]
VALUES: list[Any] = [None, True, 0, -1, 1e308, "", "*", "kms:*", [], {}, [[]], {"AWS": "*"}]
VALUES += ["Allow", "Deny", "StringLike", "ForAnyValue:StringEquals", "x" * 200, GOOD]


def seeds() -> list[dict[str, Any]]:
    image = ImagePcrs("a.eif", {0: GOOD, 1: "1d" * 48, 2: "2e" * 48, 8: "8f" * 48})
    generated = generate_policy(
        [image], principal=ROLE, account="111122223333", encryption_context={"p": "v"}
    )
    default = {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "Root", "Effect": "Allow", "Principal": {"AWS": ROOT}, "Action": "kms:*",
             "Resource": "*"},
            {"Effect": "Allow", "Principal": "*", "Action": ["kms:Decrypt"], "Resource": "*",
             "Condition": {"StringLikeIfExists": {IMG: "3c*"},
                           "ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["a"]},
                           "Null": {"kms:EncryptionContext:p": "false"}}},
            {"Effect": "Deny", "NotPrincipal": {"AWS": [ROLE, "111122223333"]},
             "NotAction": "kms:Describe*", "Resource": "*",
             "Condition": {"StringNotEqualsIgnoreCase": {IMG: [GOOD, "0" * 96]},
                           "Bool": {"aws:SecureTransport": True}}},
        ],
    }  # fmt: skip
    return [generated, default]


def mutate_text(text: str, rng: random.Random) -> str:
    data = list(text)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        pos = rng.randrange(len(data) + 1)
        if op == 0 and data:
            data[min(pos, len(data) - 1)] = chr(rng.randrange(0x20, 0x7F))
        elif op == 1:
            data[pos:pos] = list(rng.choice(PIECES))
        elif op == 2 and data:
            del data[pos : pos + rng.randint(1, 8)]
        elif op == 3:
            data = data[:pos]
        else:
            run = data[pos : pos + rng.randint(1, 16)]
            data[pos:pos] = run
    return "".join(data)


def mutate_structure(doc: Any, rng: random.Random) -> Any:
    doc = copy.deepcopy(doc)
    for _ in range(rng.randint(1, 3)):
        node = doc
        parent: Any = None
        key: Any = None
        while isinstance(node, dict | list) and node and rng.random() < 0.8:
            parent = node
            key = rng.choice(list(node)) if isinstance(node, dict) else rng.randrange(len(node))
            node = node[key]
        if parent is None:
            continue
        if isinstance(parent, dict) and rng.random() < 0.2:
            parent[rng.choice(["Extra", "Condition", "NotPrincipal", key.lower()])] = copy.deepcopy(
                node
            )
        else:
            parent[key] = copy.deepcopy(rng.choice(VALUES))
    return doc


def run_one(data: str | bytes) -> str:
    try:
        policy = parse_policy(data)
    except Error as exc:
        return f"rejected:{exc.reason.value}"
    for principal in (ROLE, ROOT, "arn:aws:iam::999999999999:role/x"):
        for conditions in ({}, {IMG: GOOD, "kms:EncryptionContextKeys": ("p",)}):
            evaluate(policy, RequestContext(principal, "kms:Decrypt", conditions))
    lint_policy(policy, principals=[ROLE])
    return "accepted"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=12)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    docs = seeds()
    texts = [json.dumps(d) for d in docs]
    texts.append(json.dumps({"Policy": texts[0], "PolicyName": "default"}))
    outcomes: Counter[str] = Counter()
    started = time.perf_counter()
    for i in range(args.count):
        if rng.random() < 0.5:
            data: str | bytes = mutate_text(rng.choice(texts), rng)
        else:
            data = json.dumps(mutate_structure(rng.choice(docs), rng))
        if rng.random() < 0.1:
            data = data.encode("utf-8", "surrogatepass")
        try:
            outcomes[run_one(data)] += 1
        except Exception:
            print(f"input {i} escaped with a non-nitroguard error: {data!r}", file=sys.stderr)
            traceback.print_exc()
            return 1
        if (i + 1) % 20_000 == 0:
            print(f"{i + 1} inputs...", file=sys.stderr)
    elapsed = time.perf_counter() - started
    print(f"{args.count} inputs in {elapsed:.1f} s; only nitroguard errors escaped")
    for outcome, count in outcomes.most_common():
        print(f"  {outcome}: {count}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
