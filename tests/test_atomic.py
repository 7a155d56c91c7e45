"""dqt_hw.atomic: outputs are replaced whole or not at all."""

import os

import pytest

from dqt_hw.atomic import atomic_file, replace_dir, write_atomic


def test_write_atomic_replaces_text_and_bytes(tmp_path):
    path = tmp_path / "sub" / "report.md"
    write_atomic(path, "old\n")
    write_atomic(path, "new\n")
    assert path.read_text() == "new\n"
    write_atomic(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert oct(path.stat().st_mode & 0o777) != oct(0o600)      # not mkstemp's private mode
    assert sorted(os.listdir(path.parent)) == ["report.md"]


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "metrics.json"
    write_atomic(path, "complete")
    with pytest.raises(RuntimeError):
        with atomic_file(path) as file:
            file.write("half")
            raise RuntimeError("interrupted")
    assert path.read_text() == "complete"
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_replace_dir_swaps_a_whole_folder(tmp_path):
    out = tmp_path / "pkg"
    for content in ("first", "second"):
        staging = tmp_path / f".pkg.tmp-{content}"
        staging.mkdir()
        (staging / "manifest.json").write_text(content)
        replace_dir(staging, out)
        assert (out / "manifest.json").read_text() == content
    assert sorted(os.listdir(tmp_path)) == ["pkg"]
