import sys

from ensemble.vote.voter import main

if __name__ == "__main__":
    sys.exit(main())
