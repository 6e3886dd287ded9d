"""The one exception tree of nitroguard.

Every exception raised on purpose by nitroguard derives from `Error`, and every
`Error` carries `reason`, a `Reason` (a `str` enum) whose values are stable and
machine-readable: tools and logs can dispatch on `err.reason` without parsing
messages. Parsers let nothing else escape; the fuzz tests prove it.

Areas add their own subclasses here so that `except nitroguard.errors.Error`
catches everything, and so that the reasons stay one shared, documented list.
"""

from __future__ import annotations

import enum
from typing import Any

__all__ = [
    "AuditError",
    "BrokenStreamError",
    "ChannelError",
    "ClosedResourceError",
    "ConfigError",
    "DecodeError",
    "DecryptionError",
    "EifError",
    "Error",
    "InsecureEnvironment",
    "LocalProtocolError",
    "NsmError",
    "PolicyError",
    "ProbeError",
    "ProtocolError",
    "Reason",
    "RemoteProtocolError",
    "TimeoutError_",
    "TransportError",
    "VerificationError",
]


class Reason(enum.StrEnum):
    """Stable, machine-readable failure reasons.

    Values never change once released; new ones may be added.
    """

    # --- generic -------------------------------------------------------------
    INVALID_ARGUMENT = "invalid_argument"
    UNREADABLE_INPUT = "unreadable_input"
    INTERNAL_ERROR = "internal_error"

    # --- CBOR / COSE decoding (hazmat) ---------------------------------------
    TOO_LARGE = "too_large"
    MALFORMED_CBOR = "malformed_cbor"
    DUPLICATE_KEY = "duplicate_key"
    TRAILING_BYTES = "trailing_bytes"
    UNEXPECTED_TAG = "unexpected_tag"
    TOO_DEEP = "too_deep"
    MALFORMED_COSE = "malformed_cose"
    UNSUPPORTED_ALGORITHM = "unsupported_algorithm"

    # --- attestation document schema -----------------------------------------
    INVALID_DOCUMENT = "invalid_document"
    MISSING_FIELD = "missing_field"
    INVALID_FIELD = "invalid_field"
    UNKNOWN_FIELD = "unknown_field"
    INVALID_DIGEST = "invalid_digest"
    INVALID_PCR = "invalid_pcr"

    # --- attestation chain and signature --------------------------------------
    UNTRUSTED_ROOT = "untrusted_root"
    EXPIRED_CERTIFICATE = "expired_certificate"
    NOT_YET_VALID_CERTIFICATE = "not_yet_valid_certificate"
    INVALID_CERTIFICATE = "invalid_certificate"
    INVALID_CHAIN = "invalid_chain"
    WEAK_KEY = "weak_key"
    BAD_SIGNATURE = "bad_signature"

    # --- attestation policies -------------------------------------------------
    DEBUG_MODE = "debug_mode"
    PCR_MISMATCH = "pcr_mismatch"
    PCR_MISSING = "pcr_missing"
    NONCE_MISMATCH = "nonce_mismatch"
    USER_DATA_MISMATCH = "user_data_mismatch"
    PUBLIC_KEY_MISMATCH = "public_key_mismatch"
    MODULE_ID_MISMATCH = "module_id_mismatch"
    STALE_DOCUMENT = "stale_document"
    FUTURE_DOCUMENT = "future_document"
    POLICY_FAILED = "policy_failed"

    # --- NSM --------------------------------------------------------------------
    INVALID_INDEX = "invalid_index"
    READ_ONLY_INDEX = "read_only_index"
    INVALID_OPERATION = "invalid_operation"
    INPUT_TOO_LARGE = "input_too_large"
    INVALID_RESPONSE = "invalid_response"
    INVALID_REQUEST = "invalid_request"
    BUFFER_TOO_SMALL = "buffer_too_small"
    INVALID_ARGUMENT_NSM = "invalid_argument_nsm"
    NSM_UNAVAILABLE = "nsm_unavailable"
    NSM_IO_ERROR = "nsm_io_error"

    # --- transport / framing ----------------------------------------------------
    INVALID_ADDRESS = "invalid_address"
    TRUNCATED = "truncated"
    FRAME_TOO_LARGE = "frame_too_large"
    BUFFER_OVERFLOW = "buffer_overflow"
    TIMEOUT = "timeout"
    CONNECTION_CLOSED = "connection_closed"
    CONNECTION_REFUSED = "connection_refused"
    CONNECTION_LIMIT = "connection_limit"
    NOT_ALLOWED = "not_allowed"
    REMOTE_TARGET_REFUSED = "remote_target_refused"

    # --- channel ------------------------------------------------------------------
    HANDSHAKE_FAILED = "handshake_failed"
    DECRYPTION_FAILED = "decryption_failed"
    VERSION_MISMATCH = "version_mismatch"
    REPLAY = "replay"
    KEY_BINDING_MISMATCH = "key_binding_mismatch"
    RECORD_TOO_LARGE = "record_too_large"
    UNEXPECTED_MESSAGE = "unexpected_message"
    UNKNOWN_OPERATION = "unknown_operation"
    RATE_LIMITED = "rate_limited"

    # --- audit ----------------------------------------------------------------------
    INSECURE_ENVIRONMENT = "insecure_environment"
    MALFORMED_CPU_LIST = "malformed_cpu_list"
    MALFORMED_DESCRIBE_ENCLAVES = "malformed_describe_enclaves"
    MALFORMED_ALLOCATOR_CONFIG = "malformed_allocator_config"

    # --- EIF --------------------------------------------------------------------------
    BAD_MAGIC = "bad_magic"
    UNSUPPORTED_VERSION = "unsupported_version"
    TRUNCATED_FILE = "truncated_file"
    BAD_SECTION = "bad_section"
    OVERLAPPING_SECTIONS = "overlapping_sections"
    BAD_CRC = "bad_crc"
    BAD_METADATA = "bad_metadata"
    BAD_SIGNATURE_SECTION = "bad_signature_section"
    BAD_HEADER = "bad_header"
    TOO_MANY_SECTIONS = "too_many_sections"
    SECTION_OUT_OF_BOUNDS = "section_out_of_bounds"
    SECTION_SIZE_MISMATCH = "section_size_mismatch"
    UNKNOWN_SECTION_TYPE = "unknown_section_type"
    MISSING_SECTION = "missing_section"
    DUPLICATE_SECTION = "duplicate_section"
    NOT_SIGNED = "not_signed"
    SIGNATURE_PAYLOAD_MISMATCH = "signature_payload_mismatch"

    # --- CLI contract (issue 14) --------------------------------------------------------
    UNWRITABLE_OUTPUT = "unwritable_output"
    TARGET_UNREACHABLE = "target_unreachable"


class Error(Exception):
    """Root of every nitroguard exception.

    Attributes:
        reason: the machine-readable `Reason`.
        message: a human-readable explanation (also `str(err)`).
        details: optional structured context (never secrets).
    """

    #: Default reason when a subclass is raised without one.
    default_reason: Reason = Reason.INTERNAL_ERROR

    def __init__(
        self,
        message: str,
        reason: Reason | None = None,
        **details: Any,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason: Reason = reason if reason is not None else self.default_reason
        self.details: dict[str, Any] = details

    def diagnostics(self) -> str:
        """A one-line, human-readable description including the reason."""
        return f"{self.message} [{self.reason.value}]"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description: `{"reason", "message", "error", ...details}`."""
        out: dict[str, Any] = {
            "error": type(self).__name__,
            "reason": self.reason.value,
            "message": self.message,
        }
        for key, value in self.details.items():
            out[key] = value.hex() if isinstance(value, bytes | bytearray) else value
        return out


class ConfigError(Error):
    """Bad configuration or arguments supplied by the caller."""

    default_reason = Reason.INVALID_ARGUMENT


class DecodeError(Error):
    """Malformed or over-limit CBOR/COSE/attestation input (hazmat layer)."""

    default_reason = Reason.MALFORMED_CBOR


class VerificationError(Error):
    """An attestation document failed a cryptographic check or the schema.

    `details["step"]` names the numbered verification step that failed.
    """

    default_reason = Reason.INVALID_DOCUMENT


class PolicyError(VerificationError):
    """The document verified cryptographically but a policy rejected it."""

    default_reason = Reason.POLICY_FAILED


class NsmError(Error):
    """The NSM (device, emulator or socket) refused a request or misbehaved."""

    default_reason = Reason.INTERNAL_ERROR


class TransportError(Error):
    """A transport-level failure (address, connect, limits, I/O)."""

    default_reason = Reason.CONNECTION_CLOSED


class TimeoutError_(TransportError):
    """A deadline expired."""

    default_reason = Reason.TIMEOUT


class ClosedResourceError(TransportError):
    """The resource was closed by us and can no longer be used."""

    default_reason = Reason.CONNECTION_CLOSED


class BrokenStreamError(TransportError):
    """The peer went away or the stream broke."""

    default_reason = Reason.CONNECTION_CLOSED


class ProtocolError(Error):
    """A framing or channel protocol violation. Abstract: raise a subclass."""

    default_reason = Reason.MALFORMED_CBOR

    def __init__(self, message: str, reason: Reason | None = None, **details: Any) -> None:
        if type(self) is ProtocolError:
            raise TypeError("ProtocolError is abstract; raise Local- or RemoteProtocolError")
        super().__init__(message, reason, **details)


class LocalProtocolError(ProtocolError):
    """We (the local caller) tried to do something the protocol forbids."""

    default_reason = Reason.INVALID_ARGUMENT


class RemoteProtocolError(ProtocolError):
    """The peer violated the protocol."""

    default_reason = Reason.TRUNCATED


class ChannelError(Error):
    """The attested channel failed (handshake, binding, versioning)."""

    default_reason = Reason.HANDSHAKE_FAILED


class DecryptionError(ChannelError):
    """Opaque record failure: bad tag, length, sequence or replay look the same."""

    default_reason = Reason.DECRYPTION_FAILED

    def __init__(self, message: str = "record authentication failed", **details: Any) -> None:
        super().__init__(message, Reason.DECRYPTION_FAILED)


class AuditError(Error):
    """The audit itself could not run (not a finding)."""

    default_reason = Reason.INTERNAL_ERROR


class InsecureEnvironment(AuditError):
    """The environment audit found failing checks; `findings` lists them."""

    default_reason = Reason.INSECURE_ENVIRONMENT

    def __init__(self, message: str, findings: Any = (), **details: Any) -> None:
        super().__init__(message, Reason.INSECURE_ENVIRONMENT, **details)
        self.findings = tuple(findings)


class ProbeError(Error):
    """The adversarial probe could not run (bad target, refused remote target)."""

    default_reason = Reason.INVALID_ARGUMENT


class EifError(Error):
    """A malformed or inconsistent EIF image."""

    default_reason = Reason.BAD_SECTION
