#!/usr/bin/env python
"""chat.py: talk to a model in the terminal or a web page (lsp_decode.chat; also `dialogpt-chat`)."""

import sys

from lsp_decode.chat import main

if __name__ == "__main__":
    sys.exit(main())
