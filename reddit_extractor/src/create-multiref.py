#!/usr/bin/env python
"""create-multiref.py: the multi-reference test file.

The code is reddit_extractor.cli.multiref_main (console script `reddit-multiref`)."""

import sys

from reddit_extractor.cli import multiref_main as main

if __name__ == "__main__":
    sys.exit(main())
