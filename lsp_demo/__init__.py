"""The steps of demo.py: model choice, data, prepro, training, a sample conversation."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
