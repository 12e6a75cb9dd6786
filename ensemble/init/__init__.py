"""`python -m ensemble.init --data DIR`: a new competition's configs from a Kaggle download (detect.py
infers, template.py writes)."""
