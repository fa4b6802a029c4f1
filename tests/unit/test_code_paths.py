"""Which changed paths are flagged for a reviewer as making tools run code later."""

from __future__ import annotations

import pytest

from goexd.domain.code_paths import runs_code_later


@pytest.mark.parametrize(
    "path",
    [
        ".envrc",
        "sub/dir/.envrc",
        ".git/hooks/pre-commit",
        "vendor/lib/.git/config",
        ".githooks/pre-push",
        ".husky/",
        ".vscode/tasks.json",
        ".vscode/",
        ".idea/workspace.xml",
        ".devcontainer/devcontainer.json",
        ".github/workflows/ci.yml",
        ".pre-commit-config.yaml",
        ".gitmodules",
        ".gitlab-ci.yml",
    ],
)
def test_flagged(path: str) -> None:
    assert runs_code_later(path)


@pytest.mark.parametrize(
    "path",
    [
        "README.md",
        "src/main.py",
        "docs/.vscode.md",
        "sub/.vscode/settings.json",
        ".github/ISSUE_TEMPLATE.md",
        "a.envrc",
    ],
)
def test_not_flagged(path: str) -> None:
    assert not runs_code_later(path)
