#!/usr/bin/env python
"""decode.py: responses for a file of contexts (lsp_decode.cli; also `dialogpt-decode`)."""

import sys

from lsp_decode.cli import main

if __name__ == "__main__":
    sys.exit(main())
