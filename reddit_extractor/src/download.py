#!/usr/bin/env python
"""download.py: a Pushshift dump, resumable.

The code is reddit_extractor.cli.download_main (console script `reddit-download`)."""

import sys

from reddit_extractor.cli import download_main as main

if __name__ == "__main__":
    sys.exit(main())
