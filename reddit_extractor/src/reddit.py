#!/usr/bin/env python
"""reddit.py: one month of Pushshift dumps -> training instances.

The code is reddit_extractor.cli.main (console script `reddit-extract`)."""

import sys

from reddit_extractor.cli import main

if __name__ == "__main__":
    sys.exit(main())
