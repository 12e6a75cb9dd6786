"""The artifact contract: where every file lives (paths) and how it is written and read (io)."""
from ensemble.artifacts.io import (atomic_path, atomic_write_csv, atomic_write_json, atomic_write_text,
                                   competition_cfg, file_hash, probs_frame, read_metrics, read_probs, split_probs,
                                   write_probs)
from ensemble.artifacts.paths import (PROB_FORMATS, CompetitionPaths, FoldPaths, PathEscapeError, RunPaths, RunsError,
                                      find_runs, fold_name, inside, is_run)

__all__ = ["PROB_FORMATS", "CompetitionPaths", "FoldPaths", "RunPaths", "RunsError", "atomic_path",
           "atomic_write_csv", "atomic_write_json", "atomic_write_text", "competition_cfg", "file_hash", "find_runs",
           "fold_name", "inside", "is_run", "PathEscapeError", "probs_frame", "read_metrics", "read_probs", "split_probs", "write_probs"]
