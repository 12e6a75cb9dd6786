"""Competition data: labels and image paths, folds, the image cache, datasets, augmentation, duplicates."""
