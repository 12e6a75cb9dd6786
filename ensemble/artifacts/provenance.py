"""What a submission was built from, so it can be rebuilt: package versions, the project's git
commit (and whether the tree had uncommitted changes) and the hash of every config used; and
`portable`, which makes every path in a manifest relative to the repository root (a manifest is
committed and shared: the machine that wrote it must not show in it).

Reads package metadata only (importlib.metadata): nothing heavy (torch, timm) is imported.
"""
from __future__ import annotations

import functools
import logging
import os
import platform
import re
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Iterable

from .io import file_hash

logger = logging.getLogger(__name__)

PACKAGES = ("torch", "torchvision", "timm", "albumentations", "opencv-python-headless", "numpy", "pandas",
            "scikit-learn", "scipy", "optuna", "pyarrow", "ensemble")
PACKAGE_DIR = Path(__file__).resolve().parent.parent  # ensemble/
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


@functools.lru_cache(maxsize=1)
def repo_root() -> Path:
    """The repository root of the project's checkout (where this package's code lives): git's top
    level, else the folder holding the package (a wheel install has no repository)."""
    top = _git(PACKAGE_DIR, "rev-parse", "--show-toplevel")
    return Path(top.strip()) if top and top.strip() else PACKAGE_DIR.parent


def git_state(root: str | Path | None = None) -> dict:
    """{'commit': sha or None, 'dirty': bool or None, 'changed': [paths], 'root': path}.

    root: the project's checkout (default: :func:`repo_root`); commit None when it is not a git
    checkout (e.g. a wheel install) or git is missing. Dirty = tracked files modified or untracked,
    not ignored, files present (`git status --porcelain`)."""
    root = Path(root) if root is not None else repo_root()
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
    git["root"] = root_relative(git["root"])  # '.': the repository root itself
    if git["dirty"]:
        logger.warning("the project tree has %d uncommitted change(s); the manifest records the commit %s "
                       "and the changed paths", git["n_changed"], git["commit"][:12])
    return {"versions": versions(), "git": git, "configs": configs}


# an absolute path inside a text: a '/' at the start or after a space, quote, '=', '(', '[' or ',', with at
# least one more character (URLs are left alone: their '//' follows ':')
_ABS_PATH = re.compile(r"""(?<![^\s'"=(\[,])/[^\s'"\]),;]+""")


def root_relative(path: str | os.PathLike, root: str | os.PathLike | None = None) -> str:
    """A path (absolute or relative to the working directory) relative to the repository root;
    one under the home folder and outside the root as '~/...'. 'runs/x' from the root stays 'runs/x'."""
    root = os.path.abspath(root if root is not None else repo_root())
    p = os.path.abspath(path)
    home = os.path.expanduser("~")
    inside = os.path.commonpath([p, root]) == root
    if not inside and home not in ("/", "") and os.path.commonpath([p, home]) == home:
        return "~" + p[len(home):]
    return os.path.relpath(p, root)


def from_root(path: str | os.PathLike, root: str | os.PathLike | None = None) -> Path:
    """The inverse of :func:`root_relative`: a manifest's path ('runs/x', '../data', '~/x') as a usable one,
    whatever the working directory. Absolute paths are returned as they are."""
    p = Path(os.path.expanduser(str(path)))
    return p if p.is_absolute() else Path(os.path.normpath(Path(root if root is not None else repo_root()) / p))


def portable(value, root: str | os.PathLike | None = None):
    """A copy of a JSON-like value in which every absolute path inside a string is made relative to the
    repository root (:func:`root_relative`); git's 'root' becomes '.'. Dicts, lists and tuples recurse."""
    if isinstance(value, dict):
        return {k: portable(v, root) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [portable(v, root) for v in value]
    if isinstance(value, str) and "/" in value:
        return _ABS_PATH.sub(lambda m: root_relative(m.group(0), root), value)
    return value
