#!/usr/bin/env python3
"""Reference data for the custom losses in tests/data/custom/*.loss.

Every loss is written once below as a formula over a small backend-neutral set of operations
(`ops`), mirroring its .loss file line by line. The formula is evaluated

  * with PyTorch in float64 (autograd gives the gradient, torch.autograd.functional.hessian the
    Hessian diagonal); these are the recorded reference values, and
  * with mpmath at 40 significant digits (derivatives by high-precision numerical
    differentiation) as an independent check that the float64 references are accurate,
    skipped for cases that sit exactly on a kink.

Where PyTorch has a functional loss that matches the formula exactly (F.cross_entropy,
F.kl_div, F.smooth_l1_loss, ...), its values and gradients are compared with the formula too.

Run from the repository root:

    /work/venv/bin/python tests/data/custom/generate.py            # write NAME.json
    /work/venv/bin/python tests/data/custom/generate.py --no-mp    # skip the mpmath check
    /work/venv/bin/python tests/data/custom/generate.py --only focal,pinball
    /work/venv/bin/python tests/data/custom/generate.py --lossc target/release/lossc --no-write
        # also compare every case with `lossc eval ... --dtype f64 --grad --hess --json`

Conventions at kinks (lossc SPEC §1 "Gradients", identical to PyTorch 2.15): d|x|/dx = 0 at 0,
relu'(0) = 0, maximum/minimum split a tie's gradient equally, clamp passes no gradient at its
bounds, row max/min split ties evenly, where() sends the gradient to the selected branch only,
the norm of a zero row has gradient 0, and a row whose index target is out of range (masked by
`by`) gets zero gradient.
"""

import argparse
import json
import math
import os
import subprocess
import tempfile

import mpmath as mp
import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
torch.set_default_dtype(torch.float64)
MP_DPS = 40


# ----------------------------------------------------------------------------------------------
# Backends
# ----------------------------------------------------------------------------------------------

class Index:
    """An index target laid out per row: k has shape [rows, 1]; valid marks 0 <= k < C."""

    def __init__(self, k, valid):
        self.k = k
        self.valid = valid


class TorchOps:
    name = "torch"

    def scalar(self, v):
        return v

    def _t(self, x):
        if isinstance(x, torch.Tensor):
            return x
        return torch.tensor(float(x))

    # elementwise
    def abs(self, x): return torch.abs(x)
    def sign(self, x): return torch.sign(x)
    def sqrt(self, x): return torch.sqrt(x)
    def square(self, x): return torch.square(x)
    def exp(self, x): return torch.exp(x)
    def log(self, x): return torch.log(x)
    def log1p(self, x): return torch.log1p(x)
    def expm1(self, x): return torch.expm1(x)
    def sin(self, x): return torch.sin(x)
    def cos(self, x): return torch.cos(x)
    def tanh(self, x): return torch.tanh(x)
    # F.softplus switches to x above 20 and loses the exp(-x) tail; logaddexp(x, 0) does not,
    # and its derivative 1/(1 + exp(-x)) keeps full relative accuracy. sigmoid and log_sigmoid
    # are built on it so that their autograd derivatives do not cancel (torch.sigmoid's
    # backward uses 1 - sigmoid(x), which loses all digits for large x).
    def softplus(self, x): return torch.logaddexp(x, torch.zeros_like(x))
    def log_sigmoid(self, x): return -self.softplus(-x)
    def sigmoid(self, x): return torch.exp(-self.softplus(-x))
    def relu(self, x): return torch.relu(x)
    def pow(self, a, b): return torch.pow(a, b)
    def maximum(self, a, b): return torch.maximum(self._t(a), self._t(b))
    def minimum(self, a, b): return torch.minimum(self._t(a), self._t(b))
    def clamp(self, x, lo, hi): return torch.clamp(x, lo, hi)
    def xlogy(self, a, b): return torch.xlogy(a, b)

    def where(self, c, a, b):
        c = c if isinstance(c, torch.Tensor) else torch.tensor(bool(c))
        return torch.where(c.bool(), self._t(a), self._t(b))

    def stop_gradient(self, x): return x.detach()

    def straight_through(self, v, s):
        # value exactly v (s - s.detach() is exactly 0), gradient and Hessian of s
        return v.detach() + (s - s.detach())

    def logcosh(self, e):
        # exact log(cosh(e)) in float64 with a select that never leaks inf/NaN derivatives
        big = torch.abs(e) > 1
        eb = torch.where(big, e, torch.zeros_like(e))
        es = torch.where(big, torch.zeros_like(e), e)
        a = torch.abs(eb)
        large = a - math.log(2.0) + torch.log1p(torch.exp(-2 * a))
        return torch.where(big, large, torch.log(torch.cosh(es)))

    # over the class axis (last), keeping it as a size-1 axis
    def sum(self, x): return x.sum(-1, keepdim=True)
    def mean(self, x): return x.mean(-1, keepdim=True)
    def max(self, x): return torch.amax(x, -1, keepdim=True)
    def min(self, x): return torch.amin(x, -1, keepdim=True)
    def _lse_parts(self, x):
        # log-sum-exp around the (first) row maximum x_a: lse = x_a + log1p(sum_{i != a} e^(x_i - x_a)).
        # Unlike torch.log_softmax, the dominant entry's -log_softmax and its derivatives
        # (1 - p, p(1 - p)) keep full relative accuracy.
        # d_a is the constant 0 (not x_a - x_a), so autograd never adds a -1 and a +1 for x_a.
        a = torch.argmax(x.detach(), -1, keepdim=True)
        xa = torch.gather(x, -1, a)
        keep = torch.ones(x.shape, dtype=torch.bool).scatter(-1, a, False)
        d = torch.where(keep, x - xa, torch.zeros_like(x))
        e = torch.where(keep, torch.exp(d), torch.zeros_like(d))
        return xa, d, torch.log1p(e.sum(-1, keepdim=True))

    def logsumexp(self, x):
        xa, _, l1 = self._lse_parts(x)
        return xa + l1

    def log_softmax(self, x):
        _, d, l1 = self._lse_parts(x)
        return d - l1

    def softmax(self, x): return torch.exp(self.log_softmax(x))

    def norm(self, x):
        # sqrt(sum(x^2)) whose gradient (and Hessian) at a zero row is 0, not NaN
        ss = (x * x).sum(-1, keepdim=True)
        pos = ss > 0
        return torch.where(pos, torch.sqrt(torch.where(pos, ss, torch.ones_like(ss))),
                           torch.zeros_like(ss))

    def take(self, x, idx):
        rows, c = x.shape
        k = torch.where(idx.valid, idx.k, torch.zeros_like(idx.k))
        got = torch.gather(x.expand(rows, c), 1, k)
        return torch.where(idx.valid, got, torch.zeros_like(got))

    def index_ne(self, idx, v):
        return idx.k != v

    def total(self, x):
        return x.sum()


def _vec(f):
    g = np.frompyfunc(f, 1, 1)
    return lambda x: g(x)


class MpOps:
    """mpmath on numpy object arrays. stop_gradient / straight_through are recorded at the
    base point and replayed during numerical differentiation."""

    name = "mp"

    def __init__(self):
        self.mode = "plain"
        self.tape = []
        self.pos = 0

    def scalar(self, v):
        if isinstance(v, bool):
            return v
        return mp.mpf(v)

    abs = staticmethod(_vec(lambda x: abs(x)))
    sign = staticmethod(_vec(lambda x: mp.sign(x)))
    sqrt = staticmethod(_vec(mp.sqrt))
    square = staticmethod(_vec(lambda x: x * x))
    exp = staticmethod(_vec(mp.exp))
    log = staticmethod(_vec(mp.log))
    log1p = staticmethod(_vec(mp.log1p))
    expm1 = staticmethod(_vec(mp.expm1))
    sin = staticmethod(_vec(mp.sin))
    cos = staticmethod(_vec(mp.cos))
    tanh = staticmethod(_vec(mp.tanh))
    sigmoid = staticmethod(_vec(lambda x: 1 / (1 + mp.exp(-x))))
    log_sigmoid = staticmethod(_vec(lambda x: -mp.log1p(mp.exp(-x))))
    softplus = staticmethod(_vec(lambda x: mp.log1p(mp.exp(x))))
    relu = staticmethod(_vec(lambda x: x if x > 0 else mp.mpf(0)))
    logcosh = staticmethod(_vec(lambda x: mp.log(mp.cosh(x))))

    def pow(self, a, b): return a ** b
    def maximum(self, a, b): return np.maximum(a, b)
    def minimum(self, a, b): return np.minimum(a, b)
    def clamp(self, x, lo, hi): return np.minimum(np.maximum(x, lo), hi)

    def xlogy(self, a, b):
        return np.frompyfunc(lambda u, v: mp.mpf(0) if u == 0 else u * mp.log(v), 2, 1)(a, b)

    def where(self, c, a, b):
        c = np.asarray(c).astype(bool)
        return np.where(c, a, b)

    def _tape(self, value):
        if self.mode == "record":
            self.tape.append(value)
            return value
        if self.mode == "replay":
            v = self.tape[self.pos]
            self.pos += 1
            return v
        return value

    def stop_gradient(self, x):
        return self._tape(x)

    def straight_through(self, v, s):
        if self.mode == "plain":
            return v
        vb, sb = self._tape((v, s))
        return vb + (s - sb)

    def sum(self, x): return np.sum(x, axis=-1, keepdims=True)
    def mean(self, x): return np.sum(x, axis=-1, keepdims=True) / x.shape[-1]
    def max(self, x): return np.max(x, axis=-1, keepdims=True)
    def min(self, x): return np.min(x, axis=-1, keepdims=True)

    def logsumexp(self, x):
        m = self.max(x)
        return m + self.log(self.sum(self.exp(x - m)))

    def softmax(self, x):
        e = self.exp(x - self.max(x))
        return e / self.sum(e)

    def log_softmax(self, x):
        return x - self.logsumexp(x)

    def norm(self, x):
        return self.sqrt(self.sum(x * x))

    def take(self, x, idx):
        rows, c = x.shape
        out = np.empty((rows, 1), dtype=object)
        for r in range(rows):
            k = int(idx.k[r, 0])
            out[r, 0] = x[r, k] if idx.valid[r, 0] else mp.mpf(0)
        return out

    def index_ne(self, idx, v):
        return idx.k != int(v)

    def total(self, x):
        s = mp.mpf(0)
        for v in np.asarray(x).ravel():
            s += v
        return s


# ----------------------------------------------------------------------------------------------
# Loss definitions (each mirrors its .loss file)
# ----------------------------------------------------------------------------------------------

class Spec:
    def __init__(self, name, fn, preds, targets=(), vparams=(), params=None, reduce="mean",
                 by=None, over=None, per_row=False, check=None):
        self.name = name
        self.fn = fn
        self.preds = list(preds)          # [(name, has_C)]
        self.targets = list(targets)      # [(name, kind, default)] kind: "elem" | "C" | "index"
        self.vparams = list(vparams)      # [(name, default)]
        self.params = dict(params or {})  # name -> default (None: required, "?": optional)
        self.reduce = reduce
        self.by = by
        self.over = over
        self.per_row = per_row
        self.check = check
        self.has_C = any(c for _, c in self.preds)


SPECS = {}


def spec(**kw):
    def deco(fn):
        s = Spec(fn.__name__, fn, **kw)
        SPECS[s.name] = s
        return fn
    return deco


def torch_bce_logits(x, y, pos_weight=None):
    return F.binary_cross_entropy_with_logits(x, y, reduction="none", pos_weight=pos_weight)


# --- focal ------------------------------------------------------------------------------------
def _focal_check(X, P):
    x, y = X["x"], X["y"]
    if float(torch.abs(x).max().detach()) > 15:
        return None
    p = torch.sigmoid(x)
    ce = torch_bce_logits(x, y)
    p_t = p * y + (1 - p) * (1 - y)
    loss = ce * ((1 - p_t) ** P["gamma"])
    alpha_t = P["alpha"] * y + (1 - P["alpha"]) * (1 - y)
    return alpha_t * loss


@spec(preds=[("x", False)], targets=[("y", "elem", None)],
      params={"gamma": 2.0, "alpha": 0.25}, check=_focal_check)
def focal(o, X, P):
    x, y = X["x"], X["y"]
    ce = -(y * o.log_sigmoid(x) + (1 - y) * o.log_sigmoid(-x))
    q = y * o.sigmoid(-x) + (1 - y) * o.sigmoid(x)
    a_t = P["alpha"] * y + (1 - P["alpha"]) * (1 - y)
    return a_t * o.pow(q, P["gamma"]) * ce


# --- soft dice --------------------------------------------------------------------------------
@spec(preds=[("p", True)], targets=[("y", "C", None), ("m", "C", 1.0)],
      params={"smooth": 1.0}, per_row=True)
def soft_dice(o, X, P):
    p, y, m = X["p"], X["y"], X["m"]
    s = P["smooth"]
    pm = p * m
    ym = y * m
    return 1 - (2 * o.sum(pm * ym) + s) / (o.sum(pm) + o.sum(ym) + s)


# --- pinball ----------------------------------------------------------------------------------
@spec(preds=[("q", False)], targets=[("y", "elem", None), ("w", "elem", 1.0)],
      params={"tau": 0.9}, by=lambda o, X, P: X["w"])
def pinball(o, X, P):
    e = X["y"] - X["q"]
    tau = P["tau"]
    return o.maximum(tau * e, (tau - 1) * e)


# --- label-smoothed CE ------------------------------------------------------------------------
def _lsce_check(X, P):
    z, k = X["z"], X["k"]
    return F.cross_entropy(z, k.k[:, 0], label_smoothing=P["eps"], reduction="none")[:, None]


@spec(preds=[("z", True)], targets=[("k", "index", None)], params={"eps": 0.1},
      per_row=True, check=_lsce_check)
def label_smoothed_ce(o, X, P):
    # .loss: lse = logsumexp(z); (1 - eps)*(lse - z[k]) + eps*mean(lse - z)
    # here with -log_softmax(z) = lse - z evaluated without cancellation
    z = X["z"]
    eps = P["eps"]
    nls = -o.log_softmax(z)
    return (1 - eps) * o.take(nls, X["k"]) + eps * o.mean(nls)


# --- weighted CE with ignore index ------------------------------------------------------------
def _wce_by(o, X, P):
    k = X["k"]
    return o.where(o.index_ne(k, P["ignore_index"]), o.take(X["weight"], k), 0.0)


def _wce_check(X, P, mode):
    """F.cross_entropy applies the weights and the ignore mask itself: compare reduced values."""
    z, k = X["z"], X["k"].k[:, 0]
    keep = (k == P["ignore_index"]) | ((k >= 0) & (k < z.shape[1]))
    if not bool(keep.all()) or mode not in ("none", "mean", "sum"):
        return None  # PyTorch raises on an out-of-range index that is not ignore_index
    w = X["weight"][0].detach()
    return "reduced", F.cross_entropy(z, k, weight=w, ignore_index=int(P["ignore_index"]),
                                      reduction=mode)


@spec(preds=[("z", True)], targets=[("k", "index", None)], vparams=[("weight", 1.0)],
      params={"ignore_index": -100}, by=_wce_by, per_row=True, check=_wce_check)
def weighted_ce_ignore(o, X, P):
    return -o.take(o.log_softmax(X["z"]), X["k"])


# --- cosine pair ------------------------------------------------------------------------------
def _cos_check(X, P):
    a, b = X["a"], X["b"]
    na, nb = a.norm(dim=-1), b.norm(dim=-1)
    if bool(((na * nb) < 1e-4).any()):
        return None
    return (1 - F.cosine_similarity(a, b, dim=-1, eps=P["eps"]))[:, None]


@spec(preds=[("a", True), ("b", True)], params={"eps": 1e-8}, per_row=True, check=_cos_check)
def cosine_pair(o, X, P):
    a, b = X["a"], X["b"]
    cos = o.sum(a * b) / o.maximum(o.norm(a) * o.norm(b), P["eps"])
    return 1 - cos


# --- Gaussian NLL with log-variance -----------------------------------------------------------
def _gnll_check(X, P):
    mu, s, y = X["mu"], X["s"], X["y"]
    if bool((s < -13).any()):
        return None
    return F.gaussian_nll_loss(mu, y, torch.exp(s), full=bool(P["full"]), reduction="none")


@spec(preds=[("mu", False), ("s", False)], targets=[("y", "elem", None)], params={"full": 0},
      check=_gnll_check)
def gaussian_nll_logvar(o, X, P):
    mu, s, y = X["mu"], X["s"], X["y"]
    if o.name == "mp":
        c = mp.log(2 * mp.pi) / 2
    else:
        c = 0.5 * math.log(2 * math.pi)
    return 0.5 * (s + (y - mu) ** 2 * o.exp(-s)) + (c if P["full"] else 0.0)


# --- log cosh ---------------------------------------------------------------------------------
@spec(preds=[("p", False)], targets=[("y", "elem", None)])
def log_cosh(o, X, P):
    return o.logcosh(X["p"] - X["y"])


# --- smooth L1 with mask and weights ----------------------------------------------------------
def _sl1_check(X, P):
    return F.smooth_l1_loss(X["p"], X["y"], beta=P["beta"], reduction="none")


@spec(preds=[("p", False)], targets=[("y", "elem", None), ("mask", "elem", 1.0),
                                      ("w", "elem", 1.0)],
      params={"beta": 1.0}, reduce="mean_or_zero",
      by=lambda o, X, P: X["w"] * X["mask"], over=lambda o, X, P: X["mask"], check=_sl1_check)
def smooth_l1(o, X, P):
    e = X["p"] - X["y"]
    beta = P["beta"]
    return o.where(o.abs(e) < beta, 0.5 * e ** 2 / beta, o.abs(e) - 0.5 * beta)


# --- Poisson NLL with log rate ----------------------------------------------------------------
def _pois_check(X, P):
    return F.poisson_nll_loss(X["input"], X["target"], log_input=True, full=False,
                              reduction="none")


@spec(preds=[("input", False)], targets=[("target", "elem", None)], check=_pois_check)
def poisson_lograte(o, X, P):
    return o.exp(X["input"]) - X["target"] * X["input"]


# --- contrastive ------------------------------------------------------------------------------
@spec(preds=[("d", False)], targets=[("y", "elem", None)], params={"margin": 1.0})
def contrastive(o, X, P):
    d, y = X["d"], X["y"]
    return y * d ** 2 + (1 - y) * o.maximum(P["margin"] - d, 0.0) ** 2


# --- KL distillation --------------------------------------------------------------------------
def _kl_check(X, P):
    z, t = X["z"], X["t"]
    T, ls = P["temperature"], P["label_smoothing"]
    ts = (1 - ls) * t + ls / z.shape[-1]
    return F.kl_div(F.log_softmax(z / T, -1), ts, reduction="none").sum(-1, keepdim=True) * T ** 2


@spec(preds=[("z", True)], targets=[("t", "C", None)],
      params={"temperature": 1.0, "label_smoothing": 0.0}, reduce="batchmean", per_row=True,
      check=_kl_check)
def kl_soft(o, X, P):
    z, t = X["z"], X["t"]
    T, ls = P["temperature"], P["label_smoothing"]
    ts = (1 - ls) * t + ls / X["C"]
    return o.sum(o.xlogy(ts, ts) - ts * o.log_softmax(z / T)) * T ** 2


# --- focal Tversky ----------------------------------------------------------------------------
@spec(preds=[("p", True)], targets=[("y", "C", None)],
      params={"alpha": 0.3, "beta": 0.7, "gamma": 1.0, "smooth": 1.0}, reduce="sum",
      per_row=True)
def tversky(o, X, P):
    p, y = X["p"], X["y"]
    tp = o.sum(p * y)
    fp = o.sum(p * (1 - y))
    fn = o.sum((1 - p) * y)
    s = P["smooth"]
    return (1 - (tp + s) / (tp + P["alpha"] * fp + P["beta"] * fn + s)) ** P["gamma"]


# --- bare squared hinge -----------------------------------------------------------------------
@spec(preds=[("p", False)], targets=[("y", "elem", None)])
def squared_hinge_bare(o, X, P):
    return o.maximum(1 - X["y"] * X["p"], 0.0) ** 2


# --- class-balanced BCE -----------------------------------------------------------------------
def _pos_weight(o, y):
    if o.name == "mp":
        ys = [v for v in np.asarray(y).ravel()]
        anyp = any(v > 0 for v in ys)
        return mp.fsum([1 - v for v in ys]) / mp.fsum(ys) if anyp else mp.mpf(1)
    anyp = bool((y > 0).any())
    return float((1 - y).sum() / y.sum()) if anyp else 1.0


def _bbce_check(X, P):
    x, y = X["x"], X["y"]
    pw = torch.tensor(_pos_weight(TorchOps(), y))
    return torch_bce_logits(x, y, pos_weight=pw)


@spec(preds=[("x", False)], targets=[("y", "elem", None)], check=_bbce_check)
def balanced_bce(o, X, P):
    x, y = X["x"], X["y"]
    pw = _pos_weight(o, X["y_call"])
    return pw * y * o.softplus(-x) + (1 - y) * o.softplus(x)


# --- straight-through binarization ------------------------------------------------------------
@spec(preds=[("x", False)], targets=[("y", "elem", None)])
def ste_binary(o, X, P):
    x, y = X["x"], X["y"]
    b = o.straight_through(o.sign(x), o.clamp(x, -1.0, 1.0))
    return (b - y) ** 2


# --- soft bootstrapping CE --------------------------------------------------------------------
def _boot_check(X, P):
    z, t = X["z"], X["t"]
    q = P["beta"] * t + (1 - P["beta"]) * torch.softmax(z, -1).detach()
    return F.cross_entropy(z, q, reduction="none")[:, None]


@spec(preds=[("z", True)], targets=[("t", "C", None)], params={"beta": 0.95}, per_row=True,
      check=_boot_check)
def bootstrap_ce(o, X, P):
    z, t = X["z"], X["t"]
    q = P["beta"] * t + (1 - P["beta"]) * o.stop_gradient(o.softmax(z))
    return -o.sum(q * o.log_softmax(z))


# --- capped Huber -----------------------------------------------------------------------------
def _chub_check(X, P):
    if P["cap"] is not None:
        return None
    return F.huber_loss(X["p"], X["y"], delta=P["delta"], reduction="none")


@spec(preds=[("p", False)], targets=[("y", "elem", None)], params={"delta": 1.0, "cap": "?"},
      check=_chub_check)
def capped_huber(o, X, P):
    e = X["p"] - X["y"]
    d = P["delta"]
    h = o.where(o.abs(e) < d, 0.5 * e ** 2, d * (o.abs(e) - 0.5 * d))
    cap = P["cap"] if P["cap"] is not None else (mp.inf if o.name == "mp" else math.inf)
    return o.minimum(h, cap)


# --- Crammer-Singer multiclass hinge ----------------------------------------------------------
@spec(preds=[("z", True)], targets=[("y", "C", None)], params={"margin": 1.0}, per_row=True)
def multiclass_hinge(o, X, P):
    z, y = X["z"], X["y"]
    return o.max(z + P["margin"] * (1 - y)) - o.sum(y * z)


# --- winner-takes-all -------------------------------------------------------------------------
@spec(preds=[("h", True)], targets=[("y", "elem", None)], per_row=True)
def wta(o, X, P):
    return o.min((X["h"] - X["y"]) ** 2)


# --- triplet margin ---------------------------------------------------------------------------
def _trip_check(X, P):
    return F.triplet_margin_loss(X["a"], X["pos"], X["neg"], margin=P["margin"], p=2,
                                 eps=P["eps"], reduction="none")[:, None]


@spec(preds=[("a", True), ("pos", True), ("neg", True)], params={"margin": 1.0, "eps": 1e-6},
      per_row=True, check=_trip_check)
def triplet(o, X, P):
    a, pos, neg, eps = X["a"], X["pos"], X["neg"], P["eps"]
    return o.relu(o.norm(a - pos + eps) - o.norm(a - neg + eps) + P["margin"])


# --- AlphaZero value head ---------------------------------------------------------------------
def _az_check(X, P):
    return F.mse_loss(torch.tanh(X["v"]), X["z"].expand_as(X["v"]), reduction="none")


@spec(preds=[("v", False)], targets=[("z", "elem", None)], reduce="sum", check=_az_check)
def alphazero_value(o, X, P):
    return (X["z"] - o.tanh(X["v"])) ** 2


# --- Charbonnier ------------------------------------------------------------------------------
@spec(preds=[("p", False)], targets=[("y", "elem", None)], params={"eps": 1e-3})
def charbonnier(o, X, P):
    return o.sqrt(o.square(X["p"] - X["y"]) + P["eps"] ** 2)


# --- LINEX ------------------------------------------------------------------------------------
@spec(preds=[("p", False)], targets=[("y", "elem", None)], params={"a": None, "b": 1.0})
def linex(o, X, P):
    e = X["p"] - X["y"]
    a = P["a"]
    return P["b"] * (o.expm1(a * e) - a * e)


# --- angular ----------------------------------------------------------------------------------
def _ang_check(X, P):
    return 2 - 2 * torch.cos(X["p"] - X["y"])


@spec(preds=[("p", False)], targets=[("y", "elem", None)], check=_ang_check)
def angular(o, X, P):
    p, y = X["p"], X["y"]
    return (o.sin(p) - o.sin(y)) ** 2 + (o.cos(p) - o.cos(y)) ** 2


# --- Cauchy -----------------------------------------------------------------------------------
@spec(preds=[("p", False)], targets=[("y", "elem", None)], params={"c": 1.0})
def cauchy(o, X, P):
    c = P["c"]
    return 0.5 * c ** 2 * o.log1p(((X["p"] - X["y"]) / c) ** 2)


# ----------------------------------------------------------------------------------------------
# Layout, reduction, evaluation
# ----------------------------------------------------------------------------------------------

def layout_info(s, inputs):
    """C, rows and B for a case (SPEC §1 Data layout)."""
    first = inputs[s.preds[0][0]]
    B = first.shape[0] if first.ndim > 0 else 1
    if s.has_C:
        cname = next(n for n, c in s.preds if c)
        a = inputs[cname]
        C = a.shape[-1]
        rows = a.size // C
        return C, rows, B
    n = max(np.asarray(v).size for v in inputs.values())
    return None, n, B


def params_for(s, overrides, o):
    P = {}
    for name, default in s.params.items():
        if name in overrides:
            P[name] = o.scalar(overrides[name])
        elif default == "?":
            P[name] = None
        elif default is None:
            raise ValueError(f"{s.name}: required param {name} missing")
        else:
            P[name] = o.scalar(default)
    return P


def to_backend(o, arr):
    if o.name == "torch":
        return torch.as_tensor(np.asarray(arr, dtype=np.float64))
    a = np.asarray(arr)
    out = np.empty(a.shape, dtype=object)
    for i, v in np.ndenumerate(a):
        out[i] = mp.mpf(float(v))
    return out


def lay(o, s, data, kind, C, rows):
    """data: array in the backend, flat or shaped; returns the laid-out array."""
    size = data.numel() if o.name == "torch" else np.asarray(data).size
    if s.has_C:
        if kind == "C":
            if size == rows * C:
                return data.reshape(rows, C)
            if size == C:
                return data.reshape(1, C).expand(rows, C) if o.name == "torch" else \
                    np.broadcast_to(data.reshape(1, C), (rows, C))
            if size == 1:
                return data.reshape(1, 1).expand(rows, C) if o.name == "torch" else \
                    np.broadcast_to(data.reshape(1, 1), (rows, C))
            raise ValueError("bad [C] size")
        if size == rows:
            return data.reshape(rows, 1)
        if size == 1:
            return data.reshape(1, 1).expand(rows, 1) if o.name == "torch" else \
                np.broadcast_to(data.reshape(1, 1), (rows, 1))
        raise ValueError("bad per-row size")
    if size == rows:
        return data.reshape(rows)
    if size == 1:
        return data.reshape(1).expand(rows) if o.name == "torch" else \
            np.broadcast_to(data.reshape(1), (rows,))
    raise ValueError("bad size")


def build_inputs(o, s, case, pred_values):
    """pred_values: name -> backend array of the pred's flat data."""
    inputs = case["inputs"]
    C, rows, B = layout_info(s, inputs)
    X = {"C": C, "rows": rows, "B": B}
    row_valid = None
    for name, kind, default in s.targets:
        if kind == "index":
            k = np.asarray(inputs[name]).astype(np.int64).reshape(-1)
            if k.size == 1 and rows != 1:
                k = np.repeat(k, rows)
            k = k.reshape(rows, 1)
            valid = (k >= 0) & (k < C)
            row_valid = valid if row_valid is None else (row_valid & valid)
            if o.name == "torch":
                X[name] = Index(torch.as_tensor(k), torch.as_tensor(valid))
            else:
                X[name] = Index(k, valid)
            continue
        if name in inputs:
            arr = to_backend(o, inputs[name])
        else:
            arr = to_backend(o, np.array([default]))
        X[name] = lay(o, s, arr, "C" if kind == "C" else "row", C, rows)
        X[name + "_call"] = arr.reshape(-1)  # the whole call's data, for batch_sum/batch_any
    for name, default in s.vparams:
        arr = to_backend(o, inputs[name]) if name in inputs else to_backend(o, np.array([default]))
        X[name] = lay(o, s, arr, "C", C, rows)
    for name, has_c in s.preds:
        v = lay(o, s, pred_values[name], "C" if has_c else "row", C, rows)
        if row_valid is not None and o.name == "torch" and not row_valid.all():
            # a row masked for an out-of-range index gets zero gradient (SPEC §1)
            rv = torch.as_tensor(row_valid)
            v = torch.where(rv, v, v.detach())
        X[name] = v
    return X, row_valid


def reduce_value(o, s, X, P, l, mode):
    W = s.by(o, X, P) if s.by else 1.0
    D = s.over(o, X, P) if s.over else W
    if o.name == "torch":
        Wb = torch.broadcast_to(torch.as_tensor(W), l.shape)
        Db = torch.broadcast_to(torch.as_tensor(D), l.shape)
    else:
        Wb = np.broadcast_to(np.asarray(W, dtype=object), l.shape)
        Db = np.broadcast_to(np.asarray(D, dtype=object), l.shape)
    Wl = Wb * l
    if mode == "none":
        return Wl, Wb
    total = o.total(Wl)
    if mode == "sum":
        return total, Wb
    if mode == "batchmean":
        return total / X["B"], Wb
    dsum = o.total(Db)
    if mode == "mean":
        if o.name == "mp" and dsum == 0:
            return mp.nan, Wb
        return total / dsum, Wb
    if mode == "mean_or_zero":
        if float(dsum) == 0.0:
            return total * 0.0, Wb
        return total / dsum, Wb
    raise ValueError(mode)


def torch_eval(s, case):
    o = TorchOps()
    P = params_for(s, case.get("params", {}), o)
    mode = case["reduce"] or s.reduce
    leaves = {n: torch.tensor(np.asarray(case["inputs"][n], dtype=np.float64).reshape(-1),
                              requires_grad=True) for n, _ in s.preds}

    def objective(vals):
        X, row_valid = build_inputs(o, s, case, vals)
        l = s.fn(o, X, P)
        if s.per_row:
            assert l.shape[-1] == 1
        r, Wb = reduce_value(o, s, X, P, l, mode)
        if row_valid is not None and not row_valid.all():
            bad = ~np.broadcast_to(row_valid, (X["rows"], 1))
            wv = Wb.detach().numpy()
            wrow = wv.reshape(X["rows"], -1)
            assert np.all(wrow[bad[:, 0]] == 0), "out-of-range index on a row with W != 0"
        return r, X, P, l

    r, X, _, l = objective(leaves)
    scalar = r.sum() if mode == "none" else r
    grads = torch.autograd.grad(scalar, [leaves[n] for n, _ in s.preds], allow_unused=True)
    grad = {}
    for (n, _), g in zip(s.preds, grads):
        grad[n] = (g if g is not None else torch.zeros_like(leaves[n])).detach().numpy()
    hess = {}
    for n, _ in s.preds:
        def f(xflat, n=n):
            vals = {m: (xflat if m == n else leaves[m].detach()) for m, _ in s.preds}
            rr = objective(vals)[0]
            return rr.sum() if mode == "none" else rr
        H = torch.autograd.functional.hessian(f, leaves[n].detach().clone())
        hess[n] = torch.diagonal(H).detach().numpy()
    loss = r.detach().numpy().reshape(-1) if mode == "none" else float(r.detach())
    return {"loss": loss, "grad": grad, "hess": hess, "l": l.detach(), "X": X, "P": P}


def torch_check(s, case, ref):
    """Compare with the matching torch functional loss, if any."""
    if s.check is None:
        return []
    o = TorchOps()
    P = params_for(s, case.get("params", {}), o)
    mode = case["reduce"] or s.reduce
    leaves = {n: torch.tensor(np.asarray(case["inputs"][n], dtype=np.float64).reshape(-1),
                              requires_grad=True) for n, _ in s.preds}
    X, row_valid = build_inputs(o, s, case, leaves)
    got = s.check(X, P, mode) if s.check.__code__.co_argcount == 3 else s.check(X, P)
    if got is None:
        return []
    msgs = []
    if isinstance(got, tuple):
        r = got[1]
        want = torch.as_tensor(ref["loss"]).reshape(r.shape)
        if not torch.allclose(r.detach(), want, rtol=1e-11, atol=1e-13, equal_nan=True):
            msgs.append(f"reduced value vs torch functional: {r.detach()} vs {want}")
    else:
        l = ref["l"]
        lf_b = torch.broadcast_to(got, l.shape)
        if not torch.allclose(lf_b.detach(), l, rtol=1e-11, atol=1e-13, equal_nan=True):
            msgs.append(f"value vs torch functional: max diff "
                        f"{float((lf_b.detach() - l).abs().max()):.3g}")
        # gradient of the same reduction built on the functional loss
        r, _ = reduce_value(o, s, X, P, lf_b, mode)
    scalar = r.sum() if mode == "none" else r
    if scalar.requires_grad:
        grads = torch.autograd.grad(scalar, [leaves[n] for n, _ in s.preds], allow_unused=True)
        for (n, _), g in zip(s.preds, grads):
            g = np.zeros(leaves[n].shape) if g is None else g.numpy()
            if not np.allclose(g, ref["grad"][n], rtol=1e-10, atol=1e-12, equal_nan=True):
                msgs.append(f"grad[{n}] vs torch functional: max diff "
                            f"{np.nanmax(np.abs(g - ref['grad'][n])):.3g}")
    return msgs


def mp_eval(s, case, want_derivs):
    o = MpOps()
    mp.mp.dps = MP_DPS
    P = params_for(s, case.get("params", {}), o)
    mode = case["reduce"] or s.reduce
    base = {n: to_backend(o, np.asarray(case["inputs"][n], dtype=np.float64).reshape(-1))
            for n, _ in s.preds}

    def value(vals):
        X, row_valid = build_inputs(o, s, case, vals)
        l = s.fn(o, X, P)
        r, _ = reduce_value(o, s, X, P, l, mode)
        return r, row_valid, X

    o.mode = "record" if want_derivs else "plain"
    o.tape = []
    r, row_valid, X = value(base)
    loss = [mp.mpf(v) for v in np.asarray(r).ravel()] if mode == "none" else r
    if not want_derivs:
        return {"loss": loss}
    grad, hess = {}, {}
    for n, has_c in s.preds:
        gs, hs = [], []
        for i in range(base[n].size):
            def g(t, n=n, i=i):
                vals = dict(base)
                arr = base[n].copy()
                arr[i] = t
                vals[n] = arr
                o.mode = "replay"
                o.pos = 0
                rr = value(vals)[0]
                return o.total(rr) if mode == "none" else rr
            c = mp.taylor(g, base[n][i], 2)
            gs.append(c[1])
            hs.append(2 * c[2])
        if row_valid is not None and not row_valid.all():
            C = X["C"]
            for r_ in range(X["rows"]):
                if not row_valid[r_, 0]:
                    sl = slice(r_ * C, (r_ + 1) * C) if has_c else slice(r_, r_ + 1)
                    for j in range(sl.start, sl.stop):
                        gs[j] = mp.mpf(0)
                        hs[j] = mp.mpf(0)
        grad[n] = gs
        hess[n] = hs
    o.mode = "plain"
    return {"loss": loss, "grad": grad, "hess": hess}


def rel_err(a, b, scale):
    """|a - b| / max(|b|, 2^-52*scale): relative error, with an absolute floor of one ulp of the
    largest magnitude in the compared vector (values that cancel to ~0 are judged absolutely)."""
    a = float(a)
    b = float(b)
    if math.isnan(a) and math.isnan(b):
        return 0.0
    if math.isinf(a) or math.isinf(b) or math.isnan(a) or math.isnan(b):
        return 0.0 if a == b else math.inf
    return abs(a - b) / max(abs(b), 2.0 ** -52 * scale, 1e-300)


WORST = {}


def note_worst(key, v):
    WORST[key] = max(WORST.get(key, 0.0), v)


def compare_mp(ref, mpr, kink):
    msgs = []
    loss_t = np.atleast_1d(ref["loss"]).astype(float)
    loss_m = np.array([float(v) for v in np.atleast_1d(np.asarray(mpr["loss"], dtype=object))])
    scale = float(np.nanmax(np.abs(loss_m))) if loss_m.size and np.isfinite(loss_m).any() else 1.0
    worst = max((rel_err(a, b, scale) for a, b in zip(loss_t, loss_m)), default=0.0)
    note_worst("loss", worst)
    if worst > 1e-12:
        msgs.append(f"loss vs mpmath rel err {worst:.3g}")
    if kink or "grad" not in mpr:
        return msgs
    for key in ("grad", "hess"):
        for n, vals in ref[key].items():
            m = np.array([float(v) for v in mpr[key][n]])
            t = np.asarray(vals, dtype=float)
            fin = np.isfinite(m)
            sc = float(np.max(np.abs(m[fin]))) if fin.any() else 1.0
            sc = max(sc, 1e-300)
            w = max((rel_err(a, b, sc) for a, b in zip(t, m)), default=0.0)
            note_worst(key, w)
            if w > 1e-9:
                msgs.append(f"{key}[{n}] vs mpmath rel err {w:.3g}")
    return msgs


# ----------------------------------------------------------------------------------------------
# Cases
# ----------------------------------------------------------------------------------------------

R = ["none", "mean", "sum", None]


class Gen:
    def __init__(self, seed):
        self.rng = np.random.RandomState(seed)

    # inputs are rounded to 4 decimals for readability (+ 0.0 removes negative zeros)
    def n(self, shape, scale=1.0, loc=0.0):
        return np.round(self.rng.normal(loc, scale, size=shape), 4) + 0.0

    def u(self, shape, lo=0.0, hi=1.0):
        return np.round(self.rng.uniform(lo, hi, size=shape), 4) + 0.0

    def b(self, shape, p=0.5):
        return (self.rng.uniform(size=shape) < p).astype(np.float64)

    def pm1(self, shape):
        return np.where(self.rng.uniform(size=shape) < 0.5, -1.0, 1.0)

    def idx(self, shape, C):
        return self.rng.randint(0, C, size=shape).astype(np.int64)

    def onehot(self, shape, C):
        k = self.rng.randint(0, C, size=shape)
        return np.eye(C)[k]

    def probs(self, shape, scale=1.0):
        z = self.rng.normal(0, scale, size=shape)
        e = np.exp(z - z.max(-1, keepdims=True))
        return np.round(e / e.sum(-1, keepdims=True), 4) + 0.0


def case(name, inputs, params=None, reduces=R, kink=False):
    return {"name": name, "inputs": {k: np.asarray(v) for k, v in inputs.items()},
            "params": dict(params or {}), "reduces": list(reduces), "kink": kink}


def cases_focal(g):
    return [
        case("random-8", {"x": g.n([8], 2), "y": g.b([8])}),
        case("random-3x4-soft-gamma1.5-alpha0.6", {"x": g.n([3, 4], 2), "y": g.u([3, 4])},
             {"gamma": 1.5, "alpha": 0.6}),
        case("random-2x2x3", {"x": g.n([2, 2, 3], 2), "y": g.b([2, 2, 3])}),
        case("random-5-gamma0", {"x": g.n([5], 2), "y": g.b([5])}, {"gamma": 0.0}),
        case("edge-zeros-large-logits", {"x": np.array([0.0, 0.0, 30.0, -30.0, 30.0, -30.0]),
                                          "y": np.array([0.0, 1.0, 1.0, 0.0, 0.0, 1.0])}),
    ]


def cases_soft_dice(g):
    return [
        case("random-5x4", {"p": g.probs([5, 4]), "y": g.onehot([5], 4)}),
        case("random-2x3x4-multilabel", {"p": g.u([2, 3, 4]), "y": g.b([2, 3, 4])}),
        case("one-row-4", {"p": g.probs([4]), "y": g.onehot([], 4)}),
        case("random-5x4-masked-smooth1e-5", {"p": g.probs([5, 4]), "y": g.onehot([5], 4),
                                               "m": g.b([5, 4], 0.7)}, {"smooth": 1e-5}),
        case("target-one-row-broadcast-3x4", {"p": g.u([3, 4]), "y": np.array([0.0, 1.0, 1.0, 0.0])}),
        case("edge-zeros-and-perfect", {"p": np.array([[0.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]]),
                                        "y": np.array([[0.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]])}),
    ]


def cases_pinball(g):
    return [
        case("random-8-weighted", {"q": g.n([8]), "y": g.n([8]), "w": g.u([8], 0.1, 2.0)}),
        case("random-3x4-default-w", {"q": g.n([3, 4]), "y": g.n([3, 4])}),
        case("random-2x2x3-tau0.5", {"q": g.n([2, 2, 3]), "y": g.n([2, 2, 3]),
                                     "w": g.u([2, 2, 3], 0.1, 2.0)}, {"tau": 0.5}),
        case("random-6-scalar-w-tau0.1", {"q": g.n([6]), "y": g.n([6]), "w": np.array(2.5)},
             {"tau": 0.1}),
        case("edge-ties-at-zero-error", {"q": np.array([0.0, 0.0, 1.0, -1.0, 2.0, 0.0]),
                                         "y": np.array([0.0, 1.0, 1.0, -1.0, 0.0, -3.0]),
                                         "w": np.array([1.0, 1.0, 2.0, 1.0, 0.5, 1.0])}, kink=True),
    ]


def cases_label_smoothed_ce(g):
    return [
        case("random-5x4", {"z": g.n([5, 4], 2), "k": g.idx([5], 4)}),
        case("random-2x3x4-eps0.3", {"z": g.n([2, 3, 4], 2), "k": g.idx([2, 3], 4)}, {"eps": 0.3}),
        case("one-row-4-scalar-index", {"z": g.n([4], 2), "k": np.array(2, dtype=np.int64)}),
        case("random-3x5-eps0", {"z": g.n([3, 5], 2), "k": g.idx([3], 5)}, {"eps": 0.0}),
        case("random-3x3-eps1", {"z": g.n([3, 3], 2), "k": g.idx([3], 3)}, {"eps": 1.0}),
        case("edge-large-logits", {"z": np.array([[30.0, -30, 0, 0], [30, -30, 0, 0],
                                                  [-30, -30, -30, -30], [0, 0, 0, 0]]),
                                   "k": np.array([0, 1, 2, 3], dtype=np.int64)}),
    ]


def cases_weighted_ce_ignore(g):
    return [
        case("random-6x4-ignored-rows", {"z": g.n([6, 4], 2),
                                         "k": np.array([0, -100, 3, 2, -100, 1], dtype=np.int64),
                                         "weight": g.u([4], 0.5, 2.0)}),
        case("random-2x3x4-ignore1", {"z": g.n([2, 3, 4], 2),
                                      "k": np.array([[1, 0, 3], [2, 1, 1]], dtype=np.int64),
                                      "weight": g.u([4], 0.5, 2.0)}, {"ignore_index": 1}),
        case("random-5x3-default-weight", {"z": g.n([5, 3], 2),
                                           "k": np.array([2, 0, -100, 1, 1], dtype=np.int64)}),
        case("all-ignored", {"z": g.n([3, 4], 2), "k": np.array([-100, -100, -100], dtype=np.int64),
                             "weight": g.u([4], 0.5, 2.0)},
             reduces=["none", "mean", "sum", "mean_or_zero", None]),
        case("out-of-range-masked-by-weight", {"z": g.n([4, 4], 2),
                                               "k": np.array([0, 7, -1, 2], dtype=np.int64),
                                               "weight": g.u([4], 0.5, 2.0)}),
        case("edge-large-logits", {"z": np.array([[30.0, -30, 0, 0], [30, -30, 0, 0],
                                                  [-30, -30, -30, -30], [0, 0, 30, 0]]),
                                   "k": np.array([0, 1, 2, -100], dtype=np.int64),
                                   "weight": np.array([1.0, 2.0, 0.5, 1.5])}),
    ]


def cases_cosine_pair(g):
    b0 = g.n([4])
    return [
        case("random-5x4", {"a": g.n([5, 4]), "b": g.n([5, 4])}),
        case("random-2x3x4", {"a": g.n([2, 3, 4]), "b": g.n([2, 3, 4])}),
        case("one-row-4", {"a": g.n([4]), "b": g.n([4])}),
        case("edge-zero-parallel-antiparallel", {
            "a": np.stack([np.zeros(4), g.n([4]), 2 * b0, -3 * b0, 1e3 * g.n([4])]),
            "b": np.stack([g.n([4]), np.zeros(4), b0, b0, g.n([4])])}),
    ]


def cases_gaussian_nll_logvar(g):
    return [
        case("random-8", {"mu": g.n([8]), "s": g.n([8]), "y": g.n([8])}),
        case("random-3x4-full", {"mu": g.n([3, 4]), "s": g.n([3, 4]), "y": g.n([3, 4])}, {"full": 1}),
        case("random-2x2x3", {"mu": g.n([2, 2, 3], 2), "s": g.n([2, 2, 3], 2), "y": g.n([2, 2, 3], 2)}),
        case("edge-zero-residual-extreme-logvar", {
            "mu": np.array([0.0, 1.0, 1.0, 0.0, 2.0]), "s": np.array([0.0, 30.0, -30.0, 0.0, 5.0]),
            "y": np.array([0.0, 1.0, 1.5, 3.0, -1.0])}),
    ]


def cases_log_cosh(g):
    return [
        case("random-8", {"p": g.n([8], 2), "y": g.n([8], 2)}),
        case("random-3x4", {"p": g.n([3, 4], 3), "y": g.n([3, 4])}),
        case("random-2x2x3", {"p": g.n([2, 2, 3]), "y": g.n([2, 2, 3])}),
        case("edge-zero-and-30", {"p": np.array([0.0, 5.0, 30.0, -30.0, 20.5]),
                                  "y": np.array([0.0, 5.0, 0.0, 0.0, 0.0])}),
        case("edge-cosh-overflow", {"p": np.array([400.0, -400.0, 1000.0, -1000.0]),
                                    "y": np.array([0.0, 0.0, 0.0, 0.0])}),
    ]


def cases_smooth_l1(g):
    return [
        case("random-8-defaults", {"p": g.n([8], 2), "y": g.n([8])}, reduces=R + ["mean_or_zero"]),
        case("random-3x4-mask-weights", {"p": g.n([3, 4], 2), "y": g.n([3, 4]),
                                         "mask": g.b([3, 4], 0.7), "w": g.u([3, 4], 0.5, 2.0)},
             reduces=R + ["mean_or_zero"]),
        case("random-2x2x3-beta0.5", {"p": g.n([2, 2, 3], 2), "y": g.n([2, 2, 3]),
                                      "mask": g.b([2, 2, 3], 0.7)}, {"beta": 0.5}),
        case("all-padding", {"p": g.n([5]), "y": g.n([5]), "mask": np.zeros(5)},
             reduces=["none", "sum", "mean_or_zero", None]),
        case("edge-boundary-and-zero", {"p": np.array([1.0, -1.0, 0.0, 2.0, 0.5, 3.0]),
                                        "y": np.array([0.0, 0.0, 0.0, 0.0, 0.0, 3.0])}, kink=True),
    ]


def cases_poisson_lograte(g):
    return [
        case("random-8", {"input": g.n([8]), "target": g.rng.poisson(2.0, 8).astype(float)}),
        case("random-3x4", {"input": g.n([3, 4]), "target": g.rng.poisson(1.0, [3, 4]).astype(float)}),
        case("random-2x2x3-scalar-target", {"input": g.n([2, 2, 3]), "target": np.array(2.0)}),
        case("edge-zero-large", {"input": np.array([0.0, 30.0, -30.0, 0.0, 5.0]),
                                 "target": np.array([0.0, 0.0, 3.0, 1.0, 0.0])}),
    ]


def cases_contrastive(g):
    return [
        case("random-8", {"d": g.u([8], 0, 2), "y": g.b([8])}),
        case("random-3x4-margin2", {"d": g.u([3, 4], 0, 3), "y": g.b([3, 4])}, {"margin": 2.0}),
        case("random-2x2x3", {"d": g.u([2, 2, 3], 0, 2), "y": g.b([2, 2, 3])}),
        case("edge-zero-distance", {"d": np.array([0.0, 0.0, 1.5, 0.25, 3.0]),
                                    "y": np.array([1.0, 0.0, 0.0, 0.0, 1.0])}),
    ]


RB = ["none", "mean", "sum", "batchmean", None]


def cases_kl_soft(g):
    return [
        case("random-5x4", {"z": g.n([5, 4], 2), "t": g.probs([5, 4])}, reduces=RB),
        case("random-2x3x4-T2", {"z": g.n([2, 3, 4], 2), "t": g.probs([2, 3, 4])},
             {"temperature": 2.0}, reduces=RB),
        case("one-row-1d", {"z": g.n([4], 2), "t": g.probs([4])}, reduces=RB),
        case("onehot-smoothing0.1", {"z": g.n([3, 4], 2), "t": g.onehot([3], 4)},
             {"label_smoothing": 0.1}, reduces=RB),
        case("edge-zero-targets-large-logits", {
            "z": np.array([[30.0, -30, 0, 0], [30, -30, 0, 0], [0, 0, 0, 0]]),
            "t": np.array([[1.0, 0, 0, 0], [0, 1, 0, 0], [0.5, 0.5, 0, 0]])}, reduces=RB),
    ]


def cases_tversky(g):
    return [
        case("random-5x4", {"p": g.u([5, 4]), "y": g.b([5, 4])}),
        case("random-2x3x4-gamma0.75", {"p": g.u([2, 3, 4]), "y": g.b([2, 3, 4])},
             {"gamma": 0.75, "alpha": 0.5, "beta": 0.5}),
        case("one-row-4", {"p": g.u([4]), "y": np.array([0.0, 1.0, 0.0, 1.0])}),
        case("edge-zeros", {"p": np.array([[0.0, 0, 0, 0], [0, 1, 0, 0], [1, 1, 1, 1]]),
                            "y": np.array([[0.0, 1, 0, 0], [0, 1, 0, 1], [0, 0, 0, 0]])}),
    ]


def cases_squared_hinge_bare(g):
    return [
        case("random-8", {"p": g.n([8]), "y": g.pm1([8])}),
        case("random-3x4", {"p": g.n([3, 4], 2), "y": g.pm1([3, 4])}),
        case("random-2x2x3", {"p": g.n([2, 2, 3]), "y": g.pm1([2, 2, 3])}),
        case("edge-zero-large", {"p": np.array([0.0, 30.0, -30.0, 2.0, -2.0]),
                                 "y": np.array([1.0, 1.0, 1.0, -1.0, -1.0])}),
    ]


def cases_balanced_bce(g):
    return [
        case("random-8", {"x": g.n([8], 2), "y": np.array([0.0, 1, 0, 0, 1, 0, 0, 0])}),
        case("random-3x4-soft", {"x": g.n([3, 4], 2), "y": g.u([3, 4])}),
        case("random-2x2x3", {"x": g.n([2, 2, 3], 2), "y": g.b([2, 2, 3], 0.3)}),
        case("no-positives", {"x": g.n([6], 2), "y": np.zeros(6)}),
        case("edge-large-logits", {"x": np.array([30.0, -30.0, 30.0, -30.0, 0.0, 0.0]),
                                   "y": np.array([1.0, 1.0, 0.0, 0.0, 1.0, 0.0])}),
    ]


def cases_ste_binary(g):
    return [
        case("random-8", {"x": g.n([8], 1.5), "y": g.pm1([8])}),
        case("random-3x4", {"x": g.n([3, 4], 1.5), "y": g.pm1([3, 4])}),
        case("random-2x2x3-soft-targets", {"x": g.n([2, 2, 3], 1.5), "y": g.u([2, 2, 3], -1, 1)}),
        case("edge-zero-bounds-large", {"x": np.array([0.0, 1.0, -1.0, 30.0, -30.0, 0.5]),
                                        "y": np.array([1.0, 1.0, -1.0, 1.0, 0.0, 0.0])}, kink=True),
    ]


def cases_bootstrap_ce(g):
    return [
        case("random-5x4-onehot", {"z": g.n([5, 4], 2), "t": g.onehot([5], 4)}),
        case("random-2x3x4-soft-beta0.8", {"z": g.n([2, 3, 4], 2), "t": g.probs([2, 3, 4])},
             {"beta": 0.8}),
        case("one-row-4", {"z": g.n([4], 2), "t": g.onehot([], 4)}),
        case("edge-large-logits", {"z": np.array([[30.0, -30, 0, 0], [30, -30, 0, 0], [0, 0, 0, 0]]),
                                   "t": np.array([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]])}),
    ]


def cases_capped_huber(g):
    return [
        case("random-8-no-cap", {"p": g.n([8], 2), "y": g.n([8])}),
        case("random-3x4-cap1", {"p": g.n([3, 4], 2), "y": g.n([3, 4])}, {"cap": 1.0}),
        case("random-2x2x3-delta0.5-cap0.3", {"p": g.n([2, 2, 3], 2), "y": g.n([2, 2, 3])},
             {"delta": 0.5, "cap": 0.3}),
        case("edge-boundary-and-zero", {"p": np.array([1.0, -1.0, 0.0, 30.0, 0.25]),
                                        "y": np.array([0.0, 0.0, 0.0, 0.0, 0.0])}, kink=True),
    ]


def cases_multiclass_hinge(g):
    return [
        case("random-5x4", {"z": g.n([5, 4]), "y": g.onehot([5], 4)}),
        case("random-2x3x4-margin0.5", {"z": g.n([2, 3, 4]), "y": g.onehot([2, 3], 4)},
             {"margin": 0.5}),
        case("one-row-4", {"z": g.n([4]), "y": g.onehot([], 4)}),
        case("edge-ties", {"z": np.array([[2.0, 1, 0], [0, 0, 0], [1, 1, 1], [5, -5, 0]]),
                           "y": np.array([[1.0, 0, 0], [0, 1, 0], [1, 0, 0], [1, 0, 0]])}, kink=True),
    ]


def cases_wta(g):
    return [
        case("random-5x4", {"h": g.n([5, 4]), "y": g.n([5])}),
        case("random-2x3x4", {"h": g.n([2, 3, 4]), "y": g.n([2, 3])}),
        case("one-row-4", {"h": g.n([4]), "y": g.n([1])}),
        case("edge-ties", {"h": np.array([[1.0, 3, 5], [0, 0, 0], [2, 2, 7]]),
                           "y": np.array([2.0, 0.0, 2.0])}, kink=True),
    ]


def cases_triplet(g):
    a0 = g.n([4])
    return [
        case("random-5x4", {"a": g.n([5, 4]), "pos": g.n([5, 4]), "neg": g.n([5, 4])}),
        case("random-2x3x4-margin0.5", {"a": g.n([2, 3, 4]), "pos": g.n([2, 3, 4]),
                                        "neg": g.n([2, 3, 4])}, {"margin": 0.5}),
        case("one-row-4", {"a": g.n([4]), "pos": g.n([4]), "neg": g.n([4])}),
        case("edge-anchor-equals-positive", {"a": np.stack([a0, a0]),
                                             "pos": np.stack([a0, a0 + 0.1]),
                                             "neg": np.stack([a0 + 0.25, a0 + 3.0])}),
    ]


def cases_alphazero_value(g):
    return [
        case("random-8", {"v": g.n([8]), "z": g.rng.randint(-1, 2, 8).astype(float)}),
        case("random-3x4", {"v": g.n([3, 4]), "z": g.rng.randint(-1, 2, [3, 4]).astype(float)}),
        case("random-2x2x3", {"v": g.n([2, 2, 3], 2), "z": g.rng.randint(-1, 2, [2, 2, 3]).astype(float)}),
        case("edge-zero-large", {"v": np.array([0.0, 30.0, -30.0, 0.5, 0.0]),
                                 "z": np.array([0.0, 1.0, -1.0, 1.0, 1.0])}),
    ]


def cases_charbonnier(g):
    return [
        case("random-8", {"p": g.n([8]), "y": g.n([8])}),
        case("random-3x4-eps0.1", {"p": g.n([3, 4]), "y": g.n([3, 4])}, {"eps": 0.1}),
        case("random-2x2x3", {"p": g.n([2, 2, 3], 0.01), "y": g.n([2, 2, 3], 0.01)}),
        case("edge-zero-residual", {"p": np.array([0.0, 1.0, -2.0, 30.0]),
                                    "y": np.array([0.0, 1.0, -2.0, -30.0])}),
    ]


def cases_linex(g):
    return [
        case("random-8-a1", {"p": g.n([8]), "y": g.n([8])}, {"a": 1.0}),
        case("random-3x4-a-0.5-b2", {"p": g.n([3, 4]), "y": g.n([3, 4])}, {"a": -0.5, "b": 2.0}),
        case("random-2x2x3-a2", {"p": g.n([2, 2, 3]), "y": g.n([2, 2, 3])}, {"a": 2.0}),
        case("edge-zero-large-a1", {"p": np.array([0.0, 30.0, -30.0, 1.0]),
                                    "y": np.array([0.0, 0.0, 0.0, 1.0])}, {"a": 1.0}),
    ]


def cases_angular(g):
    return [
        case("random-8", {"p": g.u([8], -math.pi, math.pi), "y": g.u([8], -math.pi, math.pi)}),
        case("random-3x4", {"p": g.u([3, 4], -4, 4), "y": g.u([3, 4], -math.pi, math.pi)}),
        case("random-2x2x3", {"p": g.u([2, 2, 3], -10, 10), "y": g.u([2, 2, 3], -math.pi, math.pi)}),
        case("edge-equal-and-opposite", {"p": np.array([0.0, 1.0, 100.0, math.pi, 0.0]),
                                         "y": np.array([0.0, 1.0, 0.0, -math.pi, math.pi])}),
    ]


def cases_cauchy(g):
    return [
        case("random-8", {"p": g.n([8], 2), "y": g.n([8])}),
        case("random-3x4-c0.5", {"p": g.n([3, 4], 2), "y": g.n([3, 4])}, {"c": 0.5}),
        case("random-2x2x3", {"p": g.n([2, 2, 3], 2), "y": g.n([2, 2, 3])}),
        case("edge-zero-large", {"p": np.array([0.0, 3.0, 30.0, -1e3]),
                                 "y": np.array([0.0, 3.0, 0.0, 0.0])}),
    ]


CASES = {name[len("cases_"):]: fn for name, fn in globals().items() if name.startswith("cases_")}


# ----------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------

def num(v):
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return int(v)
    v = float(v) + 0.0  # no negative zeros in outputs
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


def data_list(a):
    a = np.asarray(a)
    if a.dtype.kind in "iu":
        return [int(v) for v in a.reshape(-1)]
    return [num(float(v)) for v in a.reshape(-1)]


def dump(obj):
    """JSON with floats in repr form (shortest round trip), one case per line."""
    head = {k: v for k, v in obj.items() if k != "cases"}
    lines = ["{"]
    for k, v in head.items():
        lines.append(f" {json.dumps(k)}: {json.dumps(v)},")
    lines.append(' "cases": [')
    cases = [json.dumps(c, allow_nan=False) for c in obj["cases"]]
    lines.append(",\n".join("  " + c for c in cases))
    lines.append(" ]")
    lines.append("}")
    return "\n".join(lines)


def lossc_eval(lossc, s, c, mode):
    """Run lossc eval on one case; returns the parsed JSON or an error string."""
    path = os.path.join(HERE, s.name + ".loss")
    args = [lossc, "eval", path]
    for k, v in c["params"].items():
        args.append(f"{k}={v!r}")
    with tempfile.TemporaryDirectory(prefix="lossc-custom-") as tmp:
        for k, v in c["inputs"].items():
            f = os.path.join(tmp, k + ".npy")
            a = np.asarray(v)
            np.save(f, a.astype(np.int64) if a.dtype.kind in "iu" else a.astype(np.float64))
            args.append(f"{k}={f}")
        args += ["--dtype", "f64", "--grad", "--hess", "--json"]
        if mode is not None:
            args += ["--reduce", mode]
        try:
            p = subprocess.run(args, capture_output=True, text=True, timeout=60)
        except Exception as e:  # noqa: BLE001
            return f"failed to run: {e}"
    if p.returncode != 0:
        return f"exit {p.returncode}: {p.stderr.strip()[:300]}"
    try:
        return json.loads(p.stdout)
    except json.JSONDecodeError:
        return f"bad JSON: {p.stdout[:200]}"


def close(a, b, rtol=1e-9, atol=1e-12):
    """Element-wise |a - b| <= atol*max(1, max|b|) + rtol*|b|; NaN matches NaN. Numbers may be
    the JSON strings "nan", "inf", "-inf"."""
    if a is None:
        return False, "missing"
    try:
        a = np.array([float(x) for x in np.atleast_1d(np.asarray(a, dtype=object))], dtype=float)
    except (TypeError, ValueError):
        return False, f"not numbers: {str(a)[:80]}"
    b = np.array([float(x) for x in np.atleast_1d(np.asarray(b, dtype=object))], dtype=float)
    if a.shape != b.shape:
        return False, f"shape {a.shape} vs {b.shape}"
    scale = np.max(np.abs(b[np.isfinite(b)])) if np.isfinite(b).any() else 1.0
    ok = np.isclose(a, b, rtol=rtol, atol=atol * max(scale, 1.0), equal_nan=True)
    if ok.all():
        return True, ""
    i = int(np.argmin(ok))
    return False, f"elem {i}: lossc {a[i]!r} vs ref {b[i]!r} ({int((~ok).sum())} of {ok.size} differ)"


def compare_lossc(out, rec):
    msgs = []
    if isinstance(out, str):
        return [out]
    ok, m = close(out.get("loss"), rec["loss"])
    if not ok:
        msgs.append("loss " + m)
    for key in ("grad", "hess"):
        for n, vals in rec[key].items():
            got = out.get(key, {}).get(n)
            if got is None:
                msgs.append(f"{key}[{n}] missing")
                continue
            ok, m = close(got, vals)
            if not ok:
                msgs.append(f"{key}[{n}] " + m)
    return msgs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", help="comma-separated loss names")
    ap.add_argument("--no-mp", action="store_true", help="skip the mpmath accuracy check")
    ap.add_argument("--no-write", action="store_true", help="do not write the JSON files")
    ap.add_argument("--lossc", help="path of a lossc binary to cross-check against")
    ap.add_argument("--out", default=HERE, help="output directory (default: this folder)")
    args = ap.parse_args()

    names = sorted(SPECS)
    if args.only:
        names = [n for n in args.only.split(",")]
    problems = 0
    lossc_bad = 0
    for seed, name in enumerate(sorted(SPECS)):
        if name not in names:
            continue
        s = SPECS[name]
        assert os.path.exists(os.path.join(HERE, name + ".loss")), name
        g = Gen(1000 + seed)
        cases = CASES[name](g)
        out_cases = []
        for c in cases:
            for mode in c["reduces"]:
                cc = dict(c)
                cc["reduce"] = mode
                label = f"{c['name']}-{mode or 'default'}"
                ref = torch_eval(s, cc)
                msgs = torch_check(s, cc, ref)
                if not args.no_mp:
                    mpr = mp_eval(s, cc, want_derivs=True)
                    msgs += compare_mp(ref, mpr, c["kink"])
                for m in msgs:
                    problems += 1
                    print(f"  [{name}] {label}: {m}")
                rec = {
                    "name": label,
                    "params": {k: num(v) for k, v in c["params"].items()},
                    "inputs": {k: {"shape": list(np.asarray(v).shape), "data": data_list(v)}
                               for k, v in c["inputs"].items()},
                    "reduce": mode,
                    "loss": data_list(ref["loss"]) if isinstance(ref["loss"], np.ndarray)
                    else num(ref["loss"]),
                    "grad": {n: data_list(v) for n, v in ref["grad"].items()},
                    "hess": {n: data_list(v) for n, v in ref["hess"].items()},
                }
                out_cases.append(rec)
                if args.lossc:
                    res = lossc_eval(args.lossc, s, c, mode)
                    for m in compare_lossc(res, rec):
                        lossc_bad += 1
                        print(f"  LOSSC [{name}] {label}: {m}")
        doc = {
            "source": name + ".loss",
            "generator": "tests/data/custom/generate.py",
            "reference": f"torch {torch.__version__.split('+')[0]} float64",
            "dtype": "f64",
            "cases": out_cases,
        }
        text = dump(doc)
        if not args.no_write:
            with open(os.path.join(args.out, name + ".json"), "w") as f:
                f.write(text + "\n")
        worst = ", ".join(f"{k} {v:.2g}" for k, v in sorted(WORST.items()))
        WORST.clear()
        print(f"{name}: {len(out_cases)} cases, {len(text) // 1024} KiB"
              + (f"; worst rel err vs mpmath: {worst}" if worst else ""))
    print(f"done: {problems} reference warnings" + (f", {lossc_bad} lossc disagreements" if args.lossc else ""))


if __name__ == "__main__":
    main()
