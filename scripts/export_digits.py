"""Export scikit-learn's bundled `digits` data set (UCI Optical Recognition of Handwritten
Digits, test part) into data/digits/ as CSV, with a fixed, seeded, stratified 80/20 split.

Run once; the output is committed so that the project needs no Python at run time.
    pip install scikit-learn && python3 scripts/export_digits.py
"""
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

digits = load_digits()
x = digits.data.astype(np.uint8)
y = digits.target.astype(np.uint8)
x_train, x_test, y_train, y_test = train_test_split(
    x, y, test_size=0.2, random_state=20261127, stratify=y
)
for name, xs, ys in (("train", x_train, y_train), ("test", x_test, y_test)):
    with open(f"data/digits/{name}.csv", "w") as f:
        f.write("label," + ",".join(f"p{i}" for i in range(64)) + "\n")
        for row, label in zip(xs, ys):
            f.write(f"{label}," + ",".join(str(v) for v in row) + "\n")
    print(name, len(ys))
