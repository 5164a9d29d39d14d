"""The decoding layer: responses from a trained model for a file of contexts (decode.py)."""
