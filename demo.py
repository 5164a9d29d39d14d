#!/usr/bin/env python
"""demo.py: the whole chain with one command (lsp_demo.cli; also `dialogpt-demo`)."""

import sys

from lsp_demo.cli import main

if __name__ == "__main__":
    sys.exit(main())
