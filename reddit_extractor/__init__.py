"""Reddit extractor: Pushshift monthly dumps to DialoGPT training tsv and multi-ref test set.

The command line lives in ``reddit_extractor/src/reddit.py``; this package holds the
logic, one job per module (see README.md).
"""
