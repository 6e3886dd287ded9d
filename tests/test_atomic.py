"""nitroguard._atomic: one atomic-output helper for every file the package writes."""

from __future__ import annotations

import os
import pathlib

import pytest

from nitroguard._atomic import atomic_output, write_atomic


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(old)


def test_new_file_gets_the_mode_a_normal_create_gives(
    tmp_path: pathlib.Path, umask_027: None
) -> None:
    write_atomic(tmp_path / "out", b"data")
    (tmp_path / "plain").write_bytes(b"data")
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "out").stat().st_mode == (tmp_path / "plain").stat().st_mode


def test_private_mode_is_kept_and_narrowed_by_the_umask(
    tmp_path: pathlib.Path, umask_027: None
) -> None:
    write_atomic(tmp_path / "key", b"k", mode=0o600)
    write_atomic(tmp_path / "cert", b"c", mode=0o644)
    assert (tmp_path / "key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "cert").stat().st_mode & 0o777 == 0o640


def test_replaces_only_on_success_and_leaves_no_temporary(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "out"
    target.write_bytes(b"old")

    def fail() -> None:
        with atomic_output(target) as fh:
            fh.write(b"half")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fail()
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    with atomic_output(target) as fh:
        fh.write(b"new")
        fh.flush()
        # The block can read back what it wrote before the rename (sign_eif does).
        assert pathlib.Path(fh.name).read_bytes() == b"new"
        assert target.read_bytes() == b"old"
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_unwritable_directory_raises_oserror(tmp_path: pathlib.Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_atomic(tmp_path / "missing" / "out", b"x")
