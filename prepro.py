#!/usr/bin/env python
"""prepro.py: training tsv -> feature database (lsp_data.prepro_cli; also `dialogpt-prepro`)."""

import sys

from lsp_data.prepro_cli import main

if __name__ == "__main__":
    sys.exit(main())
