"""The competition's own metric: metric parameters, plugins, AUC on a subset sample, QWK grades."""
import json
import textwrap
import uuid

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import f1_score, recall_score, roc_auc_score

from ensemble.metrics import METRICS, bind_metric, get_metric, metric_text, parse_metric, score, score_labels
from ensemble.vote import Objective, Spec, cross_validate, expected_grade
from ensemble.artifacts import RunPaths, atomic_write_json, file_hash, probs_frame, write_probs
from ensemble.train.assemble import assemble_run
from ensemble.data.competition import load_competition
from ensemble.config import ConfigError, dump_config, load_config
from ensemble.metric_spec import MetricSpec, parse
from ensemble.plugins import PluginError, load_plugins
from ensemble.vote.voter import build_specs, decodes_grades

CLASSES = ["AKIEC", "BCC", "MEL", "NV"]


def data(n=200, c=4, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    logits = rng.normal(size=(n, c))
    logits[np.arange(n), y] += 1.0
    p = np.exp(logits)
    return y, (p / p.sum(1, keepdims=True)).astype(np.float32)


# ---------------------------------------------------------------- text form
@pytest.mark.parametrize("value, text", [
    ("roc_auc", "roc_auc"),
    ({"name": "roc_auc"}, "roc_auc"),
    ({"name": "roc_auc", "classes": ["MEL", "NV"]}, "roc_auc[classes=MEL,NV]"),
    ("roc_auc[classes=MEL, NV]", "roc_auc[classes=MEL,NV]"),
    ({"name": "roc_auc", "classes": "MEL"}, "roc_auc[classes=MEL]"),
    ({"name": "macro_f1", "weights": {"MEL": 2, "NV": 1.5}}, "macro_f1[weights=MEL:2,NV:1.5]"),
    ({"name": "balanced_accuracy", "weights": [1, 2.0, 1, 1]}, "balanced_accuracy[weights=1,2,1,1]"),
    ({"name": "roc_auc", "weights": [2, 1], "classes": ["NV", "MEL"]}, "roc_auc[classes=NV,MEL;weights=2,1]"),
    ({"name": "macro_f1", "classes": [0, 2]}, "macro_f1[classes=0,2]"),
])
def test_text_form_is_canonical_and_round_trips(value, text):
    spec = parse_metric(value)
    assert spec.text == str(spec) == text == metric_text(text)
    assert parse(text) == spec and hash(parse(text)) == hash(spec)


def test_binding_puts_classes_in_class_order():
    spec = bind_metric("roc_auc[classes=NV,MEL;weights=2,1]", CLASSES)
    assert spec.text == "roc_auc[classes=MEL,NV;weights=1,2]" and spec.classes == tuple(CLASSES)
    assert bind_metric({"name": "roc_auc", "classes": ["NV", "MEL"]}, CLASSES) == bind_metric(
        "roc_auc[classes=MEL,NV]", CLASSES)


def test_config_accepts_a_mapping_and_stores_the_text(tmp_path):
    (tmp_path / "m.yaml").write_text("competition: {name: c, root: r, metric: {name: roc_auc, classes: [MEL, NV]}}\n")
    cfg = load_config(tmp_path / "m.yaml")
    assert cfg.competition.metric == "roc_auc[classes=MEL,NV]"
    (tmp_path / "again.yaml").write_text(dump_config(cfg))
    assert load_config(tmp_path / "again.yaml").competition.metric == "roc_auc[classes=MEL,NV]"
    assert load_config(tmp_path / "m.yaml", ["competition.metric=macro_f1[weights=MEL:2]"]).competition.metric \
        == "macro_f1[weights=MEL:2]"


# ---------------------------------------------------------------- bad input
def _available():
    return ", ".join(METRICS)


BAD = [
    ("f2", lambda: f"unknown metric 'f2'; available: {_available()} (a metric of your own: --plugin FILE.py)"),
    ("roc_auc[classes=MEL,XX]", "metric 'roc_auc[classes=MEL,XX]': unknown class 'XX' in classes; "
                                "classes: AKIEC, BCC, MEL, NV"),
    ({"name": "macro_f1", "weights": {"MEL": 2, "nv": 1}}, "metric 'macro_f1[weights=MEL:2,nv:1]': unknown "
                                                           "class 'nv' in weights; classes: AKIEC, BCC, MEL, NV"),
    ({"name": "macro_f1", "weights": [2, 1]}, "metric 'macro_f1[weights=2,1]': weights has 2 values, expected 4 "
                                              "(one per class: AKIEC, BCC, MEL, NV)"),
    ("roc_auc[classes=MEL,NV;weights=1,2,3]", "metric 'roc_auc[classes=MEL,NV;weights=1,2,3]': weights has 3 "
                                              "values, expected 2 (one per class: MEL, NV)"),
    ("roc_auc[weights=MEL:-1]", "metric 'roc_auc[weights=MEL:-1]': weights must be finite and >= 0, got -1"),
    ("roc_auc[weights=MEL:0,NV:0]", "metric 'roc_auc[weights=MEL:0,NV:0]': weights must not all be 0"),
    ("roc_auc[weights=MEL:x]", "metric 'roc_auc[weights=MEL:x]': weights must be numbers, got 'x'"),
    ("roc_auc[classes=MEL,MEL]", "metric 'roc_auc[classes=MEL,MEL]': class 'MEL' listed twice in classes"),
    ("roc_auc[classes]", "metric 'roc_auc[classes]': parameter 'classes' is not key=value"),
    ("roc_auc[classes=MEL", "metric 'roc_auc[classes=MEL' is not a name or name[key=value;...] "
                            "(e.g. roc_auc[classes=A,B])"),
    ({"name": "qwk", "classes": ["MEL"]}, "metric 'qwk' takes no parameter 'classes' (it has no per-class "
                                          "scores); parameters: none"),
    ({"name": "roc_auc", "beta": 2}, "metric 'roc_auc' takes no parameter 'beta'; parameters: classes, weights"),
    ({"classes": ["MEL"]}, "a metric mapping needs 'name' (e.g. {name: roc_auc, classes: [A, B]}), got keys: classes"),
    ({"name": "roc_auc", "classes": ["a,b"]}, "metric class name 'a,b' cannot be written in the metric's text "
                                              "form (it must be non-empty and contain none of [ ] ; = , :)"),
    ({"name": "roc_auc", "classes": []}, "metric parameter 'classes': empty list"),
    (3, "expected a metric name or a mapping with 'name' (e.g. {name: roc_auc, classes: [A, B]}), got int 3"),
]


@pytest.mark.parametrize("value, message", BAD)
def test_bad_metric_input(value, message):
    message = message() if callable(message) else message
    with pytest.raises(ValueError) as e:
        bind_metric(value, CLASSES)
    assert str(e.value) == message


def test_bad_metric_in_config_names_file_and_key(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("competition: {name: c, root: r, metric: {name: qwk, classes: [MEL]}}\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value) == (f"{path}: key 'competition.metric': metric 'qwk' takes no parameter 'classes' "
                            f"(it has no per-class scores); parameters: none")


def test_scoring_a_spec_that_names_classes_needs_binding():
    y, p = data()
    with pytest.raises(ValueError) as e:
        score("roc_auc[classes=MEL,NV]", y, p)
    assert str(e.value) == ("metric 'roc_auc[classes=MEL,NV]' names classes: bind it to the competition's "
                            "classes first (MetricSpec.bind or metrics.bind_metric)")
    with pytest.raises(ValueError, match=r"weights has 3 values, expected 4 \(one per class: 0, 1, 2, 3\)"):
        score("roc_auc[weights=1,2,3]", y, p)  # a weight list needs no names, but one per class


# ---------------------------------------------------------------- numbers
def test_auc_over_a_subset_equals_sklearn_on_those_columns():
    y, p = data()
    spec = bind_metric({"name": "roc_auc", "classes": ["MEL", "NV"]}, CLASSES)
    want = np.mean([roc_auc_score(y == c, p[:, c]) for c in (2, 3)])
    assert score(spec, y, p) == pytest.approx(want, abs=1e-12)
    assert spec.score_outputs("classification", y, p) == pytest.approx(want, abs=1e-12)
    assert spec.score(y, p) == pytest.approx(want, abs=1e-12) and spec.higher_is_better
    assert score("roc_auc", y, p) == pytest.approx(roc_auc_score(y, p, multi_class="ovr"))
    # all classes with equal weights is the plain metric
    assert score(bind_metric("roc_auc[classes=AKIEC,BCC,MEL,NV]", CLASSES), y, p) == pytest.approx(score("roc_auc", y, p))


def test_weighted_per_class_metrics():
    y, p = data(seed=1)
    pred = p.argmax(1)
    rec = recall_score(y, pred, average=None)
    spec = bind_metric({"name": "balanced_accuracy", "weights": {"MEL": 2, "NV": 1}}, CLASSES)
    assert score(spec, y, p) == pytest.approx((2 * rec[2] + rec[3]) / 3)
    assert score_labels(spec, y, pred) == pytest.approx((2 * rec[2] + rec[3]) / 3)
    # support weights reproduce sklearn's average="weighted"
    support = np.bincount(y, minlength=4).tolist()
    f1w = bind_metric({"name": "macro_f1", "weights": support}, CLASSES)
    assert score(f1w, y, p) == pytest.approx(f1_score(y, pred, average="weighted"))
    aucw = bind_metric("roc_auc[classes=BCC,NV;weights=3,1]", CLASSES)
    aucs = [roc_auc_score(y == c, p[:, c]) for c in range(4)]
    assert score(aucw, y, p) == pytest.approx((3 * aucs[1] + aucs[3]) / 4)
    assert score("macro_f1[weights=1,1,1,1]", y, p) == pytest.approx(score("macro_f1", y, p))


def test_a_class_absent_from_the_rows_is_left_out_and_weights_renormalised():
    y = np.array([0, 0, 1, 1])  # MEL (2) and NV (3) absent
    pred = np.array([0, 1, 1, 1])
    spec = bind_metric({"name": "balanced_accuracy", "weights": {"AKIEC": 1, "BCC": 3, "MEL": 5}}, CLASSES)
    assert score_labels(spec, y, pred, 4) == pytest.approx((1 * 0.5 + 3 * 1.0) / 4)
    assert np.isnan(score_labels(bind_metric("balanced_accuracy[classes=MEL,NV]", CLASSES), y, pred, 4))


def test_auc_defaults_to_the_sample_submissions_subset(tmp_path):
    assert bind_metric("roc_auc", CLASSES, scored=["MEL", "NV"]).text == "roc_auc[classes=MEL,NV]"
    assert bind_metric("roc_auc", CLASSES, scored=CLASSES).text == "roc_auc"
    assert bind_metric("roc_auc[classes=NV]", CLASSES, scored=["MEL", "NV"]).text == "roc_auc[classes=NV]"
    assert bind_metric("log_loss", CLASSES, scored=["MEL", "NV"]).text == "log_loss"
    assert bind_metric("roc_auc", CLASSES, scored=["label"]).text == "roc_auc"  # a label column
    # ISIC 2017: three classes, the sample scores two of them (in its own column order)
    root = tmp_path / "isic"
    root.mkdir()
    pd.DataFrame({"id": ["a", "b", "c"], "label": ["nevus", "melanoma", "seborrheic_keratosis"]}).to_csv(
        root / "train.csv", index=False)
    pd.DataFrame({"id": ["t1"], "seborrheic_keratosis": [0.5], "melanoma": [0.5]}).to_csv(
        root / "sample_submission.csv", index=False)
    (tmp_path / "c.yaml").write_text(f"competition: {{name: isic, root: {root}, ext: .jpg, metric: roc_auc, "
                                     f"classes: [melanoma, nevus, seborrheic_keratosis]}}\n")
    comp = load_competition(load_config(tmp_path / "c.yaml").competition)
    assert comp.classes == ["melanoma", "nevus", "seborrheic_keratosis"]
    assert str(comp.metric) == "roc_auc[classes=melanoma,seborrheic_keratosis]"
    assert comp.metric.classes == ("melanoma", "nevus", "seborrheic_keratosis")


def test_unknown_class_in_config_is_a_competition_error(tmp_path):
    root = tmp_path / "c"
    root.mkdir()
    pd.DataFrame({"id": ["a", "b"], "label": ["x", "y"]}).to_csv(root / "train.csv", index=False)
    pd.DataFrame({"id": ["t"], "label": ["x"]}).to_csv(root / "sample_submission.csv", index=False)
    (tmp_path / "c.yaml").write_text(f"competition: {{name: c, root: {root}, metric: 'macro_f1[classes=x,z]'}}\n")
    with pytest.raises(ValueError) as e:
        load_competition(load_config(tmp_path / "c.yaml").competition)
    assert str(e.value) == ("competition 'c': competition.metric: metric 'macro_f1[classes=x,z]': unknown class "
                            "'z' in classes; classes: x, y")


def test_metrics_json_stores_the_spec_text(tmp_path):
    run = tmp_path / "runs" / "comp" / "r"
    y, p = data(n=40)
    folds = np.arange(40) % 2
    for k in (0, 1):
        (run / f"fold{k}").mkdir(parents=True)
        idx = np.flatnonzero(folds == k)
        np.savez(run / f"fold{k}" / "preds.npz", val_idx=idx, val=p[idx], test=p[:3])
        (run / f"fold{k}" / "result.json").write_text(json.dumps({"seconds": 1.0}))
    out = assemble_run(run, fmt="csv", ids=np.array([f"i{i}" for i in range(40)]), test_ids=np.array(["a", "b", "c"]),
                       y=y, folds=folds, classes=CLASSES, metric={"name": "roc_auc", "classes": ["MEL", "NV"]},
                       task="classification", folds_hash="h")
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["metric"] == out["metric"] == "roc_auc[classes=MEL,NV]"
    assert saved["cv"] == pytest.approx(np.mean([roc_auc_score(y == c, p[:, c]) for c in (2, 3)]))


# ---------------------------------------------------------------- plugins
@pytest.fixture(autouse=True)
def _registry_restored():
    """Plugin metrics registered by a test do not outlive it (other tests list the registry)."""
    from ensemble import plugins
    metrics, loaded = dict(METRICS), dict(plugins._LOADED)
    yield
    METRICS.clear()
    METRICS.update(metrics)
    plugins._LOADED.clear()
    plugins._LOADED.update(loaded)


def write_plugin(tmp_path, body: str, name: str = "my_metric.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def test_plugin_metric_bound_with_parameters_and_in_the_config(tmp_path):
    name = f"fbeta_{uuid.uuid4().hex[:8]}"
    path = write_plugin(tmp_path, f"""
        from sklearn.metrics import fbeta_score
        from ensemble.metrics import register_metric

        @register_metric("{name}", greater_is_better=True, needs="label")
        def fbeta(y, pred, n_classes, beta=1.0):
            return fbeta_score(y, pred, beta=beta, average="macro", zero_division=0)
    """)
    assert load_plugins([path, path])  # the same file twice: imported once
    y, p = data(seed=2)
    from sklearn.metrics import fbeta_score
    want = fbeta_score(y, p.argmax(1), beta=2, average="macro")
    assert bind_metric(f"{name}[beta=2]", CLASSES).score_outputs("classification", y, p) == pytest.approx(want)
    assert bind_metric({"name": name, "beta": 2}, CLASSES).score(y, p) == pytest.approx(want)
    assert bind_metric(name, CLASSES).score(y, p) == pytest.approx(f1_score(y, p.argmax(1), average="macro"))
    (tmp_path / "c.yaml").write_text(f"competition: {{name: c, root: r, metric: {{name: {name}, beta: 0.5}}}}\n")
    assert load_config(tmp_path / "c.yaml").competition.metric == f"{name}[beta=0.5]"
    with pytest.raises(ValueError) as e:
        get_metric({"name": name, "gamma": 1})
    assert str(e.value) == f"metric '{name}' takes no parameter 'gamma'; parameters: beta"


@pytest.mark.parametrize("body, message", [
    ("raise RuntimeError('boom')\n", "import failed: RuntimeError: boom"),
    ("def broken(:\n", "import failed: SyntaxError: "),
    ("from ensemble.metrics import register_metric\n"
     "@register_metric('accuracy', greater_is_better=True, needs='label')\n"
     "def acc(y, pred, n_classes):\n    return 1.0\n",
     "import failed: ValueError: metric 'accuracy' is already registered (by ensemble.metrics.builtin); choose another name"),
    ("from ensemble.metrics import register_metric\n"
     "@register_metric('two_args', greater_is_better=True, needs='label')\n"
     "def f(y, pred):\n    return 1.0\n",
     "import failed: ValueError: metric 'two_args': f must take (y_true, pred, n_classes, **params)"),
])
def test_plugin_that_fails_to_import(tmp_path, body, message):
    path = write_plugin(tmp_path, body, f"bad_{uuid.uuid4().hex[:6]}.py")
    with pytest.raises(PluginError) as e:
        load_plugins([path])
    assert str(e.value).startswith(f"--plugin {path}: {message}")


def test_plugin_file_missing_or_not_python(tmp_path):
    with pytest.raises(PluginError) as e:
        load_plugins([tmp_path / "nope.py"])
    assert str(e.value) == f"--plugin {tmp_path / 'nope.py'}: file not found"
    (tmp_path / "m.yaml").write_text("x: 1\n")
    with pytest.raises(PluginError) as e:
        load_plugins([tmp_path / "m.yaml"])
    assert str(e.value) == f"--plugin {tmp_path / 'm.yaml'}: expected a Python file ending in .py"


@pytest.mark.parametrize("module", ["ensemble.vote.__main__", "ensemble.tune.__main__"])
def test_cli_plugin_errors_exit_2(tmp_path, capsys, module):
    import importlib
    main = importlib.import_module(module).main
    missing = tmp_path / "missing.py"
    args = ["--competition", "x"] if module == "ensemble.vote.__main__" else ["--cfg", str(tmp_path / "none.yaml")]
    assert main(args + ["--plugin", str(missing)]) == 2
    assert capsys.readouterr().err.strip() == f"error: --plugin {missing}: file not found"


# ---------------------------------------------------------------- QWK: expected grade + thresholds
def ordinal_problem(n=500, c=5, seed=0):
    """Grades 0..4; class probabilities from a noisy latent grade, skewed towards the middle grades
    (argmax under-predicts the ends, the expected grade keeps the order)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    z = y + rng.normal(0, 0.8, n)
    stack = []
    for _ in range(2):
        zz = z + rng.normal(0, 0.3, n)
        logits = -((zz[:, None] - np.arange(c)) ** 2) / 3.0
        p = np.exp(logits) * np.array([1, 2, 4, 2, 1.0])
        stack.append(p / p.sum(1, keepdims=True))
    return y, np.stack(stack).astype(np.float32), np.arange(n) % 3


def test_expected_grade_with_thresholds_beats_argmax_for_qwk():
    y, oof, folds = ordinal_problem()
    obj = Objective(bind_metric("qwk", range(5)))
    argmax, _ = cross_validate(Spec("mean"), oof, y, folds, obj)
    grade, fitted = cross_validate(Spec("mean", tune=True, grade=True), oof, y, folds, obj)
    assert grade.score >= argmax.score + 0.1  # nested: thresholds fitted on the other folds
    assert fitted.post.shape == (4,) and np.all(np.diff(fitted.post) > 0)
    labels = fitted.finish(fitted.predict(oof), 5)
    assert labels.shape == (500,) and set(np.unique(labels)) <= set(range(5))
    assert expected_grade(np.array([[0.5, 0.0, 0.5], [0.0, 2.0, 2.0]])).ravel().tolist() == [1.0, 1.5]


def test_grade_variants_only_for_grade_metrics_on_class_probabilities():
    qwk = bind_metric("qwk", CLASSES)
    assert decodes_grades(qwk, ordinal=False) and not decodes_grades(qwk, ordinal=True)
    assert not decodes_grades(bind_metric("balanced_accuracy", CLASSES), ordinal=False)
    specs, _ = build_specs("mean,hillclimb", None, "auto", False, 10, 1.0, grades=True)
    assert [s.name() for s in specs] == ["mean", "mean+grade", "mean+grade+thr",
                                         "hillclimb", "hillclimb+grade", "hillclimb+grade+thr"]
    specs, _ = build_specs("mean", None, "off", False, 10, 1.0, grades=True)
    assert [s.name() for s in specs] == ["mean", "mean+grade"]
    specs, _ = build_specs("mean", None, "auto", False, 10, 1.0)
    assert [s.name() for s in specs] == ["mean"]


def test_vote_picks_grade_thresholds_for_qwk_classification_runs(tmp_path, monkeypatch, capsys):
    from ensemble.vote.__main__ import main
    monkeypatch.chdir(tmp_path)
    y, oof, folds = ordinal_problem(n=300)
    classes = [str(k) for k in range(5)]
    ids = np.array([f"tr{i:03d}" for i in range(300)])
    root = tmp_path / "data"
    root.mkdir()
    pd.DataFrame({"id": ids, "label": y.astype(str)}).to_csv(root / "train.csv", index=False)
    test_ids = [f"te{i}" for i in range(6)]
    pd.DataFrame({"id": test_ids, "diagnosis": "0"}).to_csv(root / "sample_submission.csv", index=False)
    comp = tmp_path / "runs" / "aptos"
    comp.mkdir(parents=True)
    pd.DataFrame({"id": ids, "fold": folds}).to_csv(comp / "folds.csv", index=False)
    for i, name in enumerate(["a", "b"]):
        paths = RunPaths(comp / name, "csv")
        write_probs(paths.oof, probs_frame(ids, oof[i], classes, folds))
        write_probs(paths.test, probs_frame(np.array(test_ids), oof[i][:6], classes))
        (comp / name / "config.yaml").write_text(yaml.safe_dump(
            {"competition": {"name": "aptos", "root": str(root), "metric": "qwk"}}))
        atomic_write_json(paths.metrics, {"run": name, "competition": "aptos", "metric": "qwk", "classes": classes,
                                          "task": "classification", "folds_hash": file_hash(comp / "folds.csv")})
    assert main(["--competition", "aptos", "--method", "mean"]) == 0
    out = capsys.readouterr().out
    assert "mean+grade+thr" in out and "* mean+grade+thr" in out
    manifest = json.loads(next((tmp_path / "submissions" / "aptos").glob("*.json")).read_text())
    assert manifest["method"] == "mean+grade+thr" and len(manifest["thresholds"]) == 4
    from ensemble.artifacts.provenance import repo_root
    sub = pd.read_csv(repo_root() / manifest["submission"]["path"], dtype=str)  # manifests: relative to the repo root
    assert list(sub.columns) == ["id", "diagnosis"] and set(sub["diagnosis"]) <= set(classes)
