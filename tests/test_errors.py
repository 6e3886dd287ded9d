from __future__ import annotations

import pytest

from nitroguard import errors
from nitroguard.errors import Error, Reason


class TestErrorTree:
    def test_every_error_class_derives_from_root(self) -> None:
        for name in errors.__all__:
            obj = getattr(errors, name)
            if isinstance(obj, type) and issubclass(obj, BaseException):
                assert issubclass(obj, Error), name

    def test_reason_is_machine_readable(self) -> None:
        err = errors.VerificationError("chain broken", Reason.INVALID_CHAIN, step=3)
        assert err.reason == "invalid_chain"
        assert err.to_dict() == {
            "error": "VerificationError",
            "reason": "invalid_chain",
            "message": "chain broken",
            "step": 3,
        }
        assert err.diagnostics() == "chain broken [invalid_chain]"

    def test_default_reasons(self) -> None:
        assert errors.PolicyError("x").reason is Reason.POLICY_FAILED
        assert errors.DecryptionError().reason is Reason.DECRYPTION_FAILED

    def test_protocol_error_is_abstract(self) -> None:
        with pytest.raises(TypeError, match="abstract"):
            errors.ProtocolError("x")
        assert errors.RemoteProtocolError("eof", Reason.TRUNCATED).reason is Reason.TRUNCATED

    def test_reason_values_are_unique_and_snake_case(self) -> None:
        values = [r.value for r in Reason]
        assert len(values) == len(set(values))
        assert all(v == v.lower() and " " not in v for v in values)


def test_every_reason_is_raised_somewhere() -> None:
    """A `Reason` that no code raises is a promise the library does not keep (issue 15)."""
    import pathlib

    import nitroguard
    from nitroguard.errors import Reason

    root = pathlib.Path(nitroguard.__file__).parent
    source = "\n".join(p.read_text() for p in root.rglob("*.py"))
    unused = [r.name for r in Reason if f"Reason.{r.name}" not in source]
    assert unused == []
