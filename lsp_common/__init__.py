"""The bottom layer: what every part of the toolkit shares and nothing else (atomic writes,
command-line error handling, boolean flags). It imports no other package of the toolkit."""
