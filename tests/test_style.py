"""The code base stays ruff-clean and mypy-clean, as CI runs only pytest."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
RUFF = shutil.which("ruff")


@pytest.mark.skipif(RUFF is None, reason="ruff is installed with the test extra")
@pytest.mark.parametrize("command", [["check", "."], ["format", "--check", "."]])
def test_ruff_is_clean(command):
    result = subprocess.run([RUFF, *command], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("mypy") is None, reason="mypy is installed with the test extra")
def test_mypy_is_clean_on_the_package():
    result = subprocess.run(
        [shutil.which("mypy") or "mypy", "watcher"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    command = (
        "bash tests/setup-system.sh && python3 -m pip install -e '.[test]' && python3 -m pytest"
    )
    assert f"```sh\n{command}\n```" in readme
    assert (ROOT / ".ci" / "run").read_text(encoding="utf-8").rstrip().endswith(command)


def test_every_install_hint_names_the_distribution():
    """ "watcher" on PyPI is an unrelated package: every hint must name ours."""
    import re
    import tomllib

    from watcher import DISTRIBUTION

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["name"] == DISTRIBUTION
    places = [ROOT / "README.md", ROOT / "Dockerfile", *(ROOT / "contrib").iterdir()]
    places += (ROOT / "watcher").rglob("*.py")
    hints = [
        (path.name, found)
        for path in places
        for found in re.findall(
            r"pip install (?:-[-\w]+ )*['\"]?([\w.-]+)", path.read_text(encoding="utf-8")
        )
    ]
    assert hints and all(name in (DISTRIBUTION, ".") for _, name in hints), hints
    assert not [h for h in hints if h[1] == "watcher"]


def test_the_image_installs_dependencies_before_the_code_and_checks_its_own_port():
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert text.index("pip install '.[apprise,postgres]'") < text.index("COPY watcher ")
    healthcheck = text[text.index("HEALTHCHECK") :]
    assert "WATCHER_LISTEN" in healthcheck and "9187/healthz" not in healthcheck
    assert "WATCHER_DB=/app/state/watcher.db" in text
