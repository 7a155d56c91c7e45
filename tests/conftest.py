"""Suite-wide settings: property tests are reproducible and never time-sensitive."""

import os

import pytest
from hypothesis import settings

# Timing deadlines would make results depend on machine load (CI shares 2 cores); in CI the
# examples are derandomized so a failure reproduces from the same commit.
settings.register_profile("dqt", deadline=None, print_blob=True)
settings.register_profile("ci", deadline=None, print_blob=True, derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "dqt")


@pytest.fixture(scope="session")
def varying_package(tmp_path_factory):
    """A small digits DQT model with a random controller output layer, exported: most of its
    controlled layers change bit-width from image to image (the co-simulations' test article).
    Returns (package directory, checkpoint)."""
    pytest.importorskip("torch")
    from dqt_hw.export import main as export_main
    from train.fit import main as fit_main
    from train.random_controller import main as random_main
    root = tmp_path_factory.mktemp("varying")
    run = root / "run"
    assert fit_main(["--threads", "1", "--no-progress", "--dataset", "digits", "--mode", "dqt",
                     "--epochs", "2", "--width", "8", "--out", str(run)]) == 0
    checkpoint = root / "randctrl.pt"
    assert random_main([str(run / "checkpoint.pt"), "--dataset", "digits",
                        "--out", str(checkpoint)]) == 0
    package = root / "pkg"
    assert export_main([str(checkpoint), "--out", str(package)]) == 0
    return package, checkpoint
