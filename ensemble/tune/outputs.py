"""What a study writes after every trial: trials.csv, history.png, importance.png, and where
<model>.best.yaml goes."""
from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Sequence

import optuna
import pandas as pd
from optuna.trial import TrialState

from ensemble.artifacts import atomic_path

logger = logging.getLogger(__name__)


def trials_frame(trials: Sequence[optuna.trial.FrozenTrial]) -> pd.DataFrame:
    """One row per trial: number, state, value, seconds, epochs trained, worker, then the params."""
    rows = []
    for t in trials:
        w = t.user_attrs.get("worker") or {}
        row = {"number": t.number, "state": t.state.name, "value": t.value,
               "seconds": t.user_attrs.get("seconds"), "epochs_trained": t.user_attrs.get("epochs_trained"),
               "worker": f"{w.get('host')}:{w.get('pid')}" if w else None, "retry_of": t.user_attrs.get("retry_of")}
        row.update({f"param:{k}": str(v) if isinstance(v, (list, dict)) else v
                    for k, v in (t.user_attrs.get("overrides") or t.params).items()})
        rows.append(row)
    return pd.DataFrame(rows)


def write_plots(study: optuna.Study, out_dir: Path) -> None:
    """history.png (value per trial, best so far) and importance.png (fANOVA; needs 2+ completed trials)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    plots = {"history.png": ovm.plot_optimization_history} if done else {}
    if len(done) >= 2 and len({tuple(sorted(map(str, t.params.items()))) for t in done}) >= 2:
        plots["importance.png"] = ovm.plot_param_importances
    for name, fn in plots.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = fn(study)
            ax.set_title(f"{study.study_name}: {ax.get_title().lower().replace(' plot', '')}")
            fig = ax.figure
            fig.set_size_inches(8, 5)
            fig.tight_layout()
            with atomic_path(out_dir / name) as tmp:
                fig.savefig(tmp, format="png", dpi=100)
            plt.close(fig)
        except (ValueError, RuntimeError) as e:  # e.g. importances of a space with one point
            logger.info(f"{name}: not drawn ({e})")


def best_config_path(cfg_path: str | Path, best_dir: str | Path | None = None) -> Path:
    """configs/<competition>/<model>.yaml -> configs/<competition>/<model>.best.yaml (or in best_dir)."""
    cfg_path = Path(cfg_path)
    return (Path(best_dir) if best_dir else cfg_path.parent) / f"{cfg_path.name.split('.')[0]}.best.yaml"
