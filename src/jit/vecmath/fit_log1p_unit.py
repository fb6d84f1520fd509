"""Fits `Consts::log1p_unit_a` (vecmath/mod.rs), the polynomial of the f32 `log1p_unit`:

    log1p(x) = 2·atanh(s) = 2s + s·z·A(z),   s = x/(2 + x),   z = s² ≤ 1/9   (0 ≤ x ≤ 1),

so A(z) = 2·(atanh(√z)/√z − 1)/z = Σ_{k≥1} 2·z^(k−1)/(2k + 1). A degree-4 polynomial fitted for
least maximum relative error (weighted least squares with Lawson's reweighting) and rounded to
f32 is within 2^-25 of A; the script prints its coefficients and then simulates the routine
in f32 (fma emulated in f64) against f64 log1p over every STRIDE-th f32 in [0, 1]: max 0.68
ulp at stride 3. The Rust tests measure the compiled routine itself (every f32 with
LOSSC_LONG=1).

    python src/jit/vecmath/fit_log1p_unit.py [STRIDE]      # numpy; STRIDE defaults to 7
"""
import sys

import numpy as np

H = 1.0 / 9.0
f32, f64 = np.float32, np.float64


def a_exact(z):
    out = np.zeros_like(z)
    for k in range(60, 0, -1):
        out = out * z + 2.0 / (2 * k + 1)
    return out


def fit(deg, n=2000, iters=30):
    t = np.cos(np.pi * (np.arange(n) + 0.5) / n)
    z = H * (t + 1) / 2
    f = a_exact(z)
    m = np.vander(z, deg + 1, increasing=True) / f[:, None]
    w = np.ones_like(z)
    for _ in range(iters):
        sw = np.sqrt(w)
        c, *_ = np.linalg.lstsq(m * sw[:, None], sw, rcond=None)
        w = w * np.abs(m @ c - 1)
        w /= w.sum()
    return c.astype(f32).astype(f64)


def fma(a, b, c):
    return (a.astype(f64) * b.astype(f64) + c.astype(f64)).astype(f32)


def routine(x, a):
    """The operations of `Emitter::log1p_atanh`, in order."""
    two = f32(2.0)
    d = (two + x).astype(f32)
    delta = (x - (d - two)).astype(f32)
    s = (x / d).astype(f32)
    rem = fma(-s, d, x)
    rem = fma(-s, delta, rem)
    c = (rem * (f32(1.0) - s)).astype(f32)
    z = (s * s).astype(f32)
    t = (s * z).astype(f32)
    p = np.full_like(z, f32(a[-1]))
    for ai in a[-2::-1]:
        p = fma(p, z, np.full_like(z, f32(ai)))
    return fma(s, np.full_like(s, two), fma(t, p, c))


def max_ulp(a, stride):
    worst, at = 0.0, 0.0
    one = int(f32(1.0).view(np.uint32))
    for start in range(0, one + 1, 1 << 24):
        x = np.arange(start, min(start + (1 << 24), one + 1), stride, dtype=np.uint32).view(f32)
        y = routine(x, a).astype(f64)
        ref = np.log1p(x.astype(f64))
        zero = ref == 0
        ulp = np.exp2(np.maximum(np.floor(np.log2(np.where(zero, 1.0, ref))), -126) - 23)
        err = np.where(zero, np.abs(y) * 1e45, np.abs(y - ref) / ulp)
        i = int(np.argmax(err))
        if err[i] > worst:
            worst, at = float(err[i]), float(x[i])
    return worst, at


def main():
    stride = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    a = fit(4)
    z = np.linspace(0, H, 200001)
    rel = np.abs(np.polyval(a[::-1], z) / a_exact(z) - 1).max()
    print("log1p_unit_a:", ", ".join(repr(float(v)) for v in a))
    print(f"relative error of A: 2^{np.log2(rel):.1f}")
    worst, at = max_ulp(a, stride)
    print(f"routine: max {worst:.3f} ulp (at x = {at!r}), every {stride}th f32 in [0, 1]")


if __name__ == "__main__":
    main()
