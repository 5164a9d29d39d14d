"""DSTC-7 evaluation suite: NIST, BLEU, METEOR, entropy, distinct and length metrics.

Import the pieces as ``dstc.metrics``, ``dstc.tokenizers`` (``clean_str``) and so on; the
CLIs are ``python -m dstc.dstc``, ``python -m dstc.extract_human`` and
``python -m dstc.batch_eval`` (each also runs as a plain script path).
"""
