"""MixUp/CutMix (timm's Mixup) and the weight EMA (timm's ModelEmaV3) in the fold trainer."""
import numpy as np
import pytest
import torch

from ensemble.data.augment import build_transforms
from ensemble.data.datasets import CachedDataset, make_loader
from ensemble.models import build_model
from ensemble.models.weights import load_torch
from ensemble.train import fold as fold_mod
from ensemble.train.ema import WeightEma
from ensemble.train.engine import Precision, predict
from ensemble.train.fold import FoldInputs, FoldTrainer
from ensemble.train.losses import build_loss
from ensemble.train.mix import BatchMixer, MixSpec
from ensemble.train.plan import FoldPlan, Stage

N, C, S = 24, 3, 16


def _inputs(seed: int = 0, augment: str = "light") -> FoldInputs:
    rng = np.random.default_rng(seed)
    y = np.arange(N) % C
    images = rng.integers(0, 60, size=(N, S, S, 3), dtype=np.uint8)
    images[np.arange(N), :, :, y] += 150  # class k: colour channel k
    return FoldInputs(train_images=images, test_images=images[:4], train_idx=np.arange(8, N), val_idx=np.arange(8),
                      test_idx=np.arange(4), y=y, n_classes=C, train_tf=build_transforms(augment),
                      eval_tf=build_transforms("none"))


def _model(seed: int = 0):
    torch.manual_seed(seed)
    return build_model("resnet18", C, head_hidden=[8], head_batchnorm=True)


def _plan(stages, **kw) -> FoldPlan:
    return FoldPlan(stages=stages, num_workers=0, metric="accuracy", **{"batch_size": 8, "keep_last": True, **kw})


class _Recorder(torch.nn.Module):
    """Records the targets every loss call gets."""

    def __init__(self, loss):
        super().__init__()
        self.loss, self.calls = loss, []

    def forward(self, logits, targets):
        self.calls.append(targets.detach().cpu().clone())
        return self.loss(logits, targets)


def test_mixed_targets_sum_to_one_and_odd_batches_keep_a_row_unmixed():
    torch.manual_seed(0)
    mixer = BatchMixer(MixSpec(mixup_alpha=0.4, cutmix_alpha=1.0, label_smoothing=0.1), n_classes=4)
    mixer.reseed(0)
    x = torch.randint(0, 256, (9, 3, 8, 8), dtype=torch.uint8)
    t = torch.nn.functional.one_hot(torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 2]), 4).float()
    mixed_x, mixed_t = mixer(x, t)
    assert mixed_x.dtype == torch.float32 and mixed_t.shape == (9, 4)
    torch.testing.assert_close(mixed_t.sum(1), torch.ones(9))
    assert (mixed_t[:8] > 0.5).sum() < 8 or not torch.equal(mixed_x[:8], x[:8].float())  # something mixed
    # row 8 (the odd one) is only smoothed: 0.9 + 0.1 / 4 on its class, and its pixels are unchanged
    torch.testing.assert_close(mixed_t[8], torch.tensor([0.025, 0.025, 0.925, 0.025]))
    assert torch.equal(mixed_x[8], x[8].float())
    # weighted rows keep their weight through mixing: a pair of weights 2 and 2 stays 2
    mixer.reseed(1)
    _, w = mixer(x[:2], 2 * t[:2])
    torch.testing.assert_close(w.sum(1), torch.full((2,), 2.0))


def test_mix_only_in_stages_with_mix_and_never_on_cached_features(tmp_path):
    data = _inputs(augment="none")
    stages = [Stage(1, "head", augment=False, mix=True),  # cached features: never mixed
              Stage(1, "all", mix=False), Stage(1, "all", mix=True)]
    trainer = FoldTrainer(_plan(stages, mix=MixSpec(mixup_alpha=1.0, cutmix_alpha=0.0)), 0, _model(), data,
                          Precision(torch.device("cpu")), tmp_path / "fold0")
    rec = trainer.loss_fn = _Recorder(trainer.loss_fn)
    trainer.run()
    per_stage = [torch.cat(rec.calls[i * 2:(i + 1) * 2]) for i in range(3)]  # 16 rows = 2 batches per stage
    assert [len(t) for t in per_stage] == [16, 16, 16]
    for t in per_stage[:2]:  # one-hot rows
        assert set(t.unique().tolist()) == {0.0, 1.0}
        torch.testing.assert_close(t.sum(1), torch.ones(16))
    mixed = per_stage[2]
    torch.testing.assert_close(mixed.sum(1), torch.ones(16))
    assert ((mixed > 0) & (mixed < 1)).any()  # MixUp with alpha 1: soft rows


def test_ema_weights_differ_from_the_live_ones_and_are_saved_and_predicted(tmp_path):
    data = _inputs()
    lrs = {"backbone": 1e-3, "head": 1e-2}
    plan = _plan([Stage(1, "all", lrs)], batch_size=4, make_ema=lambda m: WeightEma(m, decay=0.7, warmup=False),
                 keep_last=True)
    model = _model()
    trainer = FoldTrainer(plan, 0, model, data, Precision(torch.device("cpu")), tmp_path / "fold0")
    trainer.run()
    last = load_torch(tmp_path / "fold0" / "last.pt")
    best = load_torch(tmp_path / "fold0" / "best.pt")
    live, ema = last["model"], last["ema"]["module"]
    assert last["ema"]["step"] == 4  # four optimizer steps (16 rows, batch 4)
    name = "head.0.weight"
    assert not torch.allclose(live[name], ema[name])  # the average lags the live weights
    for k, v in best["model"].items():  # the validated (and saved) weights are the EMA's
        assert torch.equal(v, ema[k]), k
    preds = np.load(tmp_path / "fold0" / "preds.npz")
    loader = make_loader(CachedDataset(data.train_images, data.val_idx), 16, shuffle=False, num_workers=0,
                         pin_memory=False)
    net = _model()
    net.load_state_dict(ema)
    np.testing.assert_allclose(preds["val"], predict(net, loader, Precision(torch.device("cpu"))), atol=1e-6)
    net.load_state_dict(live)
    assert np.abs(preds["val"] - predict(net, loader, Precision(torch.device("cpu")))).max() > 1e-4


def test_resume_restores_the_ema(tmp_path, monkeypatch):
    plan = _plan([Stage(3, "all")], make_ema=lambda m: WeightEma(m, decay=0.8, warmup=True), keep_last=True)
    FoldTrainer(plan, 0, _model(), _inputs(), Precision(torch.device("cpu")), tmp_path / "a").run()
    real, calls = fold_mod.train_one_epoch, {"n": 0}

    def crash_on_third_epoch(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed")
        return real(*a, **kw)

    monkeypatch.setattr(fold_mod, "train_one_epoch", crash_on_third_epoch)
    with pytest.raises(KeyboardInterrupt):
        FoldTrainer(plan, 0, _model(), _inputs(), Precision(torch.device("cpu")), tmp_path / "b").run()
    assert load_torch(tmp_path / "b" / "last.pt")["ema"]["step"] == 4
    monkeypatch.setattr(fold_mod, "train_one_epoch", real)
    torch.manual_seed(123)  # resuming restores the RNG state of last.pt
    FoldTrainer(plan, 0, _model(seed=5), _inputs(), Precision(torch.device("cpu")), tmp_path / "b").run(resume=True)
    a, b = load_torch(tmp_path / "a" / "last.pt"), load_torch(tmp_path / "b" / "last.pt")
    assert b["ema"]["step"] == a["ema"]["step"] == 6
    for k, v in a["ema"]["module"].items():
        torch.testing.assert_close(b["ema"]["module"][k], v, rtol=1e-4, atol=1e-5, msg=k)


def test_training_targets_are_the_parts_rows_then_the_extra_rows():
    data = _inputs()
    table = data.train_targets()
    np.testing.assert_array_equal(table, np.eye(C, dtype=np.float32)[data.y[8:]])  # one-hot of the training part
    teacher = np.full((N, C), 1 / C, np.float32)
    extra = np.array([[0.0, 2.0, 0.0]], np.float32)  # one extra row of weight 2
    soft = FoldInputs(**{**data.__dict__, "targets": teacher, "extra_images": data.train_images[:1],
                         "extra_targets": extra})
    table = soft.train_targets()
    assert table.shape == (17, C)
    np.testing.assert_array_equal(table[:16], teacher[8:])
    np.testing.assert_array_equal(table[16], extra[0])
