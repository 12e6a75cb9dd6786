"""`python -m ensemble.export`: the command (in __main__.py) over ensemble.predict.export."""
