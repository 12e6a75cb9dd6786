import sys

from ensemble.tune.tuner import main

if __name__ == "__main__":
    sys.exit(main())
