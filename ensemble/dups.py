"""`python -m ensemble.dups`: near-duplicate images of a competition (ensemble.data.dups does the work)."""
import sys

from ensemble.data.dups import main

if __name__ == "__main__":
    sys.exit(main())
