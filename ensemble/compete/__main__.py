import sys

from ensemble.compete.run import main

if __name__ == "__main__":
    sys.exit(main())
