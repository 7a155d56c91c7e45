"""dqt_hw.atomic: outputs are replaced whole or not at all."""

import os
import tempfile

import pytest

from dqt_hw.atomic import atomic_file, replace_dir, staging_dir, write_atomic
from dqt_hw.package import run_cli, write_package


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


def _refuse(*args, dir=None, prefix="", **kwargs):
    raise PermissionError(13, "Permission denied", os.path.join(dir, prefix + "x1y2z3"))


def test_an_unwritable_parent_is_reported_with_the_users_path(tmp_path, monkeypatch, capsys):
    """Root ignores folder permissions, so the refusal is simulated where it would happen."""
    monkeypatch.setattr(tempfile, "mkdtemp", _refuse)
    monkeypatch.setattr(tempfile, "mkstemp", _refuse)
    with pytest.raises(PermissionError) as info:
        staging_dir(tmp_path / "pkg")
    assert info.value.filename == str(tmp_path / "pkg")
    with pytest.raises(PermissionError) as info:
        write_atomic(tmp_path / "report.md", "text")
    assert info.value.filename == str(tmp_path / "report.md")
    graph = {"format": "dqt-hw-graph", "version": 1, "master_bits": 8,
             "inputs": {"image": {"shape": [4]}}, "outputs": ["y"],
             "ops": [{"op": "clip", "name": "c", "input": "image", "output": "y", "lo": 0,
                      "hi": 255}]}
    assert run_cli(lambda argv: write_package(graph, tmp_path / "pkg") and 0) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'pkg'}: Permission denied\n"
