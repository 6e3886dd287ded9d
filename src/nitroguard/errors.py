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
    "AppError",
    "AuditError",
    "BrokenResourceError",
    "ChannelError",
    "ClosedResourceError",
    "ConfigError",
    "DeadlineError",
    "DecodeError",
    "DecryptionError",
    "EifError",
    "Error",
    "ImageError",
    "InsecureEnvironment",
    "KmsError",
    "KmsPolicyError",
    "LocalProtocolError",
    "NsmError",
    "PolicyError",
    "ProbeError",
    "ProtocolError",
    "Reason",
    "RemoteProtocolError",
    "TarError",
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
    NOT_ALLOWED = "not_allowed"
    REMOTE_TARGET_REFUSED = "remote_target_refused"

    # --- channel ------------------------------------------------------------------
    HANDSHAKE_FAILED = "handshake_failed"
    DECRYPTION_FAILED = "decryption_failed"
    VERSION_MISMATCH = "version_mismatch"
    KEY_BINDING_MISMATCH = "key_binding_mismatch"
    UNEXPECTED_MESSAGE = "unexpected_message"
    UNKNOWN_OPERATION = "unknown_operation"
    RATE_LIMITED = "rate_limited"

    # --- channel: client authentication and runtime limits (issue 10) ----------------
    UNAUTHENTICATED = "unauthenticated"
    NOT_AUTHORIZED = "not_authorized"
    BAD_BINDING = "bad_binding"
    UNTRUSTED_CLIENT = "untrusted_client"
    SERVICE_MISMATCH = "service_mismatch"
    TOO_MANY_ITEMS = "too_many_items"
    MEMORY_BUDGET = "memory_budget"

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
    TOO_MANY_SECTIONS = "too_many_sections"
    SECTION_OUT_OF_BOUNDS = "section_out_of_bounds"
    SECTION_SIZE_MISMATCH = "section_size_mismatch"
    UNKNOWN_SECTION_TYPE = "unknown_section_type"
    MISSING_SECTION = "missing_section"
    DUPLICATE_SECTION = "duplicate_section"
    NOT_SIGNED = "not_signed"
    SIGNATURE_PAYLOAD_MISMATCH = "signature_payload_mismatch"

    # --- KMS (issue 11): envelope reader, KmsClient, fake KMS -------------------------
    MALFORMED_ENVELOPE = "malformed_envelope"
    MISSING_OAEP_PARAMETERS = "missing_oaep_parameters"
    UNSUPPORTED_KEY_ENCRYPTION = "unsupported_key_encryption"
    UNSUPPORTED_CONTENT_ENCRYPTION = "unsupported_content_encryption"
    TOO_MANY_RECIPIENTS = "too_many_recipients"
    PLAINTEXT_IN_REPLY = "plaintext_in_reply"
    KEY_ID_MISMATCH = "key_id_mismatch"
    MISSING_ENCRYPTION_CONTEXT = "missing_encryption_context"
    KMS_REQUEST_FAILED = "kms_request_failed"

    # --- KMS key policies (issue 12): parser, evaluator, linter, generator ---------------
    MALFORMED_POLICY_JSON = "malformed_policy_json"
    INVALID_KEY_POLICY = "invalid_key_policy"
    UNKNOWN_EFFECT = "unknown_effect"
    INVALID_POLICY_CONDITION = "invalid_policy_condition"
    UNSUPPORTED_POLICY_ELEMENT = "unsupported_policy_element"

    # --- EIF from a container image (tar, cpio, OCI; issue 13) ------------------------
    MALFORMED_TAR = "malformed_tar"
    UNSUPPORTED_ENTRY = "unsupported_entry"
    UNSAFE_PATH = "unsafe_path"
    INVALID_IMAGE_CONFIG = "invalid_image_config"
    MALFORMED_IMAGE = "malformed_image"
    PLATFORM_NOT_FOUND = "platform_not_found"
    UNSUPPORTED_COMPRESSION = "unsupported_compression"
    NOT_REPRODUCIBLE = "not_reproducible"
    CPIO_FIELD_OVERFLOW = "cpio_field_overflow"

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


class DeadlineError(TransportError):
    """A deadline expired."""

    default_reason = Reason.TIMEOUT


class ClosedResourceError(TransportError):
    """The resource was closed by us and can no longer be used."""

    default_reason = Reason.CONNECTION_CLOSED


class BrokenResourceError(TransportError):
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


class AppError(ChannelError):
    """The enclave application answered a request with an error.

    `reason` is the server's reason when it is a known `Reason`, else
    `internal_error`; ``details["remote_reason"]`` always holds the server's text.
    """

    default_reason = Reason.INTERNAL_ERROR


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


class KmsError(Error):
    """A KMS envelope was refused, a KMS reply was unsafe, or a KMS call failed.

    Envelope unwrap and padding failures all carry `decryption_failed` and one fixed
    message, so that whoever relays the envelope learns nothing from which step failed.
    """

    default_reason = Reason.MALFORMED_ENVELOPE


class KmsPolicyError(KmsError):
    """A KMS key policy that KMS would refuse (or that nitroguard cannot evaluate).

    `details["where"]` names the element, e.g. ``Statement[1].Condition``.
    """

    default_reason = Reason.INVALID_KEY_POLICY


class ImageError(Error):
    """A container image (docker export, image config, OCI layout) that cannot be
    turned into nitro-cli's ramdisks."""

    default_reason = Reason.MALFORMED_IMAGE


class TarError(ImageError):
    """A malformed, over-limit or unsupported tar stream."""

    default_reason = Reason.MALFORMED_TAR
