import os
import shutil
import tempfile
from pathlib import Path

import pytest

# Generated data goes to a per-session temporary cache, never the user's (one per xdist worker).
_CACHE = Path(tempfile.mkdtemp(prefix="harness-test-cache-"))
os.environ["HARNESS_CACHE"] = str(_CACHE)

# The suite runs on every core at once (pytest-xdist, `-n auto` in pyproject.toml): each worker
# gets its share of the cores for torch, or N workers x N threads each oversubscribe the machine
# and every test slows down. Set before torch is imported, so it also holds in subprocesses.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _WORKERS)))


def pytest_sessionfinish(session, exitstatus):
    """Each process (every xdist worker, and the controller) removes its own cache at its end."""
    shutil.rmtree(_CACHE, ignore_errors=True)


# A small, fast synthetic configuration for end-to-end runs.
TINY = [
    "--backbone", "nano", "--image-size", "32", "--epochs", "2", "--batch-size", "16",
    "--dataset-option", "identities=10", "--dataset-option", "images_per_identity=6",
    "--dataset-option", "image_size=32", "--quiet",
]


@pytest.fixture
def tiny_args():
    return list(TINY)


@pytest.fixture
def cli():
    from click.testing import CliRunner

    from harness.cli.main import main

    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(main, [str(a) for a in args], catch_exceptions=False)

    return invoke


@pytest.fixture(scope="session")
def run_record(tmp_path_factory):
    """One finished tiny CKPE run's record (shared by the tests that only read a record)."""
    import json

    from click.testing import CliRunner

    from harness.cli.main import main

    out = tmp_path_factory.mktemp("record")
    result = CliRunner().invoke(main, ["run", "--method", "ckpe", "--results-dir", str(out), *TINY],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (path,) = out.glob("*.json")
    return json.loads(path.read_text())
