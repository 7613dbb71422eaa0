#!/usr/bin/env python3
"""Writes evidently_family_values.json, the reference values for
tests/evidently_family.rs: every tabular drift test Evidently 0.7.23 registers,
run through Evidently's own StatTest objects on synthetic samples.

Run with the versions the parity note names (evidently 0.7.23, pandas 2.3,
numpy 2.4.6, scipy 1.17.1, Python 3.11):

    python3 -m venv /tmp/evd-venv
    /tmp/evd-venv/bin/pip install evidently==0.7.23 'pandas<3' scipy==1.17.1 numpy==2.4.6
    OPENBLAS_CORETYPE=Haswell /tmp/evd-venv/bin/python stats/tests/make_evidently_family_values.py

The output is deterministic: the samples come from a fixed seed, and the two
randomised tests are made reproducible the way the Rust side documents them:

* `TVD` seeds numpy itself (`np.random.seed(0)`); its permutations act on the
  positions of `reference.tolist() + current.tolist()`, so both samples are
  passed in ascending order (the order the Rust port assumes);
* `empirical_mmd` draws from numpy's global state without seeding it; the
  script calls `np.random.seed(0)` right before it (the Rust default seed) and
  passes sorted samples too.

Every other test gets the samples in a shuffled order (numpy's summation order
then differs from the Rust one, as it does in production). Floats are written
as Python `repr` strings, which round-trip exactly; samples as sorted
`[value, count]` pairs. Where Evidently raises, the exception is recorded.
A few scipy special-function values and numpy's seeded permutations are
included for the ports behind the tests.
"""

import json
import math
import os
import sys
import warnings

import numpy as np
import pandas as pd
import scipy
from scipy import special

import evidently
from evidently.legacy.calculations.stattests.registry import _registered_stat_tests
from evidently.legacy.core import ColumnType

SEED = 20260601
MMD_SEED = 0
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "evidently_family_values.json")

# Every tabular test of Evidently 0.7.23 (the text-content tests are left out).
TESTS = [
    "ks", "chisquare", "z", "wasserstein", "jensenshannon", "psi", "kl_div",
    "hellinger", "anderson", "cramer_von_mises", "mannw", "t_test", "ed", "es",
    "fisher_exact", "g_test", "TVD", "empirical_mmd",
]
# Tests that depend on the raw order of the samples (permutation p-values).
ORDER_DEPENDENT = {"TVD", "empirical_mmd"}
# Evidently's MMD builds n x n matrices and copies them 100 times.
MMD_MAX_ROWS = 1500


def f(x):
    return repr(float(x))


def pairs(values):
    vals, counts = np.unique(np.asarray(values, dtype=float), return_counts=True)
    return [[f(v), int(c)] for v, c in zip(vals, counts)]


def run(name, ftype, ref, cur, rng):
    """Evidently's result for one test, or the exception it raises."""
    tests = _registered_stat_tests[name]
    if ftype not in tests:
        return None
    dtype = "int64" if ftype == ColumnType.Categorical else "float64"
    if name in ORDER_DEPENDENT:
        r = pd.Series(np.sort(ref).astype(dtype))
        c = pd.Series(np.sort(cur).astype(dtype))
    else:
        r = pd.Series(rng.permutation(ref).astype(dtype))
        c = pd.Series(rng.permutation(cur).astype(dtype))
    if name == "empirical_mmd":
        if len(ref) + len(cur) > MMD_MAX_ROWS:
            return None
        np.random.seed(MMD_SEED)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = tests[ftype](r, c, ftype, None)
    except Exception as e:  # noqa: BLE001 - Evidently's own exception is the expected value
        return {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"}
    return {
        "score": f(res.drift_score),
        "drift": bool(res.drifted),
        "threshold": f(res.actual_threshold),
    }


def numerical_cases(rng):
    n = rng.normal
    cases = [
        ("small_same", np.round(n(0, 1, 40), 3), np.round(n(0, 1, 35), 3)),
        ("small_shift", np.round(n(0, 1, 40), 3), np.round(n(0.8, 1, 35), 3)),
        ("tiny_no_ties", rng.uniform(0, 10, 8), rng.uniform(1, 11, 12)),
        ("tiny_with_ties", np.round(n(0, 1, 15), 1), np.round(n(0.3, 1, 20), 1)),
        ("five_each", rng.uniform(0, 1, 5), rng.uniform(0.2, 1.2, 5)),
        ("seven_vs_thirty", rng.uniform(0, 1, 7), rng.uniform(0, 1, 30)),
        ("lognormal_ties", np.round(rng.lognormal(1, 0.6, 500), 1),
         np.round(1.1 * rng.lognormal(1, 0.6, 400), 1)),
        ("large_near", np.round(n(10, 2, 3000), 2), np.round(n(10.05, 2, 2000), 2)),
        ("few_integers", rng.integers(0, 5, 200).astype(float),
         rng.choice(5, 150, p=[0.3, 0.2, 0.2, 0.2, 0.1]).astype(float)),
        ("binned_integers", rng.integers(0, 25, 1000).astype(float),
         rng.integers(2, 27, 800).astype(float)),
        ("identical", np.round(n(0, 1, 50), 2), None),
        ("far_apart", n(0, 1, 100), n(5, 1, 100)),
        ("mild_shift", np.round(n(0, 1, 200), 3), np.round(n(0.2, 1, 150), 3)),
        ("moderate_shift", n(0, 1, 120), n(0.35, 1.1, 110)),
        ("wide_range", rng.uniform(-1e4, 1e4, 600), rng.uniform(-9e3, 1.1e4, 500)),
        ("equal_sizes", np.round(n(0, 1, 300), 2), np.round(n(0.1, 1, 300), 2)),
        ("constant_reference", np.full(30, 2.5), np.round(n(2.5, 1, 30), 1)),
        ("two_values", rng.choice([0.0, 1.0], 60), rng.choice([0.0, 1.0], 50)),
        # Tie groups above 2^17 and rank sums above 2^53: numpy's rounding.
        ("huge_ties", rng.choice([0.0, 1.0], 300000),
         rng.choice([0.0, 1.0], 200000, p=[0.49, 0.51])),
    ]
    out = []
    for name, ref, cur in cases:
        if cur is None:
            cur = ref.copy()
        out.append((name, ref, cur))
    return out


def categorical_cases(rng):
    def codes(k, n, p=None, offset=0):
        return rng.choice(k, n, p=p) + offset

    p6 = np.array([0.3, 0.25, 0.2, 0.1, 0.1, 0.05])
    q6 = np.array([0.25, 0.25, 0.2, 0.15, 0.1, 0.05])
    cases = [
        ("six_codes", codes(6, 300, p6, 1), codes(6, 250, q6, 1)),
        ("equal_ten_codes", codes(10, 400), codes(10, 400)),
        ("equal_new_code", codes(5, 200), codes(6, 200)),
        ("binary_equal", codes(2, 60, [0.5, 0.5]), codes(2, 60, [0.3, 0.7])),
        ("binary_same", codes(2, 500, [0.4, 0.6]), codes(2, 500, [0.4, 0.6])),
        ("binary_unequal", codes(2, 80), codes(2, 50)),
        ("single_value", np.full(40, 3), np.full(40, 3)),
        ("binary_far", codes(2, 30, [0.9, 0.1]), codes(2, 30, [0.2, 0.8])),
        ("three_codes_equal", codes(3, 90), codes(3, 90)),
        ("binary_large", codes(2, 2000, [0.45, 0.55]), codes(2, 2000, [0.47, 0.53])),
        ("thirty_codes", codes(30, 1000), codes(30, 700, np.linspace(1, 2, 30) / np.linspace(1, 2, 30).sum())),
        ("disjoint_binary", np.full(25, 0), np.full(25, 1)),
    ]
    return cases


def special_values():
    stdtr = []
    for df in [1.0, 2.0, 3.0, 7.0, 30.0, 99.0, 598.0, 4998.0, 99998.0]:
        for t in [-1e4, -300.0, -40.0, -12.0, -5.5, -3.0, -1.7, -1.0, -0.3, -1e-3, 0.0, 0.4, 2.2, 9.0]:
            stdtr.append([f(df), f(t), f(special.stdtr(df, t))])
    kv = []
    for x in np.concatenate([np.geomspace(1e-6, 2.0, 40), [2.0, 2.0000001, 3.0],
                             np.geomspace(2.01, 700.0, 60)]):
        for nu in [0.25, 0.0, 0.1]:
            kv.append([f(nu), f(x), f(special.kv(nu, x))])
    perms = []
    for seed, n in [(0, 10), (0, 37), (12345, 1000), (4294967295, 300)]:
        np.random.seed(seed)
        perms.append({"seed": seed, "n": n, "perm": np.random.permutation(n).tolist()})
    b0 = np.array([0.675, 1.281, 1.645, 1.96, 2.326, 2.573, 3.085])
    b1 = np.array([-0.245, 0.25, 0.678, 1.149, 1.822, 2.364, 3.615])
    b2 = np.array([-0.105, -0.305, -0.362, -0.391, -0.396, -0.345, -0.154])
    critical = b0 + b1 / math.sqrt(1) + b2 / 1
    sig = np.array([0.25, 0.1, 0.05, 0.025, 0.01, 0.005, 0.001])
    fit = np.polyfit(critical, np.log(sig), 2)
    return {"stdtr": stdtr, "kv": kv, "permutations": perms,
            "anderson_fit": [f(c) for c in fit]}


def main():
    rng = np.random.default_rng(SEED)
    order_rng = np.random.default_rng(SEED + 1)
    cases = []
    for kind, ftype, generated in [
        ("num", ColumnType.Numerical, numerical_cases(rng)),
        ("cat", ColumnType.Categorical, categorical_cases(rng)),
    ]:
        for name, ref, cur in generated:
            results = {}
            for test in TESTS:
                res = run(test, ftype, np.asarray(ref), np.asarray(cur), order_rng)
                if res is not None:
                    results[test] = res
            cases.append({
                "name": name,
                "column_type": kind,
                "reference": pairs(ref),
                "current": pairs(cur),
                "results": results,
            })
            print(name, kind, {k: v.get("score", v.get("error")) for k, v in results.items()},
                  file=sys.stderr)
    data = {
        "versions": {
            "evidently": evidently.__version__,
            "pandas": pd.__version__,
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "python": sys.version.split()[0],
        },
        "mmd_seed": MMD_SEED,
        "cases": cases,
        "special": special_values(),
    }
    with open(OUT, "w") as fh:
        json.dump(data, fh, indent=1)
        fh.write("\n")


if __name__ == "__main__":
    main()
