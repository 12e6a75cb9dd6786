import sys

from ensemble.train.run import main

if __name__ == "__main__":
    sys.exit(main())
