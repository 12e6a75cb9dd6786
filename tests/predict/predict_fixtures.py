"""Trained tiny runs, their votes and bundles, made once per test session and shared by tests/predict/.

Two runs on a 3-class colour competition with a probability sample submission: `r10t` (resnet10t,
TTA none+hflip, test-time adaptation bn, keep_last) and `mnv3` (mobilenetv3_small_050, a deterministic
eval augmentation). Both train their head on frozen random features (seconds, perfect CV on these
images). Every vote method is written (with and without bias, and with estimated priors); one
ordinal run on a second competition is voted with thresholds.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from conftest import make_competition, write_configs
from ensemble.config import load_config
from ensemble.predict.export import export_bundle
from ensemble.train.run import train_run
from ensemble.vote.options import VoteOptions
from ensemble.vote.voter import vote_runs

CLASSES = ["cat", "dog", "fox"]
HEAD = ["stages=[{epochs: 8, train: head, augment: false}]", "optim.lr.head=1.0e-2", "output.plots=false"]


@dataclass
class Trained:
    root: Path
    comp: Path
    runs: list[Path]
    subs: Path  # submissions/ of the main competition (every method)
    ord_comp: Path
    ord_run: Path
    ord_subs: Path

    def manifests(self, competition: str = "tiny") -> list[Path]:
        return sorted((self.root / "submissions" / competition).glob("*.json"))

    def manifest(self, method: str, competition: str = "tiny") -> Path:
        """The manifest whose method (file name up to -cv) is exactly `method`."""
        hits = [m for m in self.manifests(competition) if m.name.split("-cv")[0] == method]
        assert len(hits) == 1, (method, [m.name for m in self.manifests(competition)])
        return hits[0]

    def bundle(self, method: str, competition: str = "tiny", **kw) -> Path:
        """The bundle of a method's submission (exported once per session)."""
        out = self.root / "bundles" / competition / (method + ("-half" if kw.get("half") else ""))
        if not out.exists():
            export_bundle(competition, self.manifest(method, competition), out,
                          submissions_dir=self.root / "submissions", **kw)
        return out


_CACHE: dict[str, Trained] = {}


def _probability_sample(comp: Path) -> None:
    sample = pd.read_csv(comp / "sample_submission.csv", dtype=str)
    pd.DataFrame({"id": sample["id"], **{c: 1 / 3 for c in CLASSES}}).to_csv(comp / "sample_submission.csv",
                                                                               index=False)


def trained(tmp_path_factory) -> Trained:
    """Train, vote (write every method) once per session; paths are absolute, so any cwd works."""
    if "t" in _CACHE:
        return _CACHE["t"]
    root = tmp_path_factory.mktemp("predict")
    comp = make_competition(root / "data" / "tiny", n_per_class=10, n_test=10)
    _probability_sample(comp)
    cfg = write_configs(root / "configs", comp, root / "runs")
    a = train_run(load_config(cfg, [*HEAD, "name=r10t", "model.backbone=resnet10t", "model.head.hidden=[]",
                                     "model.head.dropout=0.0", "predict.tta=[none, hflip]", "predict.adapt=bn",
                                     "train.keep_last=true"]))
    b = train_run(load_config(cfg, [*HEAD, "name=mnv3", "model.backbone=mobilenetv3_small_050",
                                     "augment.eval=[{name: Sharpen, alpha: [0.2, 0.2], lightness: [1.0, 1.0], p: 1.0}]"]))
    subs = root / "submissions"
    vote_runs([a.run_dir, b.run_dir], VoteOptions(weights="2,1", bias="on", write="all", out_dir=str(subs)))
    vote_runs([a.run_dir, b.run_dir], VoteOptions(methods="mean,stacking", bias="off", write="all", out_dir=str(subs),
                                               priors="estimated"))
    ord_comp = make_competition(root / "data" / "tinyord", n_per_class=10, n_test=10)
    o = train_run(load_config(cfg, [*HEAD, "name=ord", "competition.name=tinyord", f"competition.root={ord_comp}",
                                     "competition.task=ordinal", "competition.metric=qwk", "loss.name=mse"]))
    vote_runs([o.run_dir], VoteOptions(methods="mean", bias="on", write="all", out_dir=str(subs)))
    _CACHE["t"] = Trained(root, comp, [a.run_dir, b.run_dir], subs / "tiny", ord_comp, o.run_dir, subs / "tinyord")
    return _CACHE["t"]


def submission(manifest: Path) -> pd.DataFrame:
    return pd.read_csv(json.loads(manifest.read_text())["submission"]["path"], dtype={"id": str})
