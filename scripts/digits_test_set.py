"""The held-out digits (data/digits/test.csv) as the tritonclient checks send them."""
import csv
import os

import numpy as np


def load(n):
    """The first `n` held-out digits: labels, and pixels scaled to 0..1 as `[n, 1, 8, 8]` FP32."""
    path = os.path.join(os.path.dirname(__file__), "..", "data", "digits", "test.csv")
    with open(path) as f:
        rows = list(csv.reader(f))[1:n + 1]
    labels = np.array([int(r[0]) for r in rows])
    pixels = np.array([[float(v) / 16.0 for v in r[1:]] for r in rows], dtype=np.float32).reshape(-1, 1, 8, 8)
    return labels, pixels
