#!/usr/bin/env python3
"""Generate golden reference data for lossc's standard library (losses/).

For every stdlib loss, every option (each at a non-default value at least once, boolean
options both ways), every reduction, and a set of edge inputs, this script calls the real
library function -- torch.nn.functional.NAME (PyTorch) or keras.losses.NAME (Keras 3,
TensorFlow backend, called standalone, gradients from tf.GradientTape) -- in float64 and in
float32 on the same inputs, and writes one JSON file per loss per dtype:

    tests/data/stdlib/{torch,keras}/NAME.{f64,f32}.json

Run from the repository root:

    /work/venv/bin/python tests/data/stdlib/generate.py [--only torch/mse_loss ...]

The format is described in tests/data/stdlib/README.md.
"""

import argparse
import json
import math
import os
import sys
import warnings

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import mpmath  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

warnings.filterwarnings("ignore")
mpmath.mp.prec = 200

HERE = os.path.dirname(os.path.abspath(__file__))
GENERATOR = "tests/data/stdlib/generate.py"
INF = float("inf")

# --------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------


class Index:
    """Integer class-index data (an `index` target)."""

    def __init__(self, data, shape=None):
        a = np.asarray(data, dtype=np.int64)
        self.a = a.reshape(shape) if shape is not None else a


def arr(data, shape=None):
    """Float data, rounded through float32 so the f32 and f64 files share exact inputs."""
    a = np.asarray(data, dtype=np.float64).astype(np.float32).astype(np.float64)
    return a.reshape(shape) if shape is not None else a


class Rng:
    def __init__(self, seed):
        self.g = np.random.default_rng(seed)

    def uniform(self, shape, lo, hi):
        return arr(self.g.uniform(lo, hi, size=shape))

    def normal(self, shape, scale=1.0):
        return arr(self.g.normal(0.0, scale, size=shape))

    def probs(self, shape, scale=1.0):
        z = self.g.normal(0.0, scale, size=shape)
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return arr(e / e.sum(axis=-1, keepdims=True))

    def onehot(self, n, c):
        return arr(np.eye(c)[self.g.integers(0, c, size=n)])

    def index(self, n, c):
        return Index(self.g.integers(0, c, size=n))

    def choice(self, shape, values):
        return arr(self.g.choice(values, size=shape))


def scen(name, inputs, params=None, note=None, reduces=None, true=False):
    """One scenario: inputs and params; expanded into one case per reduction."""
    return dict(name=name, inputs=inputs, params=params or {}, note=note,
                reduces=reduces, true=true)


# --------------------------------------------------------------------------------------
# Number formatting
# --------------------------------------------------------------------------------------


def num(v, dtype):
    v = float(v)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if dtype == "f32":
        # Shortest decimal that reads back to the same float32.
        return float(str(np.float32(v)))
    return v


def flat(a, dtype):
    return [num(v, dtype) for v in np.asarray(a, dtype=np.float64).reshape(-1)]


def enc_input(v, dtype):
    if isinstance(v, Index):
        return {"shape": list(v.a.shape), "data": [int(x) for x in v.a.reshape(-1)]}
    return {"shape": list(v.shape), "data": flat(v, dtype)}


def enc_param(v):
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, float) and v.is_integer() and abs(v) < 2**53:
        return v
    return v


# --------------------------------------------------------------------------------------
# Losses: PyTorch
# --------------------------------------------------------------------------------------

TORCH_BOOL = {"log_target", "log_input", "full"}


def torch_kwargs(params):
    kw = {}
    for k, v in params.items():
        kw[k] = bool(v) if k in TORCH_BOOL else v
    return kw


class TorchLoss:
    def __init__(self, name, preds, call, scenarios, reduces=("none", "mean", "sum"),
                 true_elem=None):
        self.lib = "torch"
        self.name = name
        self.preds = preds
        self.call = call  # (tensors: dict, kwargs: dict, reduction: str) -> Tensor
        self.scenarios = scenarios
        self.reduces = reduces
        self.true_elem = true_elem

    def run(self, sc, reduce, dtype):
        tdt = torch.float64 if dtype == "f64" else torch.float32
        t = {}
        for k, v in sc["inputs"].items():
            if isinstance(v, Index):
                t[k] = torch.tensor(v.a, dtype=torch.int64)
            else:
                t[k] = torch.tensor(v, dtype=tdt, requires_grad=k in self.preds)
        out = self.call(t, torch_kwargs(sc["params"]), reduce)
        total = out.sum() if reduce == "none" else out
        grads = {}
        if total.requires_grad:
            gs = torch.autograd.grad(total, [t[p] for p in self.preds], allow_unused=True)
        else:
            gs = [None] * len(self.preds)
        for p, g in zip(self.preds, gs):
            grads[p] = np.zeros(t[p].shape) if g is None else g.detach().double().numpy()
        return out.detach().double().numpy(), grads


def t_bce(t, kw, r):
    return F.binary_cross_entropy(t["input"], t["target"], weight=t.get("weight"),
                                  reduction=r)


def t_bcel(t, kw, r):
    return F.binary_cross_entropy_with_logits(t["input"], t["target"], weight=t.get("weight"),
                                              pos_weight=t.get("pos_weight"), reduction=r)


def t_ce(t, kw, r):
    return F.cross_entropy(t["input"], t["target"], weight=t.get("weight"), reduction=r, **kw)


def t_nll(t, kw, r):
    return F.nll_loss(t["input"], t["target"], weight=t.get("weight"), reduction=r, **kw)


def t_kl(t, kw, r):
    return F.kl_div(t["input"], t["target"], reduction=r, **kw)


def t_l1(t, kw, r):
    return F.l1_loss(t["input"], t["target"], weight=t.get("weight"), reduction=r)


def t_mse(t, kw, r):
    return F.mse_loss(t["input"], t["target"], weight=t.get("weight"), reduction=r)


def t_sl1(t, kw, r):
    return F.smooth_l1_loss(t["input"], t["target"], reduction=r, **kw)


def t_huber(t, kw, r):
    return F.huber_loss(t["input"], t["target"], weight=t.get("weight"), reduction=r, **kw)


def t_hemb(t, kw, r):
    return F.hinge_embedding_loss(t["input"], t["target"], reduction=r, **kw)


def t_cemb(t, kw, r):
    return F.cosine_embedding_loss(t["input1"], t["input2"], t["target"], reduction=r, **kw)


def t_mrank(t, kw, r):
    return F.margin_ranking_loss(t["input1"], t["input2"], t["target"], reduction=r, **kw)


def t_soft(t, kw, r):
    return F.soft_margin_loss(t["input"], t["target"], reduction=r)


def t_mlsm(t, kw, r):
    return F.multilabel_soft_margin_loss(t["input"], t["target"], weight=t.get("weight"),
                                         reduction=r)


def t_pois(t, kw, r):
    return F.poisson_nll_loss(t["input"], t["target"], reduction=r, **kw)


def t_gauss(t, kw, r):
    return F.gaussian_nll_loss(t["input"], t["target"], t["var"], reduction=r, **kw)


# True (infinitely precise) element values and derivatives, for the losses where lossc's
# stability rewriting is meant to beat the reference. Return (value, {pred: derivative}).

def true_soft_margin(ins, params, i):
    x = mpmath.mpf(float(ins["input"].reshape(-1)[i]))
    y = mpmath.mpf(float(ins["target"].reshape(-1)[i]))
    z = -y * x
    val = mpmath.log1p(mpmath.exp(z))
    d = -y * mpmath.exp(z) / (1 + mpmath.exp(z))
    return val, {"input": d}


def true_bce_logits(ins, params, i):
    x = mpmath.mpf(float(ins["input"].reshape(-1)[i]))
    y = mpmath.mpf(float(ins["target"].reshape(-1)[i]))

    def vec(name):
        if name not in ins:
            return mpmath.mpf(1)
        v = ins[name].reshape(-1)
        return mpmath.mpf(float(v[i] if v.size == ins["input"].size else v[i % v.size]))

    w, pw = vec("weight"), vec("pos_weight")
    sp = lambda u: mpmath.log1p(mpmath.exp(u))  # noqa: E731
    sig = lambda u: 1 / (1 + mpmath.exp(-u))  # noqa: E731
    val = w * (pw * y * sp(-x) + (1 - y) * sp(x))
    d = w * ((pw * y + 1 - y) * sig(x) - pw * y)
    return val, {"input": d}


def torch_losses():
    L = []

    # ---- binary_cross_entropy ------------------------------------------------------
    r = Rng(1)
    L.append(TorchLoss("binary_cross_entropy", ["input"], t_bce, [
        scen("basic-1d", {"input": r.uniform([6], 0.02, 0.98), "target": r.uniform([6], 0, 1)}),
        scen("basic-2d", {"input": r.uniform([2, 3], 0.02, 0.98),
                          "target": r.choice([2, 3], [0.0, 1.0])}),
        scen("weight-per-class", {"input": r.uniform([4, 3], 0.02, 0.98),
                                  "target": r.choice([4, 3], [0.0, 1.0]),
                                  "weight": arr([1.0, 2.0, 0.5])},
             note="weight of shape [C] broadcast over the rows"),
        scen("weight-per-element", {"input": arr([[.2, .7, .9], [.4, .1, .5]]),
                                    "target": arr([[0, 1, 1], [1, 0, 0]]),
                                    "weight": arr([[1, 2, 3], [1, 2, 3]])},
             note="mean divides by numel, not by the sum of weights"),
        scen("edge-saturated", {"input": arr([0, 1, 0, 1, 0.5, 1e-30]),
                                "target": arr([0, 1, 1, 0, 0.5, 1])},
             note="-100 log clamp caps the loss at 100; the gradient is torch's backward "
                  "(p-y)/max(p(1-p),1e-12): -1e12 at p=0,y=1 and +1e12 at p=1,y=0"),
        scen("edge-near-floor", {"input": arr([1e-13, 1e-13, 1e-12, 2e-12, 1e-6, 0.999999]),
                                 "target": arr([0, 1, 1, 0.5, 1, 0])},
             note="p(1-p) around the 1e-12 floor of the backward"),
        scen("edge-soft-saturated", {"input": arr([0, 1, 0, 1]), "target": arr([0.3, 0.7, 0.5, 0.5])},
             note="soft labels at saturated probabilities: clamped at -100 both ways"),
    ]))

    # ---- binary_cross_entropy_with_logits -----------------------------------------
    r = Rng(2)
    ex = arr([100, -100, 100, -100, 0, 1000, -1000, 20, -20, 40, -40])
    ey = arr([0, 1, 1, 0, .5, 0, 1, 1, 0, 1, 0])
    L.append(TorchLoss("binary_cross_entropy_with_logits", ["input"], t_bcel, [
        scen("basic-1d", {"input": r.normal([6], 2), "target": r.uniform([6], 0, 1)}, true=True),
        scen("basic-2d", {"input": r.normal([2, 3], 2), "target": r.choice([2, 3], [0.0, 1.0])},
             true=True),
        scen("weight", {"input": r.normal([4, 3], 2), "target": r.choice([4, 3], [0.0, 1.0]),
                        "weight": arr([1.0, 2.0, 0.5])}, true=True),
        scen("pos_weight", {"input": r.normal([4, 3], 2), "target": r.uniform([4, 3], 0, 1),
                            "pos_weight": arr([3.0, 0.5, 1.0])}, true=True),
        scen("weight-pos_weight", {"input": r.normal([2, 3], 2),
                                   "target": r.choice([2, 3], [0.0, 1.0]),
                                   "weight": arr([[1, 2, 3], [0.5, 0, 1]]),
                                   "pos_weight": arr([2.0, 2.0, 0.25])}, true=True),
        scen("edge-extreme-logits", {"input": ex, "target": ey}, true=True,
             note="logits +-100, +-1000, +-20, +-40: torch loses the tiny values "
                  "((1-y)x + softplus(-x) cancels)"),
        scen("edge-extreme-logits-pos_weight", {"input": ex, "target": ey,
                                                "pos_weight": arr([3.0] * 11)}, true=True,
             note="as edge-extreme-logits with pos_weight 3"),
    ], true_elem=true_bce_logits))

    # ---- cross_entropy (index targets) ----------------------------------------------
    r = Rng(3)
    x54 = r.normal([5, 4], 2)
    big = arr([[1000, 0, -1000, 5], [-1000, 1000, 0, 0], [100, -100, 100, 0], [0, 0, 0, 0]])
    L.append(TorchLoss("cross_entropy", ["input"], t_ce, [
        scen("basic", {"input": x54, "target": Index([0, 3, 1, 1, 2])}),
        scen("weight", {"input": x54, "target": Index([0, 3, 1, 1, 2]),
                        "weight": arr([1.0, 0.5, 2.0, 3.0])},
             note="mean divides by the sum of the targets' weights"),
        scen("ignore_index-default", {"input": x54, "target": Index([0, -100, 1, -100, 2])},
             note="rows with target -100 are skipped"),
        scen("ignore_index", {"input": x54, "target": Index([0, 2, 1, 2, 3])},
             params={"ignore_index": 2}, note="ignore_index is a valid class id"),
        scen("weight-ignore_index", {"input": x54, "target": Index([0, 2, 1, 2, 3]),
                                     "weight": arr([1.0, 0.5, 2.0, 3.0])},
             params={"ignore_index": 2}),
        scen("label_smoothing", {"input": x54, "target": Index([0, 3, 1, 1, 2])},
             params={"label_smoothing": 0.1}),
        scen("weight-label_smoothing", {"input": x54, "target": Index([0, 3, 1, 1, 2]),
                                        "weight": arr([1.0, 0.5, 2.0, 3.0])},
             params={"label_smoothing": 0.2},
             note="smoothing term weighted per class and divided by the sum of target weights"),
        scen("weight-ignore_index-label_smoothing",
             {"input": x54, "target": Index([0, 2, 1, 2, 3]), "weight": arr([1.0, 0.5, 2.0, 3.0])},
             params={"ignore_index": 2, "label_smoothing": 0.1}),
        scen("label_smoothing-one", {"input": x54, "target": Index([0, 3, 1, 1, 2])},
             params={"label_smoothing": 1.0}, note="label_smoothing = 1: uniform target"),
        scen("label_smoothing-negative", {"input": x54, "target": Index([0, 3, 1, 1, 2])},
             params={"label_smoothing": -0.1},
             note="torch treats a negative label_smoothing as 0"),
        scen("all-ignored", {"input": x54, "target": Index([-100] * 5)},
             note="every row ignored: mean is 0/0 = NaN, sum 0, gradient 0"),
        scen("all-ignored-label_smoothing", {"input": x54, "target": Index([1] * 5)},
             params={"ignore_index": 1, "label_smoothing": 0.3},
             note="every row ignored with smoothing: mean NaN"),
        scen("extreme-logits", {"input": big, "target": Index([1, 0, 2, 3])},
             note="logits +-100 and +-1000"),
        scen("single-row", {"input": arr([1.0, 2.0, 3.0]), "target": Index(2, shape=())},
             note="1-D input (one row of C) with a 0-d target"),
    ]))

    # ---- cross_entropy_probs -----------------------------------------------------------
    r = Rng(4)
    x54 = r.normal([5, 4], 2)
    p54 = r.probs([5, 4], 1.5)
    L.append(TorchLoss("cross_entropy_probs", ["input"], t_ce, [
        scen("basic", {"input": x54, "target": p54}),
        scen("weight", {"input": x54, "target": p54, "weight": arr([1.0, 0.5, 2.0, 3.0])},
             note="mean divides by the number of rows even with weights"),
        scen("label_smoothing", {"input": x54, "target": p54}, params={"label_smoothing": 0.2}),
        scen("weight-label_smoothing", {"input": x54, "target": p54,
                                        "weight": arr([1.0, 0.5, 2.0, 3.0])},
             params={"label_smoothing": 0.1}),
        scen("ignore_index-negative", {"input": x54, "target": p54}, params={"ignore_index": -1},
             note="a negative ignore_index is accepted and has no effect"),
        scen("unnormalised-targets", {"input": x54, "target": r.uniform([5, 4], -0.5, 1.5)},
             note="targets not summing to 1 (some negative): true gradient softmax*sum(t) - t"),
        scen("onehot", {"input": x54, "target": r.onehot(5, 4)}),
        scen("extreme-logits", {"input": big, "target": arr(np.eye(4)[[1, 0, 2, 3]])},
             note="logits +-100 and +-1000"),
    ]))

    # ---- nll_loss ------------------------------------------------------------------------
    r = Rng(5)
    lp = arr(np.log(r.probs([5, 4], 1.5)))
    L.append(TorchLoss("nll_loss", ["input"], t_nll, [
        scen("basic", {"input": lp, "target": Index([0, 3, 1, 1, 2])}),
        scen("weight", {"input": lp, "target": Index([0, 3, 1, 1, 2]),
                        "weight": arr([1.0, 0.5, 2.0, 3.0])}),
        scen("ignore_index-default", {"input": lp, "target": Index([0, -100, 1, -100, 2])}),
        scen("ignore_index", {"input": lp, "target": Index([0, 1, 1, 3, 2]),
                              "weight": arr([1.0, 0.5, 2.0, 3.0])},
             params={"ignore_index": 1}),
        scen("all-ignored", {"input": lp, "target": Index([-100] * 5)},
             note="mean 0/0 = NaN, sum 0"),
        scen("zero-weights", {"input": lp, "target": Index([0, 0, 2, 2, 0]),
                              "weight": arr([0.0, 1.0, 0.0, 1.0])},
             note="the targets' weights sum to 0: mean NaN"),
        scen("not-log-probs", {"input": r.normal([3, 4], 2), "target": Index([1, 2, 3])},
             note="positive inputs give negative losses; not checked"),
        scen("neg-inf-input", {"input": arr([[-INF, -1.0, -2.0], [-0.5, -INF, -1.0]]),
                               "target": Index([1, 1])},
             note="-inf at a non-target class is harmless; at the target the loss is inf"),
    ]))

    # ---- kl_div ----------------------------------------------------------------------------
    r = Rng(6)
    q = r.probs([2, 3]); t = r.probs([2, 3])
    kl_red = ("none", "mean", "sum", "batchmean")
    L.append(TorchLoss("kl_div", ["input"], t_kl, [
        scen("basic", {"input": arr(np.log(q)), "target": t}),
        scen("log_target", {"input": arr(np.log(q)), "target": arr(np.log(t))},
             params={"log_target": 1}),
        scen("log_target-0", {"input": arr(np.log(q)), "target": t}, params={"log_target": 0}),
        scen("zero-target", {"input": arr(np.log([[.2, .3, .5], [.1, .1, .8]])),
                             "target": arr([[0, .5, .5], [.3, .3, .4]])},
             note="target 0 contributes exactly 0 (xlogy)"),
        scen("1d", {"input": arr(np.log(r.probs([6]))), "target": r.probs([6])},
             note="batchmean of a 1-D input divides by its length"),
        scen("negative-target", {"input": arr([-1.0, -2.0, -0.5]), "target": arr([-0.1, 0.5, 0.6])},
             note="target < 0: NaN value, gradient still -target"),
        scen("log_target-neg-inf", {"input": arr([-1.0, -2.0, -0.5]),
                                    "target": arr([-INF, -0.5, -1.0])},
             params={"log_target": 1}, note="log_target with target -inf: NaN"),
    ], reduces=kl_red))

    # ---- l1_loss / mse_loss ------------------------------------------------------------------
    for nm, fn, seed in (("l1_loss", t_l1, 7), ("mse_loss", t_mse, 8)):
        r = Rng(seed)
        L.append(TorchLoss(nm, ["input"], fn, [
            scen("basic-1d", {"input": r.normal([6]), "target": r.normal([6])}),
            scen("basic-2d", {"input": r.normal([2, 3]), "target": r.normal([2, 3])}),
            scen("ties", {"input": arr([-2, -1, -.5, 0, .5, 1, 2]), "target": arr([0] * 7)}),
            scen("exact-ties", {"input": arr([1.5, -2, 0, 3]), "target": arr([1.5, -2, 0, 1])},
                 note="input = target: gradient 0"),
            scen("weight", {"input": r.normal([2, 3]), "target": r.normal([2, 3]),
                            "weight": r.uniform([2, 3], 0, 2)},
                 note="functional weight: mean = sum(w*l)/sum(w)"),
            scen("large", {"input": arr([1e20, -1e20, 3e30]), "target": arr([0, 1e20, -3e30])}),
        ]))

    # ---- smooth_l1_loss -----------------------------------------------------------------------
    r = Rng(9)
    d7 = arr([-2, -1, -.5, 0, .5, 1, 2])
    L.append(TorchLoss("smooth_l1_loss", ["input"], t_sl1, [
        scen("basic-1d", {"input": r.normal([6], 2), "target": r.normal([6])}),
        scen("basic-2d", {"input": r.normal([2, 3], 2), "target": r.normal([2, 3])}),
        scen("kinks", {"input": d7, "target": arr([0] * 7)}, note="d = +-beta lies on the linear branch"),
        scen("beta-0.5", {"input": d7, "target": arr([0] * 7)}, params={"beta": 0.5}),
        scen("beta-2", {"input": r.normal([2, 3], 2), "target": r.normal([2, 3])},
             params={"beta": 2.0}),
        scen("beta-0", {"input": d7, "target": arr([0] * 7)}, params={"beta": 0.0},
             note="beta = 0 is routed to l1_loss: gradient 0 at d = 0"),
    ]))

    # ---- huber_loss -----------------------------------------------------------------------
    r = Rng(10)
    L.append(TorchLoss("huber_loss", ["input"], t_huber, [
        scen("basic-1d", {"input": r.normal([6], 2), "target": r.normal([6])}),
        scen("basic-2d", {"input": r.normal([2, 3], 2), "target": r.normal([2, 3])}),
        scen("kinks", {"input": d7, "target": arr([0] * 7)}),
        scen("delta-0.5", {"input": d7, "target": arr([0] * 7)}, params={"delta": 0.5}),
        scen("delta-2", {"input": r.normal([2, 3], 2), "target": r.normal([2, 3])},
             params={"delta": 2.0}),
        scen("weight", {"input": r.normal([2, 3], 2), "target": r.normal([2, 3]),
                        "weight": r.uniform([2, 3], 0, 2)},
             note="functional weight: mean = mean(w*l), divided by the count"),
        scen("weight-delta", {"input": d7, "target": arr([0] * 7),
                              "weight": arr([1, 2, 3, 4, 0, 1, 0.5])}, params={"delta": 0.5}),
    ]))

    # ---- hinge_embedding_loss --------------------------------------------------------------
    r = Rng(11)
    L.append(TorchLoss("hinge_embedding_loss", ["input"], t_hemb, [
        scen("basic-1d", {"input": r.uniform([6], -1, 3), "target": r.choice([6], [-1.0, 1.0])}),
        scen("basic-2d", {"input": r.uniform([2, 3], -1, 3), "target": r.choice([2, 3], [-1.0, 1.0])}),
        scen("labels", {"input": arr([-1, 0, .5, 1, 2, .5]), "target": arr([1, 1, -1, -1, -1, 0])},
             note="label 0 adds both branches; x = margin (1) with y = -1 has gradient 0 (torch >= 2.14)"),
        scen("margin-0.5", {"input": arr([-1, 0, .5, 1, 2, .25]), "target": arr([-1, -1, -1, -1, 1, 0])},
             params={"margin": 0.5}, note="x = margin tie at index 2"),
        scen("margin-2", {"input": r.uniform([2, 3], -1, 3), "target": r.choice([2, 3], [-1.0, 1.0])},
             params={"margin": 2.0}),
    ]))

    # ---- cosine_embedding_loss -----------------------------------------------------------
    r = Rng(12)
    L.append(TorchLoss("cosine_embedding_loss", ["input1", "input2"], t_cemb, [
        scen("basic", {"input1": r.normal([5, 3]), "input2": r.normal([5, 3]),
                       "target": arr([1, -1, 1, -1, -1])}),
        scen("margin-0.5", {"input1": r.normal([5, 3]), "input2": r.normal([5, 3]),
                            "target": arr([1, -1, 1, -1, -1])}, params={"margin": 0.5}),
        scen("margin-negative", {"input1": r.normal([4, 3]), "input2": r.normal([4, 3]),
                                 "target": arr([-1, -1, -1, 1])}, params={"margin": -0.3}),
        scen("edge", {"input1": arr([[1, 0], [0, 0], [1, 1], [1, 0], [1, 0], [0, 0]]),
                      "input2": arr([[1, 0], [1, 0], [-1, -1], [0, 1], [1, 0], [0, 0]]),
                      "target": arr([1, 1, -1, -1, 0, 1])},
             note="zero vectors (cos = 0 through the 1e-12 epsilon, gradient ~-1e6*x2); "
                  "cos = margin = 0 tie with y = -1 (gradient 0); label 0 gives 0"),
        scen("tiny-vectors", {"input1": arr([[1e-9, 0], [1e-7, 1e-7]]),
                              "input2": arr([[1, 0], [1e-7, 1e-7]]), "target": arr([1, -1])},
             note="the 1e-12 epsilon on squared norms: tiny vectors are not scale invariant"),
        scen("single-row", {"input1": arr([1.0, 2.0, 3.0]), "input2": arr([-1.0, 0.5, 2.0]),
                            "target": arr(1.0, shape=())},
             note="1-D inputs with a 0-d target"),
    ]))

    # ---- margin_ranking_loss --------------------------------------------------------------
    r = Rng(13)
    L.append(TorchLoss("margin_ranking_loss", ["input1", "input2"], t_mrank, [
        scen("basic-1d", {"input1": r.normal([6]), "input2": r.normal([6]),
                          "target": r.choice([6], [-1.0, 1.0])}),
        scen("basic-2d", {"input1": r.normal([2, 3]), "input2": r.normal([2, 3]),
                          "target": r.choice([2, 3], [-1.0, 1.0])}),
        scen("kinks", {"input1": arr([1, 2, 0, 3]), "input2": arr([2, 1, 0, 3]),
                       "target": arr([1, 1, -1, 1])},
             note="ties at the hinge (-y(x1-x2) + margin = 0) have gradient 0 (torch >= 2.14)"),
        scen("margin-1", {"input1": arr([1, 2, 0, 3, 1.5]), "input2": arr([2, 1, 0, 3, 0.5]),
                          "target": arr([1, 1, -1, 1, 1])}, params={"margin": 1.0},
             note="index 4 sits on the hinge"),
        scen("margin-0.5", {"input1": r.normal([2, 3]), "input2": r.normal([2, 3]),
                            "target": r.choice([2, 3], [-1.0, 1.0])}, params={"margin": 0.5}),
    ]))

    # ---- soft_margin_loss -------------------------------------------------------------------
    r = Rng(14)
    L.append(TorchLoss("soft_margin_loss", ["input"], t_soft, [
        scen("basic-1d", {"input": r.normal([6], 2), "target": r.choice([6], [-1.0, 1.0])}, true=True),
        scen("basic-2d", {"input": r.normal([2, 3], 2), "target": r.choice([2, 3], [-1.0, 1.0])},
             true=True),
        scen("edge-overflow", {"input": arr([-100, -50, 0, 50, 100, -89, -88, -800, 800]),
                               "target": arr([1, 1, 1, -1, -1, 1, 1, 1, 1])}, true=True,
             note="torch overflows (inf loss, NaN gradient) where -y*x > ~88.7 (f32) or > ~709.8 "
                  "(f64); lossc rewrites it to softplus"),
    ], true_elem=true_soft_margin))

    # ---- multilabel_soft_margin_loss -----------------------------------------------------
    r = Rng(15)
    L.append(TorchLoss("multilabel_soft_margin_loss", ["input"], t_mlsm, [
        scen("basic", {"input": r.normal([4, 3], 2), "target": r.choice([4, 3], [0.0, 1.0])}),
        scen("weight", {"input": r.normal([4, 3], 2), "target": r.choice([4, 3], [0.0, 1.0]),
                        "weight": arr([1.0, 2.0, 0.5])}),
        scen("soft-labels", {"input": r.normal([2, 5], 2), "target": r.uniform([2, 5], 0, 1)}),
        scen("extreme-logits", {"input": arr([[1000, -1000, 100], [-100, 0, 1000]]),
                                "target": arr([[0, 1, 1], [0, 1, 1]])},
             note="log_sigmoid is stable at |x| = 1000"),
        scen("single-row", {"input": arr([0.5, -1.0, 2.0, 0.0]), "target": arr([1, 0, 1, 0])},
             note="1-D input: one row"),
    ]))

    # ---- poisson_nll_loss -------------------------------------------------------------------
    r = Rng(16)
    L.append(TorchLoss("poisson_nll_loss", ["input"], t_pois, [
        scen("basic", {"input": r.normal([6]), "target": r.choice([6], [0.0, 1.0, 2.0, 3.0, 5.0])}),
        scen("log_input-1", {"input": r.normal([2, 3]), "target": r.choice([2, 3], [0.0, 1.0, 4.0])},
             params={"log_input": 1}),
        scen("full", {"input": arr([0, 1, -1, 0, 2, 0.5]), "target": arr([0, 2, 3, 5, 1, 1.5])},
             params={"full": 1}, note="Stirling term only where target > 1"),
        scen("prob-input", {"input": arr([0, 1, 2, .5, 3, 0.1]), "target": arr([0, 2, 3, 5, 1, 0])},
             params={"log_input": 0}, note="input = 0, target 0: 0*log(1e-8) = 0"),
        scen("prob-input-full", {"input": r.uniform([2, 3], 0.1, 4),
                                 "target": r.choice([2, 3], [0.0, 1.0, 2.0, 7.0])},
             params={"log_input": 0, "full": 1}),
        scen("prob-input-eps", {"input": arr([0, 1e-4, 1, 2]), "target": arr([1, 2, 0, 3])},
             params={"log_input": 0, "eps": 1e-3}),
        scen("overflow", {"input": arr([80, 100, 800, -100]), "target": arr([1, 2, 0, 3])},
             note="exp(input) overflows (f32 above ~88.7, f64 above ~709.8): the true value "
                  "overflows too"),
        scen("negative-prob-input", {"input": arr([-1.0, 0.5]), "target": arr([1.0, 1.0])},
             params={"log_input": 0}, note="input < -eps with log_input = 0: NaN"),
    ]))

    # ---- gaussian_nll_loss -------------------------------------------------------------
    r = Rng(17)
    L.append(TorchLoss("gaussian_nll_loss", ["input", "var"], t_gauss, [
        scen("basic-1d", {"input": r.normal([6]), "target": r.normal([6]),
                          "var": r.uniform([6], 0.1, 2)}),
        scen("basic-2d", {"input": r.normal([2, 3]), "target": r.normal([2, 3]),
                          "var": r.uniform([2, 3], 0.1, 2)}),
        scen("full", {"input": arr([0, 1, 2]), "target": arr([.5, 1, 0]), "var": arr([1, 1e-8, .5])},
             params={"full": 1}),
        scen("full-0", {"input": arr([0, 1, 2]), "target": arr([.5, 1, 0]), "var": arr([1, 1e-8, .5])},
             params={"full": 0},
             note="var = 1e-8 < eps: value uses eps, gradient w.r.t. var flows as if unclamped"),
        scen("eps", {"input": arr([0, 1, 2, 3]), "target": arr([.5, 1, 0, 3]),
                     "var": arr([1e-4, 1e-2, 0, 2e-3])}, params={"eps": 1e-3},
             note="var below eps and var = 0 (clamped in the forward only)"),
        scen("eps-full", {"input": r.normal([2, 3]), "target": r.normal([2, 3]),
                          "var": r.uniform([2, 3], 0, 0.01)}, params={"eps": 1e-3, "full": 1}),
    ]))

    for l in L:
        l.name = "torch/" + l.name
    return L


# --------------------------------------------------------------------------------------
# Losses: Keras
# --------------------------------------------------------------------------------------

KERAS_CLASS = {
    "binary_crossentropy": "BinaryCrossentropy",
    "categorical_crossentropy": "CategoricalCrossentropy",
    "sparse_categorical_crossentropy": "SparseCategoricalCrossentropy",
    "kl_divergence": "KLDivergence",
    "mean_absolute_error": "MeanAbsoluteError",
    "mean_absolute_percentage_error": "MeanAbsolutePercentageError",
    "huber": "Huber",
    "mean_squared_error": "MeanSquaredError",
    "mean_squared_logarithmic_error": "MeanSquaredLogarithmicError",
    "categorical_hinge": "CategoricalHinge",
    "hinge": "Hinge",
    "squared_hinge": "SquaredHinge",
    "cosine_similarity": "CosineSimilarity",
    "log_cosh": "LogCosh",
    "poisson": "Poisson",
}
KERAS_BOOL = {"from_logits"}
KERAS_RED = {"none": None, "mean_or_zero": "sum_over_batch_size", "sum": "sum"}


class KerasLoss:
    def __init__(self, name, scenarios, reduces=("none", "mean_or_zero", "sum")):
        self.lib = "keras"
        self.name = name
        self.fn = name
        self.preds = ["y_pred"]
        self.scenarios = scenarios
        self.reduces = reduces
        self.true_elem = None

    def run(self, sc, reduce, dtype):
        import keras
        import tensorflow as tf
        tdt = tf.float64 if dtype == "f64" else tf.float32
        keras.config.set_floatx("float64" if dtype == "f64" else "float32")
        params = dict(sc["params"])
        eps = params.pop("epsilon", 1e-7)
        kw = {k: (bool(v) if k in KERAS_BOOL else v) for k, v in params.items()}
        yt = sc["inputs"]["y_true"]
        yt = yt.a.astype(np.float64) if isinstance(yt, Index) else yt
        y_true = tf.constant(yt, dtype=tdt)
        y_pred = tf.constant(sc["inputs"]["y_pred"], dtype=tdt)
        keras.config.set_epsilon(eps)
        try:
            with tf.GradientTape() as tape:
                tape.watch(y_pred)
                if reduce == "none":
                    out = getattr(keras.losses, self.fn)(y_true, y_pred, **kw)
                    total = tf.reduce_sum(out)
                else:
                    cls = getattr(keras.losses, KERAS_CLASS[self.fn])
                    out = cls(reduction=KERAS_RED[reduce], **kw)(y_true, y_pred)
                    total = out
            g = tape.gradient(total, y_pred)
        finally:
            keras.config.set_epsilon(1e-7)
            keras.config.set_floatx("float32")
        g = np.zeros(y_pred.shape) if g is None else g.numpy().astype(np.float64)
        return np.asarray(out.numpy(), dtype=np.float64), {"y_pred": g}


def keras_losses():
    L = []
    E20 = 2.0 ** -20  # an epsilon exactly representable in f32 and f64: exact clip-bound ties

    # ---- binary_crossentropy -------------------------------------------------------------
    r = Rng(101)
    pp, yy = r.uniform([4, 3], 0.02, 0.98), r.choice([4, 3], [0.0, 1.0])
    xx = r.normal([4, 3], 3)
    L.append(KerasLoss("binary_crossentropy", [
        scen("probs", {"y_true": yy, "y_pred": pp}),
        scen("probs-from_logits-0", {"y_true": r.uniform([4, 3], 0, 1), "y_pred": pp},
             params={"from_logits": 0}),
        scen("logits", {"y_true": yy, "y_pred": xx}, params={"from_logits": 1}),
        scen("label_smoothing", {"y_true": yy, "y_pred": pp}, params={"label_smoothing": 0.2}),
        scen("logits-label_smoothing", {"y_true": yy, "y_pred": xx},
             params={"from_logits": 1, "label_smoothing": 0.1}),
        scen("epsilon", {"y_true": arr([[0, 1, 1], [0, 1, 0.5]]), "y_pred": arr([[0, 1, 0], [1, 1e-5, .5]])},
             params={"epsilon": 1e-4}),
        scen("saturated-probs", {"y_true": arr([[0, 1, 1], [0, 0.5, 1]]),
                                 "y_pred": arr([[0, 1, 0], [1, 0.5, 1e-30]])},
             note="clip to [eps, 1-eps]: p=0,y=1 -> 16.118 (f32), p=1,y=0 -> 15.942 (f32, "
                  "1-1e-7 rounds to 0.99999988); zero gradient outside the clip range"),
        scen("clip-bound-ties", {"y_true": arr([[1, 0, 1], [0, 1, 0.5]]),
                                 "y_pred": arr([[E20, E20, 1 - E20], [1 - E20, 0.5, E20]])},
             params={"epsilon": E20},
             note="p exactly at the clip bounds (epsilon = 2^-20): tf.clip_by_value passes the gradient"),
        scen("extreme-logits", {"y_true": arr([[0, 1, 0, .5, 1], [1, 0, 1, 0, 0.5]]),
                                "y_pred": arr([[100, -100, 1000, 0, 20], [-1000, 100, -20, -20, 40]])},
             params={"from_logits": 1}, note="logits +-100, +-1000; TF's stable form"),
        scen("rank3", {"y_true": r.choice([2, 2, 3], [0.0, 1.0]), "y_pred": r.uniform([2, 2, 3], 0.05, 0.95)},
             note="[2, 2, 3]: 4 rows"),
    ]))

    # ---- categorical_crossentropy -----------------------------------------------------
    r = Rng(102)
    pr = r.probs([4, 3]); oh = r.onehot(4, 3); xl = r.normal([4, 3], 2)
    L.append(KerasLoss("categorical_crossentropy", [
        scen("probs", {"y_true": oh, "y_pred": pr}),
        scen("probs-soft-targets", {"y_true": r.probs([4, 3]), "y_pred": pr},
             params={"from_logits": 0}),
        scen("logits", {"y_true": oh, "y_pred": xl}, params={"from_logits": 1}),
        scen("label_smoothing", {"y_true": oh, "y_pred": pr}, params={"label_smoothing": 0.1}),
        scen("logits-label_smoothing", {"y_true": oh, "y_pred": xl},
             params={"from_logits": 1, "label_smoothing": 0.2}),
        scen("epsilon", {"y_true": arr([[0, 1, 0], [0, 0, 1]]), "y_pred": arr([[.05, .95, 0], [.1, .8, .1]])},
             params={"epsilon": 1e-3}),
        scen("edge-probs", {"y_true": arr([[0, 1, 0], [0, 0, 1], [1, 0, 0]]),
                            "y_pred": arr([[.05, .95, 0], [.3, 2.4, .3], [0, .5, .5]])},
             note="renormalised rows (p*3 gives the same loss); target class with p = 0: "
                  "the whole row's gradient is 0"),
        scen("logits-unnormalised-labels", {"y_true": arr([[.5, .5, .5], [1, 1, 0]]),
                                            "y_pred": arr([[1, 2, 3], [0, -1, 2]])},
             params={"from_logits": 1},
             note="labels not summing to 1: TF's fused op gradient is softmax - y, not the "
                  "derivative of its forward"),
        scen("extreme-logits", {"y_true": arr([[0, 0, 1], [0, 1, 0]]),
                                "y_pred": arr([[1, 2, 3], [1000, 0, -1000]])},
             params={"from_logits": 1}),
        scen("rank3", {"y_true": arr(np.eye(3)[[[0, 2], [1, 1]]]), "y_pred": r.probs([2, 2, 3])},
             note="[2, 2, 3]: 4 rows"),
    ]))

    # ---- sparse_categorical_crossentropy ----------------------------------------------------
    r = Rng(103)
    pr = r.probs([4, 3]); xl = r.normal([4, 3], 2)
    L.append(KerasLoss("sparse_categorical_crossentropy", [
        scen("probs", {"y_true": Index([1, 2, 0, 1]), "y_pred": pr}),
        scen("logits", {"y_true": Index([1, 2, 0, 1]), "y_pred": xl}, params={"from_logits": 1}),
        scen("probs-from_logits-0", {"y_true": Index([0, 0, 2, 1]), "y_pred": pr},
             params={"from_logits": 0}),
        scen("ignore_class", {"y_true": Index([2, -1, 0]),
                              "y_pred": arr([[1, 2, 3], [1, 2, 3], [3, 2, 1]])},
             params={"from_logits": 1, "ignore_class": -1},
             note="ignored rows: loss 0, gradient 0, mean over the valid rows"),
        scen("ignore_class-valid-id", {"y_true": Index([1, 2, 0, 1]), "y_pred": pr},
             params={"ignore_class": 1}, note="ignore_class is a valid class id"),
        scen("all-ignored", {"y_true": Index([-1, -1, -1]), "y_pred": arr([[1, 2, 3], [1, 2, 3], [3, 2, 1]])},
             params={"from_logits": 1, "ignore_class": -1}, note="all ignored: mean_or_zero gives 0"),
        scen("epsilon", {"y_true": Index([1, 2]), "y_pred": arr([[.05, .95, 0], [.1, .8, .1]])},
             params={"epsilon": 1e-3}),
        scen("edge-probs", {"y_true": Index([1, 2, 0]),
                            "y_pred": arr([[.15, 2.85, 0], [.05, .95, 0], [0, .5, .5]])},
             note="TF does not renormalise before clipping (p*3 changes the loss); p = 0 on "
                  "the target: 16.118 and gradient 1/sum on the other classes"),
        scen("extreme-logits", {"y_true": Index([0, 1]), "y_pred": arr([[1000, 0, -1000], [100, -100, 0]])},
             params={"from_logits": 1}),
        scen("rank3", {"y_true": Index([[0, 2], [1, 1]]), "y_pred": r.probs([2, 2, 3])},
             note="[2, 2, 3] with [2, 2] labels: 4 rows"),
    ]))

    # ---- kl_divergence -------------------------------------------------------------------
    r = Rng(104)
    L.append(KerasLoss("kl_divergence", [
        scen("basic", {"y_true": r.probs([4, 3]), "y_pred": r.probs([4, 3])}),
        scen("zeros", {"y_true": arr([[0, .5, .5], [.3, .3, .4]]), "y_pred": arr([[.2, .3, .5], [.1, .1, .8]])},
             note="y_true = 0 is clipped to 1e-7: a tiny negative contribution"),
        scen("clip-edges", {"y_true": arr([[1, 0], [2, 3]]), "y_pred": arr([[0, 1], [0.5, 1.5]])},
             note="y_pred = 0 gets no gradient; y_pred = 1 at the bound passes; > 1 clipped"),
        scen("epsilon", {"y_true": arr([[0, .5, .5], [1, 0, 0]]), "y_pred": arr([[.2, .3, .5], [0, .5, .5]])},
             params={"epsilon": 1e-3}),
        scen("epsilon-tie", {"y_true": arr([[0.5, 0.5]]), "y_pred": arr([[E20, 1 - E20]])},
             params={"epsilon": E20}, note="y_pred exactly at the lower clip bound"),
    ]))

    # ---- mean_absolute_error ------------------------------------------------------------------
    r = Rng(105)
    L.append(KerasLoss("mean_absolute_error", [
        scen("basic", {"y_true": r.normal([4, 3]), "y_pred": r.normal([4, 3])}),
        scen("ties", {"y_true": arr([[0, 1, 2, 0], [1, 1, 1, 1]]), "y_pred": arr([[0, 2, 2, -1], [1, 0, 1, 3]])},
             note="y_pred = y_true: gradient 0 (TensorFlow abs'(0) = 0)"),
        scen("rank3", {"y_true": r.normal([2, 2, 3]), "y_pred": r.normal([2, 2, 3])}),
    ]))

    # ---- mean_absolute_percentage_error -------------------------------------------------------
    r = Rng(106)
    L.append(KerasLoss("mean_absolute_percentage_error", [
        scen("basic", {"y_true": r.uniform([4, 3], 0.5, 3), "y_pred": r.normal([4, 3], 2)}),
        scen("zero-true", {"y_true": arr([[0, 1, 2, 0]]), "y_pred": arr([[0, 2, 2, -1]])},
             note="y_true = 0: divisor epsilon, huge but finite"),
        scen("negative-true", {"y_true": arr([[-2, -1, 3], [0.5, -0.5, 1]]), "y_pred": arr([[-1, -1, 2], [1, 0, 1]])},
             note="the floor is on |y_true|"),
        scen("epsilon", {"y_true": arr([[0, 1e-5, 2], [1e-3, 0, 1]]), "y_pred": arr([[1, 0, 2], [0, 0.5, 2]])},
             params={"epsilon": 1e-3}),
    ]))

    # ---- huber ---------------------------------------------------------------------------
    r = Rng(107)
    e7 = arr([[-2, -1, -.5, 0, .5, 1, 2]])
    L.append(KerasLoss("huber", [
        scen("basic", {"y_true": r.normal([4, 3]), "y_pred": r.normal([4, 3], 2)}),
        scen("kinks", {"y_true": arr([[0] * 7]), "y_pred": e7}, note="|e| = delta uses the quadratic branch"),
        scen("delta-0.5", {"y_true": arr([[0] * 7]), "y_pred": e7}, params={"delta": 0.5}),
        scen("delta-2", {"y_true": r.normal([4, 3]), "y_pred": r.normal([4, 3], 2)}, params={"delta": 2.0}),
        scen("delta-0", {"y_true": arr([[0, 1], [2, 2]]), "y_pred": arr([[0.5, 1], [0, 2]])},
             params={"delta": 0.0}, note="delta = 0: 0 everywhere"),
        scen("delta-negative", {"y_true": arr([[0, 0]]), "y_pred": arr([[1, -2]])}, params={"delta": -1.0},
             note="not validated: negative losses"),
    ]))

    # ---- mean_squared_error ------------------------------------------------------------
    r = Rng(108)
    L.append(KerasLoss("mean_squared_error", [
        scen("basic", {"y_true": r.normal([4, 3]), "y_pred": r.normal([4, 3])}),
        scen("single-row", {"y_true": arr([[0, 1, 2, 0]]), "y_pred": arr([[0, 2, 2, -1]])}),
        scen("rank3", {"y_true": r.normal([2, 2, 3]), "y_pred": r.normal([2, 2, 3])}),
    ]))

    # ---- mean_squared_logarithmic_error ------------------------------------------------
    r = Rng(109)
    L.append(KerasLoss("mean_squared_logarithmic_error", [
        scen("basic", {"y_true": r.uniform([4, 3], 0, 3), "y_pred": r.uniform([4, 3], 0, 3)}),
        scen("negatives", {"y_true": arr([[-5, 1, 0, 2], [1, -1, 3, -0.5]]),
                           "y_pred": arr([[-3, -1, 0, 2], [-2, 0.5, -1e-3, 1]])},
             note="both arguments floored at epsilon: negative predictions have zero gradient"),
        scen("epsilon", {"y_true": arr([[0, 1, 2]]), "y_pred": arr([[0, 1e-4, 3]])},
             params={"epsilon": 2.0 ** -10},
             note="epsilon exactly representable in float32: Keras converts this epsilon to a "
                  "float32 tensor even in float64, which lossc does not reproduce"),
        scen("epsilon-tie", {"y_true": arr([[1, 0, 2]]), "y_pred": arr([[E20, E20, 1]])},
             params={"epsilon": E20},
             note="y_pred = epsilon: TF's maximum gives the tie's gradient to y_pred"),
    ]))

    # ---- categorical_hinge ----------------------------------------------------------
    r = Rng(110)
    L.append(KerasLoss("categorical_hinge", [
        scen("basic", {"y_true": r.onehot(4, 3), "y_pred": r.normal([4, 3])}),
        scen("edge", {"y_true": arr([[0, 1, 0], [0, 1, 0], [1, 0, 0], [0, 1, 0]]),
                      "y_pred": arr([[.3, .5, .3], [-1, -2, -3], [1, 1, 0], [0, 1, 0]])},
             note="ties inside the max split evenly (masked true class included); the outer "
                  "hinge tie (last row) passes the full gradient (TF)"),
        scen("rank3", {"y_true": arr(np.eye(3)[[[0, 2], [1, 1]]]), "y_pred": r.normal([2, 2, 3])}),
    ]))

    # ---- hinge / squared_hinge ----------------------------------------------------------
    for nm, seed in (("hinge", 111), ("squared_hinge", 112)):
        r = Rng(seed)
        L.append(KerasLoss(nm, [
            scen("pm1-labels", {"y_true": r.choice([4, 3], [-1.0, 1.0]), "y_pred": r.normal([4, 3], 1.5)}),
            scen("binary-labels", {"y_true": r.choice([4, 3], [0.0, 1.0]), "y_pred": r.normal([4, 3], 1.5)},
                 note="every label 0 or 1: converted to -1/1"),
            scen("kinks", {"y_true": arr([[1, 1, 0, 0]]), "y_pred": arr([[.5, 1, -1, 2]])},
                 note="converted labels; y*p = 1 ties at indices 1 and 2: TF gives the full gradient"),
            scen("mixed-labels", {"y_true": arr([[-1, 0, 1], [1, 0, -1]]), "y_pred": arr([[.5, 1, 2], [0, -1, .5]])},
                 note="labels mixing -1, 0, 1 are not converted: label 0 gives 1, gradient 0"),
            scen("all-zero-labels", {"y_true": arr([[0, 0], [0, 0]]), "y_pred": arr([[.5, -2], [-1, 1]])},
                 note="all-0 labels are 'binary': all become -1"),
        ]))

    # ---- cosine_similarity -------------------------------------------------------------
    r = Rng(113)
    L.append(KerasLoss("cosine_similarity", [
        scen("basic", {"y_true": r.normal([4, 3]), "y_pred": r.normal([4, 3])}),
        scen("edge", {"y_true": arr([[1, 0], [0, 0], [1, 1], [0, 0], [1, 0]]),
                      "y_pred": arr([[1, 0], [1, 0], [-1, -1], [0, 0], [0, 0]])},
             note="zero vectors: loss 0; y_pred = 0 with y_true = [1, 0]: gradient [-1/eps, 0] (TF)"),
        scen("tiny-vectors", {"y_true": arr([[1, 0], [1, 1]]), "y_pred": arr([[1e-9, 0], [1e-8, 3e-8]])},
             note="norms below epsilon count as epsilon: not scale invariant"),
        scen("epsilon", {"y_true": arr([[1, 0], [1, 1]]), "y_pred": arr([[1e-4, 0], [0.3, 0.1]])},
             params={"epsilon": 1e-3}),
        scen("epsilon-tie", {"y_true": arr([[1, 1], [0.5, -1]]), "y_pred": arr([[E20, 0], [0, E20]])},
             params={"epsilon": E20},
             note="|y_pred| = epsilon exactly: rsqrt(sum) ties 1/epsilon in TF's minimum, whose "
                  "gradient goes to its first argument (the rsqrt)"),
    ]))

    # ---- log_cosh ----------------------------------------------------------------------
    r = Rng(114)
    L.append(KerasLoss("log_cosh", [
        scen("basic", {"y_true": r.normal([4, 3]), "y_pred": r.normal([4, 3], 2)}),
        scen("extreme", {"y_true": arr([[0, 0, 0], [0, 5, -3]]), "y_pred": arr([[0, 100, -1000], [1e-4, 5, 700]])},
             note="stable for any finite error"),
    ]))

    # ---- poisson ---------------------------------------------------------------------
    r = Rng(115)
    L.append(KerasLoss("poisson", [
        scen("basic", {"y_true": r.choice([4, 3], [0.0, 1.0, 2.0, 4.0]), "y_pred": r.uniform([4, 3], 0.1, 4)}),
        scen("edge", {"y_true": arr([[0, 1, 2], [1, 0, 3]]), "y_pred": arr([[0, 0, 1], [1e-9, 5, 0.5]])},
             note="y_pred = 0, y_true = 1: -log(eps)"),
        scen("negative-pred", {"y_true": arr([[1, 1]]), "y_pred": arr([[-1, 0.5]])},
             note="y_pred < -eps: NaN"),
        scen("epsilon", {"y_true": arr([[0, 1, 2]]), "y_pred": arr([[0, 0, 1]])}, params={"epsilon": 1e-3}),
    ]))

    for l in L:
        l.name = "keras/" + l.name
    return L


# --------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------


def reduce_true(vals, grads, reduce, n_first_axis):
    """Apply a reduction to per-element mpmath values and derivatives."""
    n = len(vals)
    if reduce == "none":
        return vals, grads
    s = mpmath.fsum(vals)
    if reduce == "sum":
        return s, grads
    den = {"mean": n, "batchmean": n_first_axis}[reduce]
    return s / den, {k: [d / den for d in v] for k, v in grads.items()}


def round_to(v, dtype):
    x = float(v)  # mpmath -> nearest double
    if dtype == "f32":
        x = float(np.float32(x))
    return x


def versions():
    import keras
    import tensorflow as tf
    return {"torch": torch.__version__.split("+")[0], "keras": keras.__version__,
            "tensorflow": tf.__version__}


def build(loss, dtype, ver):
    cases = []
    for sc in loss.scenarios:
        reduces = sc["reduces"] or loss.reduces
        for red in reduces:
            out, grads = loss.run(sc, red, dtype)
            case = {"name": f"{sc['name']}-{red}",
                    "params": {k: enc_param(v) for k, v in sc["params"].items()},
                    "inputs": {k: enc_input(v, dtype) for k, v in sc["inputs"].items()},
                    "reduce": red,
                    "loss": flat(out, dtype) if red == "none" else num(out.reshape(()), dtype),
                    "grad": {p: flat(grads[p], dtype) for p in loss.preds}}
            if sc["true"] and loss.true_elem is not None:
                ins = sc["inputs"]
                n = ins[loss.preds[0]].size
                vals, ders = [], {p: [] for p in loss.preds}
                for i in range(n):
                    v, d = loss.true_elem(ins, sc["params"], i)
                    vals.append(v)
                    for p in loss.preds:
                        ders[p].append(d[p])
                shape = ins[loss.preds[0]].shape
                tv, tg = reduce_true(vals, ders, red, shape[0] if len(shape) else 1)
                case["loss_true"] = ([num(round_to(v, dtype), dtype) for v in tv]
                                     if red == "none" else num(round_to(tv, dtype), dtype))
                case["grad_true"] = {p: [num(round_to(v, dtype), dtype) for v in tg[p]]
                                     for p in loss.preds}
            if sc["note"]:
                case["note"] = sc["note"]
            if sc["true"] and loss.true_elem is not None:
                extra = ("loss_true/grad_true: the exact value (mpmath), rounded to " +
                         ("float32" if dtype == "f32" else "float64") +
                         "; lossc's stability rewriting is meant to match it where the "
                         "library loses digits")
                case["note"] = (case.get("note", "") + ("; " if "note" in case else "") + extra)
            cases.append(case)
    if loss.lib == "torch":
        ref = f"torch {ver['torch']} {'float64' if dtype == 'f64' else 'float32'}"
    else:
        ref = (f"keras {ver['keras']} (tensorflow {ver['tensorflow']}) "
               f"{'float64' if dtype == 'f64' else 'float32'}")
    return {"source": loss.name, "generator": GENERATOR, "reference": ref, "dtype": dtype,
            "cases": cases}


def dump(obj):
    """The header fields one per line, then one case per line (compact, diff-friendly)."""
    head = {k: v for k, v in obj.items() if k != "cases"}
    lines = ["{"]
    lines += [f" {json.dumps(k)}: {json.dumps(v)}," for k, v in head.items()]
    lines.append(' "cases": [')
    cases = [json.dumps(c, allow_nan=False, separators=(", ", ": ")) for c in obj["cases"]]
    lines += ["  " + c + ("," if i + 1 < len(cases) else "") for i, c in enumerate(cases)]
    lines += [" ]", "}"]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="*", help="stdlib names to regenerate, e.g. torch/mse_loss")
    ap.add_argument("--out", default=HERE, help="output directory (default: next to this script)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    ver = versions()
    losses = torch_losses() + keras_losses()
    names = {l.name for l in losses}
    if args.only:
        bad = [n for n in args.only if n not in names]
        if bad:
            sys.exit(f"unknown loss(es): {', '.join(bad)}")
        losses = [l for l in losses if l.name in args.only]
    for loss in losses:
        for dtype in ("f64", "f32"):
            obj = build(loss, dtype, ver)
            path = os.path.join(args.out, loss.name + f".{dtype}.json")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            text = dump(obj)
            with open(path, "w") as f:
                f.write(text)
            print(f"{path}: {len(obj['cases'])} cases, {len(text) // 1024} KiB")


if __name__ == "__main__":
    main()
