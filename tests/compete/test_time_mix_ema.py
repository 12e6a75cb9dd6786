"""--time candidates with MixUp/CutMix and EMA overrides: checked, planned into the stages, measured with them."""
import shutil
from pathlib import Path

import torch

from ensemble.compete import measure
from ensemble.compete.__main__ import main
from ensemble.compete.measure import measure_candidates, measure_speed
from ensemble.compete.spec import load_compete_file
from ensemble.compete.plandata import Entry, Speed
from ensemble.config import load_config
from ensemble.models import build_model
from ensemble.train.ema import WeightEma
from ensemble.train.mix import BatchMixer, MixSpec
from ensemble.train.plan import build_fold_plan

REPO = Path(__file__).resolve().parents[2]
MIXED = '["augment.mix={mixup_alpha: 0.2, cutmix_alpha: 1.0}", "train.ema={decay: 0.99}"]'


def _configs(tmp_path, candidate_set: str) -> Path:
    shutil.copytree(REPO / "configs" / "demo", tmp_path / "configs" / "demo")
    path = tmp_path / "configs" / "demo" / "compete.yaml"
    path.write_text(path.read_text().replace(
        "    - {cfg: mobilenetv3.yaml, sizes: [32]}",
        f"    - {{cfg: mobilenetv3.yaml, sizes: [32], train: 1, set: {candidate_set}}}"))
    return tmp_path / "configs"


def test_mix_and_ema_candidates_pass_the_checks_and_reach_the_fine_tuning_stages(tmp_path):
    folder, spec = load_compete_file("demo", _configs(tmp_path, MIXED))  # train: 1 loads the candidate's config
    c = spec.time.candidates[1]
    entry = Entry(c.label, c.cfg, list(c.set), 32, head_epochs=2, epochs=3, est_seconds=60.0, fold_limit=30,
                  folds=3, train=1)
    cfg = load_config(folder / c.cfg, [*spec.time.set, *entry.overrides()])
    assert cfg.augment.mix.mixup_alpha == 0.2 and cfg.train.ema.decay == 0.99
    plan = build_fold_plan(cfg)
    assert plan.mix == MixSpec(mixup_alpha=0.2, cutmix_alpha=1.0) and plan.make_ema is not None
    head, tune = plan.stages
    # the head epochs run on cached features (frozen, no augmentation): never mixed; the fine-tuning epochs mix
    assert (head.train, head.augment) == ("head", False) and (tune.train, tune.mix) == (1, True)


def test_a_bad_mix_override_of_a_candidate_fails_before_anything_runs(tmp_path, capsys):
    configs = _configs(tmp_path, '["augment.mix={prob: 2}"]')
    assert main(["--competition", "demo", "--time", "3m", "--plan-only", "--configs-dir", str(configs)]) == 2
    assert "--set: key 'augment.mix.prob' expected a number in [0, 1], got float 2.0" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_candidate_speed_is_measured_with_its_ema_and_mix(tmp_path, monkeypatch):
    folder, spec = load_compete_file("demo", _configs(tmp_path, MIXED))
    cfgs = {c.label: load_config(folder / c.cfg, [*spec.time.set, *c.set]) for c in spec.time.candidates}
    seen = []
    monkeypatch.setattr(measure, "measure_speed", lambda model, size, bs, **kw: seen.append(kw) or Speed(size, 1, 1))
    measure_candidates(spec.time.candidates, cfgs, 10)
    assert (seen[0]["ema"], seen[0]["mix"]) == (False, None)  # resnet18: plain
    assert (seen[1]["ema"], seen[1]["mix"]) == (True, MixSpec(0.2, 1.0))  # the mobilenetv3 candidate
    # and measure_speed puts both into every timed training step
    counts = {"ema": 0, "mix": 0}
    real_update, real_mix = WeightEma.update, BatchMixer.__call__

    def update(self):
        counts["ema"] += 1
        real_update(self)

    def mix(self, x, t):
        counts["mix"] += 1
        return real_mix(self, x, t)

    monkeypatch.setattr(WeightEma, "update", update)
    monkeypatch.setattr(BatchMixer, "__call__", mix)
    torch.manual_seed(0)
    sp = measure_speed(build_model("resnet18", 3), 16, 4, device=torch.device("cpu"), steps=2, warmup=1, rounds=2,
                       ema=True, mix=MixSpec())
    assert counts == {"ema": 6, "mix": 6} and sp.train > 0  # 2 rounds x (1 warm-up + 2 timed steps)
    sp = measure_speed(build_model("resnet18", 3), 16, 4, device=torch.device("cpu"), steps=2, train=False)
    assert sp.train == 0.0 and sp.eval > 0  # inference only: no training rate
