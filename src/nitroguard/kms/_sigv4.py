"""AWS Signature Version 4 verification, for the fake KMS (sans-IO, stdlib only).

Follows AWS's published algorithm ("Create a signed AWS API request", IAM user guide):
canonical request -> string to sign -> HMAC chain ``AWS4<secret>``/date/region/service/
``aws4_request``. Only the ``Authorization`` header form is accepted (botocore's), with
``host`` and ``x-amz-date`` signed, the scope's region and service pinned, and the
request time within 5 minutes of the server clock (AWS allows 5 minutes of skew).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import re
import urllib.parse
from collections.abc import Mapping

__all__ = ["SigV4Error", "VerifiedCaller", "sign_key", "verify_request"]

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW = dt.timedelta(minutes=5)
_AUTH = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<cred>[^,\s]+),\s*SignedHeaders=(?P<signed>[^,\s]+),"
    r"\s*Signature=(?P<sig>[0-9a-f]{64})"
)
_SPACES = re.compile(r"\s+")


class SigV4Error(Exception):
    """A request failed authentication; `code` is KMS's error name."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclasses.dataclass(frozen=True, slots=True)
class VerifiedCaller:
    """The authenticated caller."""

    access_key_id: str
    principal: str


def sign_key(secret: str, date: str, region: str, service: str) -> bytes:
    """The SigV4 signing key for one day, region and service."""
    key = hmac.new(("AWS4" + secret).encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _canonical_uri(path: str) -> str:
    raw = urllib.parse.urlsplit(path).path or "/"
    segments = [urllib.parse.quote(urllib.parse.unquote(s), safe="-_.~") for s in raw.split("/")]
    return "/".join(segments)


def _canonical_query(path: str) -> str:
    query = urllib.parse.urlsplit(path).query
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    encoded = sorted(
        (urllib.parse.quote(k, safe="-_.~"), urllib.parse.quote(v, safe="-_.~")) for k, v in pairs
    )
    return "&".join(f"{k}={v}" for k, v in encoded)


def _canonical_request(
    method: str, path: str, headers: Mapping[str, str], signed: list[str], body: bytes
) -> str:
    """SigV4's canonical request (method, URI, query, signed headers, body hash)."""
    canonical_headers = "".join(
        f"{name}:{_SPACES.sub(' ', headers[name].strip())}\n" for name in signed
    )
    return "\n".join(
        [
            method,
            _canonical_uri(path),
            _canonical_query(path),
            canonical_headers,
            ";".join(signed),
            hashlib.sha256(body).hexdigest(),
        ]
    )


def verify_request(
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    secrets: Mapping[str, tuple[str, str]],
    region: str,
    service: str,
    now: dt.datetime,
) -> VerifiedCaller:
    """Verify one request's SigV4 ``Authorization`` header.

    Args:
        headers: lower-case header names -> values (as received).
        secrets: access key id -> (secret access key, principal ARN).

    Raises:
        SigV4Error: ``MissingAuthenticationTokenException``,
            ``IncompleteSignatureException``, ``UnrecognizedClientException``,
            ``InvalidSignatureException`` (bad signature, wrong scope, expired).
    """
    auth = headers.get("authorization")
    if not auth:
        raise SigV4Error("MissingAuthenticationTokenException", "Missing Authentication Token")
    match = _AUTH.fullmatch(auth.strip())
    if match is None:
        raise SigV4Error("IncompleteSignatureException", "Malformed Authorization header")
    parts = match["cred"].split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        raise SigV4Error("IncompleteSignatureException", "Malformed credential scope")
    access_key, date, scope_region, scope_service, _ = parts
    known = secrets.get(access_key)
    if known is None:
        raise SigV4Error(
            "UnrecognizedClientException", "The security token included in the request is invalid."
        )
    secret, principal = known
    signed = match["signed"].split(";")
    if signed != sorted(signed) or not {"host", "x-amz-date"} <= set(signed):
        raise SigV4Error("IncompleteSignatureException", "host and x-amz-date must be signed")
    if any(name not in headers for name in signed):
        raise SigV4Error("IncompleteSignatureException", "a signed header is missing")
    amz_date = headers["x-amz-date"]
    try:
        when = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        raise SigV4Error("IncompleteSignatureException", "Malformed X-Amz-Date") from None
    if date != amz_date[:8] or scope_region != region or scope_service != service:
        raise SigV4Error(
            "InvalidSignatureException",
            f"Credential should be scoped to a valid region ({region}) and service ({service}).",
        )
    if abs(now - when) > MAX_SKEW:
        raise SigV4Error("InvalidSignatureException", "Signature expired")
    canonical = _canonical_request(method, path, headers, signed, body)
    to_sign = "\n".join(
        [
            ALGORITHM,
            amz_date,
            f"{date}/{scope_region}/{scope_service}/aws4_request",
            hashlib.sha256(canonical.encode()).hexdigest(),
        ]
    )
    expected = hmac.new(
        sign_key(secret, date, region, service), to_sign.encode(), hashlib.sha256
    ).hexdigest()
    if not hmac.compare_digest(expected, match["sig"]):
        raise SigV4Error(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided.",
        )
    return VerifiedCaller(access_key, principal)
