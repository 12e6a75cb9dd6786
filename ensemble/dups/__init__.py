"""`python -m ensemble.dups`: the command (in __main__.py) over ensemble.data.dups."""
