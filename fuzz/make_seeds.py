"""Writes the seed corpora of the `data` and `generated` fuzz targets (needs numpy).

data: [mode, len(first), first file, second file]; mode bit 0/1 = first/second is .npy,
the high nibble + 1 = classes for the typed call. generated: random choice bytes.
"""
import io
import os
import random

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def npy(a):
    b = io.BytesIO()
    np.save(b, a)
    return b.getvalue()


def main():
    data = os.path.join(HERE, "corpus", "data")
    generated = os.path.join(HERE, "corpus", "generated")
    os.makedirs(data, exist_ok=True)
    os.makedirs(generated, exist_ok=True)
    logits = npy(np.linspace(-3, 3, 12).reshape(3, 4).astype(np.float64))
    tgt = npy(np.array([0, 3, 1], dtype=np.int64))
    seeds = [
        (3 | (3 << 4), logits, tgt),
        (3, npy(np.arange(5, dtype=np.float32)), npy(np.ones(5, dtype=np.float32))),
        (0, b"1,2,3\n4,5,6\n", b"0\n2\n"),
        (1, npy(np.array([[0.5, 1.5], [2.5, -1]], dtype=np.float64)), b"1\n7\n"),
        (2 | (1 << 4), b"1.5,nan,inf\n", npy(np.array([1, -100, 2], dtype=np.int32))),
    ]
    bad = os.path.join(HERE, "..", "tests", "bad_inputs", "data")
    for f in ["good.npy", "truncated.npy", "complex.npy", "strings.npy"]:
        with open(os.path.join(bad, f), "rb") as fh:
            seeds.append((3, fh.read(), tgt))
    for i, (mode, first, second) in enumerate(seeds):
        assert len(first) < 256
        with open(os.path.join(data, f"seed{i:02d}"), "wb") as fh:
            fh.write(bytes([mode, len(first)]) + first + second)
    r = random.Random(7)
    for i in range(12):
        with open(os.path.join(generated, f"seed{i:02d}"), "wb") as fh:
            fh.write(bytes(r.randrange(256) for _ in range(r.randrange(8, 96))))


if __name__ == "__main__":
    main()
