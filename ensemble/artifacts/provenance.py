"""What a submission was built from, so it can be rebuilt: package versions, the project's git
commit (and whether the tree had uncommitted changes) and the hash of every config used.

Reads package metadata only (importlib.metadata): nothing heavy (torch, timm) is imported.
"""
from __future__ import annotations

import logging
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Iterable

from .io import file_hash

logger = logging.getLogger(__name__)

PACKAGES = ("torch", "torchvision", "timm", "albumentations", "opencv-python-headless", "numpy", "pandas",
            "scikit-learn", "scipy", "optuna", "pyarrow", "ensemble")
PROJECT_ROOT = Path(__file__).resolve().parent.parent
MAX_CHANGED = 20  # changed paths listed in the manifest


def versions(packages: Iterable[str] = PACKAGES) -> dict[str, str | None]:
    """{'python': '3.11.7', 'torch': '2.14.1', ...}; a package that is not installed maps to None."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for pkg in packages:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def _git(root: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def git_state(root: str | Path = PROJECT_ROOT) -> dict:
    """{'commit': sha or None, 'dirty': bool or None, 'changed': [paths], 'root': path}.

    The project's checkout (where this package's code lives); commit None when it is not a git
    checkout (e.g. a wheel install) or git is missing. Dirty = tracked files modified or untracked,
    not ignored, files present (`git status --porcelain`)."""
    root = Path(root)
    head = _git(root, "rev-parse", "HEAD")
    if head is None:
        return {"commit": None, "dirty": None, "changed": [], "root": str(root)}
    status = _git(root, "status", "--porcelain") or ""
    changed = [line[3:] for line in status.splitlines() if line.strip()]
    return {"commit": head.strip(), "dirty": bool(changed), "changed": changed[:MAX_CHANGED],
            "n_changed": len(changed), "root": str(root)}


def config_hashes(run_dirs: Iterable[str | Path]) -> dict[str, str | None]:
    """{run dir name: sha256 of its resolved config.yaml (None when missing)}."""
    out = {}
    for d in run_dirs:
        cfg = Path(d) / "config.yaml"
        out[Path(d).name] = file_hash(cfg) if cfg.is_file() else None
    return out


def provenance(run_dirs: Iterable[str | Path], extra_configs: Iterable[str | Path] = ()) -> dict:
    """The manifest fields: versions, git, configs (run -> sha256 of its config.yaml, plus any other
    config file given, by path)."""
    configs = config_hashes(run_dirs)
    for f in extra_configs:
        configs[str(f)] = file_hash(f) if Path(f).is_file() else None
    git = git_state()
    if git["dirty"]:
        logger.warning("the project tree has %d uncommitted change(s); the manifest records the commit %s "
                       "and the changed paths", git["n_changed"], git["commit"][:12])
    return {"versions": versions(), "git": git, "configs": configs}
