"""Predictor: a bundle loaded for prediction, in a notebook or behind `python -m ensemble.predict`.

    p = Predictor.load("bundles/ham10000/majority-cv0.7404-20261202-004233")
    df = p.predict(["a.jpg", "b.jpg"])          # one row per image, one column per class
    p.predict_one(cv2.imread("c.jpg")[..., ::-1])  # an RGB array -> one row (a Series)

Each image takes training's path: decode, resize to the model's size (ensemble.data.images), the
eval augmentation (ensemble.data.datasets.to_input), each fold model with the run's TTA views and
softmax (ensemble.train.engine.predict), after the run's test-time adaptation if any
(ensemble.train.adapt); the fold predictions are averaged with their weights into each model's
prediction and the models voted by the submission's recipe (ensemble.vote.recipe). Models are built
with pretrained=False and loaded from the bundle: nothing is downloaded.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import torch

from ensemble.data.augment import build_transforms
from ensemble.data.datasets import to_input
from ensemble.models import build_model
from ensemble.predict.bundle import Bundle, ModelSpec, load_weights, read_bundle
from ensemble.predict.reader import Chunk, read_chunks, spool
from ensemble.predict.sources import image_id, list_images
from ensemble.train.adapt import Adaptation, adapt_model
from ensemble.train import engine
from ensemble.train.engine import resolve_device, resolve_precision
from ensemble.vote.recipe import combined, finish, outputs_labels, unused_models

@dataclass
class Predictions:
    """Rows start .. start + n - 1 of the input: the vote's values and what unreadable rows were given."""
    start: int
    values: np.ndarray  # (n, C) probabilities, or (n,) class indices when the vote ends in labels
    scores: np.ndarray | None  # (n,) the combined score / expected grade of label votes, else None
    bad: dict[int, str] = field(default_factory=dict)  # row (input index) -> reason; these got the priors


@dataclass
class _Model:
    spec: ModelSpec
    nets: list[tuple[float, torch.nn.Module]]  # (fold weight, model) per fold
    transform: object  # albumentations Compose (augment.eval) or None
    adapt: Adaptation


class Predictor:
    """A loaded bundle. Use Predictor.load(path)."""

    def __init__(self, bundle: Bundle, models: list[_Model], prec):
        self.bundle, self.models, self.prec = bundle, models, prec
        self.classes = bundle.classes
        self.recipe = bundle.recipe
        self.labels = outputs_labels(self.recipe)  # the vote ends in class indices (grades)
        self.fixed: list[list[tuple[float, torch.nn.Module]]] | None = None  # set by adapt_to

    @classmethod
    def load(cls, bundle: str | Path | Bundle, *, device: str = "auto", threads: int | None = None,
             adapt: str | None = None, verify: bool = True) -> "Predictor":
        """Read and check a bundle (folder or .zip), build every fold model on `device` (auto: CUDA
        when available). threads: torch's CPU threads; adapt: override every model's test-time
        adaptation (none, bn, tent); verify: check the weights' sha256 (read_bundle)."""
        if threads is not None:
            if threads < 1:
                raise ValueError(f"threads must be >= 1, got {threads}")
            torch.set_num_threads(threads)
        b = bundle if isinstance(bundle, Bundle) else read_bundle(bundle, verify=verify)
        unused = unused_models(b.recipe)
        dev = resolve_device(device)
        prec = resolve_precision(dev, "auto", channels_last=dev.type == "cuda")
        models = []
        for spec in b.models:
            how = Adaptation(**spec.adapt)
            if adapt is not None:
                how = replace(how, method=adapt)
            tf = build_transforms(spec.eval_augment, where=f"bundle model '{spec.name}' eval augmentation")
            nets = []  # none for a model the vote gives no weight: it is not run
            for f in ([] if len(models) in unused else spec.folds):
                net = build_model(**spec.build, pretrained=False)
                net.load_state_dict(load_weights(f.file), strict=True)
                net = net.to(dev).eval()
                nets.append((f.weight, net.to(memory_format=torch.channels_last) if prec.channels_last else net))
            models.append(_Model(spec, nets, tf if len(tf.transforms) else None, how))
        return cls(b, models, prec)

    # ------------------------------------------------------------ per chunk
    def _inputs(self, m: _Model, chunk: Chunk, rows: np.ndarray) -> torch.Tensor:
        imgs = chunk.images[m.spec.input_size]
        return torch.stack([to_input(imgs[i], m.transform) for i in rows])

    def _stack(self, chunk: Chunk, nets: list[list[tuple[float, torch.nn.Module]]]) -> np.ndarray:
        """(M, n_ok, W) per-model predictions of the chunk's readable rows (fold-weighted means)."""
        rows = np.flatnonzero(chunk.ok)
        width = 1 if self.recipe["ordinal"] else len(self.classes)
        out = np.zeros((len(self.models), len(rows), width), np.float32)
        if not len(rows):
            return out
        for i, (m, folds) in enumerate(zip(self.models, nets)):
            if not folds:
                continue  # weight 0 in the vote
            x = self._inputs(m, chunk, rows)
            acc = np.zeros((len(rows), width), np.float64)
            for weight, net in folds:
                acc += weight * engine.predict(net, [(x, None)], self.prec, tta=m.spec.tta,
                                                activation=m.spec.activation)
            out[i] = acc
        return out

    def _finish(self, start: int, ok: np.ndarray, bad: dict[int, str], stack: np.ndarray) -> Predictions:
        """The vote of the readable rows; unreadable rows get the training class priors."""
        pri = self.bundle.priors
        n = len(ok)
        raw = combined(self.recipe, stack) if stack.shape[1] else None
        if self.labels:
            values = np.full(n, int(np.argmax(pri)), np.int64)
            scores = np.full(n, float(pri @ np.arange(len(pri))), np.float32)
            if raw is not None:
                values[ok], scores[ok] = finish(self.recipe, raw), raw[:, 0]
            return Predictions(start, values, scores, {start + j: r for j, r in bad.items()})
        values = np.tile(pri.astype(np.float32), (n, 1))
        if raw is not None:
            values[ok] = finish(self.recipe, raw)
        return Predictions(start, values, None, {start + j: r for j, r in bad.items()})

    # ------------------------------------------------------------ whole inputs
    def _adapted(self, spooled) -> list[list[tuple[float, torch.nn.Module]]]:
        """Each fold model adapted by its Adaptation to the readable spooled images, in input order and
        in the adaptation's batches, as training adapted it to the test images (the model itself for none)."""
        rows = np.flatnonzero(spooled.ok)
        out = []
        for m in self.models:
            def batches(m=m):
                imgs, bs = spooled.images[m.spec.input_size], m.adapt.batch_size
                for a in range(0, len(rows), bs):
                    yield torch.stack([to_input(np.asarray(imgs[i]), m.transform) for i in rows[a:a + bs]])
            out.append([(w, adapt_model(net, batches, m.adapt, self.prec, m.spec.activation)) for w, net in m.nets])
        return out

    @property
    def adapts(self) -> bool:
        """True when some model adapts to the images it predicts (bundle's or load's `adapt`)."""
        return any(m.adapt.method != "none" for m in self.models)

    def adapt_to(self, images: Sequence, *, batch_size: int = 32, workers: int = 2) -> "Predictor":
        """Adapt every fold model once to `images` (paths or arrays; e.g. this month's scans; unreadable
        files are left out) and keep them so: later predict / predict_one calls use these models and
        adapt no more. -> self."""
        items = list(images)
        spooled = spool(items, sorted({m.spec.input_size for m in self.models}), batch_size, workers, "prior")
        try:
            self.fixed = self._adapted(spooled)
        finally:
            spooled.folder.cleanup()
        return self

    def _stacks(self, items: Sequence, batch_size: int, on_bad_image: str, workers: int, progress: bool
                ) -> Iterator[tuple[Chunk, np.ndarray]]:
        """(chunk, (M, n_ok, W) per-model predictions) in input order, after test-time adaptation (which
        first decodes every image into a temporary memmap: the adaptation pass and the predictions read it)."""
        sizes = sorted({m.spec.input_size for m in self.models})
        adapting = self.fixed is None and self.adapts
        if adapting and len(items) < 2:
            raise ValueError("test-time adaptation needs a set of images: call adapt_to(images) first, or load "
                             "the bundle with adapt='none'")
        spooled = spool(items, sizes, batch_size, workers, on_bad_image) if adapting else None
        bar = None
        try:
            nets = self._adapted(spooled) if adapting else (self.fixed or [m.nets for m in self.models])
            chunks = spooled.chunks(batch_size) if adapting else read_chunks(items, sizes, batch_size, workers,
                                                                             on_bad_image)
            if progress:
                from tqdm.auto import tqdm
                bar = tqdm(total=len(items), desc="predict", unit="img", dynamic_ncols=True, disable=None)
            for chunk in chunks:
                yield chunk, self._stack(chunk, nets)
                if bar is not None:
                    bar.update(len(chunk))
        finally:
            if bar is not None:
                bar.close()
            if spooled is not None:
                spooled.folder.cleanup()

    def iter_predict(self, items: Sequence, *, batch_size: int = 32, on_bad_image: str = "error",
                     workers: int = 2, progress: bool = False) -> Iterator[Predictions]:
        """Predictions for `items` (image paths or (H, W[, C]) uint8 RGB arrays), chunk by chunk in
        input order: memory stays flat. A vote that ranks rows against each other (rank) yields once,
        at the end."""
        held: list[tuple[Chunk, np.ndarray]] = []
        for chunk, stack in self._stacks(items, batch_size, on_bad_image, workers, progress):
            if self.recipe.get("row_wise", True):
                yield self._finish(chunk.start, chunk.ok, chunk.bad, stack)
            else:
                held.append((chunk, stack))
        if held:
            ok = np.concatenate([c.ok for c, _ in held])
            bad = {c.start + j: r for c, _ in held for j, r in c.bad.items()}
            yield self._finish(0, ok, bad, np.concatenate([s for _, s in held], axis=1))

    def predict_models(self, items: Sequence, *, batch_size: int = 32, on_bad_image: str = "error",
                       workers: int = 2) -> np.ndarray:
        """(M, N, W) each model's prediction (its folds' weighted mean) before the vote, in bundle.models
        order: W = the classes' probabilities (or 1 score); NaN rows for unreadable images, zeros for a
        model the vote gives weight 0 (hillclimb, weighted: it is not run)."""
        width = 1 if self.recipe["ordinal"] else len(self.classes)
        out = np.full((len(self.models), len(items), width), np.nan, np.float32)
        for chunk, stack in self._stacks(list(items), batch_size, on_bad_image, workers, False):
            out[:, chunk.start + np.flatnonzero(chunk.ok)] = stack
        return out

    def predict(self, images: Sequence | str | Path, *, ids: Sequence[str] | None = None, batch_size: int = 32,
                on_bad_image: str = "error", workers: int = 2, progress: bool = False) -> pd.DataFrame:
        """A DataFrame with one row per image (index: ids; default the file names without the
        competition's extension, or 0..N-1 for arrays) and one column per class (probabilities), or
        `label` and `score` when the vote ends in grades. images: paths, RGB arrays, or a folder."""
        if isinstance(images, (str, Path)):
            found, paths, _ = list_images(images, ext=self.bundle.meta.get("image_ext", ""))
            images, ids = paths, (found.tolist() if ids is None else ids)
        items = list(images)
        if ids is None:
            ext = self.bundle.meta.get("image_ext", "")
            ids = [i if isinstance(x, np.ndarray) else image_id(Path(x).name, ext) for i, x in enumerate(items)]
        if len(ids) != len(items):
            raise ValueError(f"ids has {len(ids)} entries for {len(items)} images")
        parts = list(self.iter_predict(items, batch_size=batch_size, on_bad_image=on_bad_image, workers=workers,
                                       progress=progress))
        index = pd.Index(list(ids), name=self.bundle.meta["id_col"])
        if not parts:
            return pd.DataFrame(index=index, columns=["label", "score"] if self.labels else self.classes)
        values = np.concatenate([p.values for p in parts])
        if self.labels:
            scores = np.concatenate([p.scores for p in parts])
            return pd.DataFrame({"label": np.asarray(self.classes, dtype=object)[values], "score": scores}, index=index)
        return pd.DataFrame(values, index=index, columns=self.classes)

    def predict_one(self, image) -> pd.Series:
        """One image (a path or an RGB array) -> its row of predict()."""
        return self.predict([image], ids=[0 if isinstance(image, np.ndarray) else Path(image).stem]).iloc[0]
