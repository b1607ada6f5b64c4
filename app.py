"""ELGAN Studio app (not built yet)."""

import sys

if __name__ == "__main__":
    sys.exit("ELGAN Studio's app is not built yet; see the README.")
