"""K-fold training of one model: losses, optimizers, the epoch engine, the fold trainer, the run."""
