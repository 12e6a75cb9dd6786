import sys

from ensemble.report.page import main

if __name__ == "__main__":
    sys.exit(main())
