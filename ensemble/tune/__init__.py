"""Hyperparameter search with Optuna over train_run: search space, study storage, the tuner."""
