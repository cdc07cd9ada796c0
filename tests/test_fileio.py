"""Atomic writes: files get the umask's permissions like any new file, and errors name the user's path."""

import os
import stat

import pytest

from horq.fileio import atomic_open, atomic_write_text, current_umask


@pytest.fixture
def umask():
    def set_mask(mask):
        os.umask(mask)

    old = os.umask(0o022)
    os.umask(old)
    yield set_mask
    os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077, 0o002])
def test_written_file_follows_the_umask(tmp_path, umask, mask):
    umask(mask)
    assert current_umask() == mask
    path = tmp_path / "model.horq"
    with atomic_open(path) as f:
        f.write(b"x")
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
    plain = tmp_path / "plain.txt"
    plain.write_text("y")  # what any other new file gets
    assert stat.S_IMODE(plain.stat().st_mode) == stat.S_IMODE(path.stat().st_mode)


def test_failure_leaves_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "a.txt"
    atomic_write_text(path, "old")
    with pytest.raises(RuntimeError):
        with atomic_open(path, "w") as f:
            f.write("new")
            raise RuntimeError("boom")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["a.txt"]


def test_errors_name_the_users_path(tmp_path):
    with pytest.raises(IsADirectoryError) as info:
        atomic_write_text(tmp_path, "x")
    assert info.value.filename == str(tmp_path)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere (root)")
        with pytest.raises(PermissionError) as info:
            atomic_write_text(locked / "out.horq", "x")
        assert info.value.filename == str(locked / "out.horq") and ".tmp" not in str(info.value)
    finally:
        locked.chmod(0o700)


def test_failed_rename_or_create_names_the_users_path(tmp_path, monkeypatch):
    import errno
    import tempfile

    import horq.fileio as fileio

    def refuse_replace(src, dst):
        raise PermissionError(errno.EACCES, "Permission denied", src, dst)

    path = tmp_path / "out.horq"
    monkeypatch.setattr(fileio.os, "replace", refuse_replace)
    with pytest.raises(PermissionError) as info:
        atomic_write_text(path, "x")
    assert info.value.filename == str(path) and ".tmp" not in str(info.value)
    assert os.listdir(tmp_path) == []  # the temporary file is gone
    monkeypatch.undo()

    def refuse_create(prefix, suffix, dir):
        raise PermissionError(errno.EACCES, "Permission denied", os.path.join(dir, prefix + "abc" + suffix))

    monkeypatch.setattr(tempfile, "mkstemp", refuse_create)
    with pytest.raises(PermissionError) as info:
        atomic_write_text(path, "x")
    assert info.value.filename == str(path)


def test_file_kind_and_same_file(tmp_path):
    import sys
    from pathlib import Path

    from horq.fileio import same_file
    from horq.format import file_kind

    sys.path.insert(0, str(Path(__file__).parent / "format"))
    try:
        from horq_files import tiny_model
    finally:
        sys.path.pop(0)
    import horq.format

    horq.format.save(tmp_path / "m.horq", *tiny_model())
    samples = {"zip.pt": b"PK\x03\x04" + b"\0" * 40, "legacy.pt": b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.",
               "text": b"hello world", "short": b"{}", "big_header": (2**40).to_bytes(8, "little") + b"{"}
    for name, data in samples.items():
        (tmp_path / name).write_bytes(data)
    assert file_kind(tmp_path / "m.horq") == "horq"
    assert file_kind(tmp_path / "zip.pt") == file_kind(tmp_path / "legacy.pt") == "checkpoint"
    for name in ("text", "short", "big_header", "missing"):
        assert file_kind(tmp_path / name) is None
    assert file_kind(tmp_path) is None  # a folder
    # Both torch signatures read as a header length over the limit: the loader names the right command.
    for name in ("zip.pt", "legacy.pt"):
        with pytest.raises(horq.format.VersionError, match="starts like a PyTorch checkpoint.*horq export"):
            horq.format.load(tmp_path / name)

    (tmp_path / "sub").mkdir()
    assert same_file(tmp_path / "m.horq", tmp_path / "sub" / ".." / "m.horq")
    os.symlink(tmp_path / "m.horq", tmp_path / "link.horq")
    assert same_file(tmp_path / "link.horq", tmp_path / "m.horq")
    assert not same_file(tmp_path / "m.horq", tmp_path / "zip.pt")
    assert not same_file(tmp_path / "m.horq", tmp_path / "new.horq")


def test_replace_marked_section(tmp_path):
    from horq.fileio import check_marked_section, replace_marked_section

    doc = tmp_path / "d.md"
    replace_marked_section(doc, "t", "first")  # a missing file gets just the section
    assert doc.read_text() == "<!-- t:begin -->\nfirst\n<!-- t:end -->\n"
    doc.write_text("head\n<!-- t:begin -->\nold\n<!-- t:end -->\ntail\n<!-- u:begin -->\nkeep\n<!-- u:end -->\n")
    replace_marked_section(doc, "t", "new")
    want = "head\n<!-- t:begin -->\nnew\n<!-- t:end -->\ntail\n<!-- u:begin -->\nkeep\n<!-- u:end -->\n"
    assert doc.read_text() == want
    doc.write_text("no markers\n")
    with pytest.raises(ValueError, match="no <!-- t:begin -->"):
        check_marked_section(doc, "t")
    with pytest.raises(ValueError, match="no <!-- t:begin -->"):
        replace_marked_section(doc, "t", "x")
    assert doc.read_text() == "no markers\n"
