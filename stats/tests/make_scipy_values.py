#!/usr/bin/env python3
"""Writes scipy_values.json, the reference values for tests/scipy_parity.rs.

Run with numpy 2.4 and scipy 1.17.1 (the versions Evidently 0.7.23 was checked
with, see /work/shared/notes/evidently-parity.md):

    python3 -m venv /tmp/scipy-venv
    /tmp/scipy-venv/bin/pip install scipy==1.17.1 numpy==2.4.6
    /tmp/scipy-venv/bin/python stats/tests/make_scipy_values.py

The output is deterministic (fixed seed). kstwo.sf in Pomeranz's region
depends on the summation order of OpenBLAS's ddot, which numpy's bundled
OpenBLAS picks by CPU; the file was generated with OPENBLAS_CORETYPE=Haswell,
as the project's machines set it. Floats are written as Python
`repr` strings ('inf', '-inf' and 'nan' included), which round-trip exactly.
Evidently's stattests are reproduced from its source with numpy/scipy only
(pandas `value_counts` and `unique` replaced by numpy equivalents).
"""

import json
import math
import os
import sys
import warnings

import numpy as np
import scipy
from scipy import special, stats
from scipy.spatial import distance

SEED = 20260527
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scipy_values.json")


def f(x):
    return repr(float(x))


# ---------------------------------------------------------------- Evidently
def unique_in_order(a):
    """pandas `Series.unique()`: distinct values in order of appearance."""
    _, idx = np.unique(a, return_index=True)
    return a[np.sort(idx)]


def value_counts(a):
    vals, counts = np.unique(a, return_counts=True)
    return dict(zip(vals.tolist(), counts.tolist()))


def union_keys(ref, cur):
    """`get_unique_not_nan_values_list_from_series`: a list of a Python set."""
    return list(set(unique_in_order(ref).tolist()) | set(unique_in_order(cur).tolist()))


def ev_wasserstein(ref, cur):
    norm = max(float(np.std(ref)), 0.001)
    return stats.wasserstein_distance(ref, cur) / norm


def ev_jensenshannon(ref, cur):
    keys = union_keys(ref, cur)
    rd = {**dict.fromkeys(keys, 0), **value_counts(ref)}
    cd = {**dict.fromkeys(keys, 0), **value_counts(cur)}
    rp = np.array([rd[k] / len(ref) for k in keys])
    cp = np.array([cd[k] / len(cur) for k in keys])
    return distance.jensenshannon(rp, cp)


def ev_jensenshannon_binned(ref, cur):
    combined = np.concatenate([ref, cur])
    bins = np.histogram_bin_edges(combined, bins="sturges")
    rp = np.histogram(ref, bins)[0] / len(ref)
    cp = np.histogram(cur, bins)[0] / len(cur)
    return distance.jensenshannon(rp, cp)


def ev_chisquare(ref, cur):
    keys = union_keys(ref, cur)
    rd = {**dict.fromkeys(keys, 0), **value_counts(ref)}
    cd = {**dict.fromkeys(keys, 0), **value_counts(cur)}
    k_norm = cur.shape[0] / ref.shape[0]
    f_exp = [rd[k] * k_norm for k in keys]
    f_obs = [cd[k] for k in keys]
    with np.errstate(divide="ignore", invalid="ignore"):
        return stats.chisquare(f_obs, f_exp)[1]


def ev_z(ref, cur):
    if (len(np.unique(ref)) == 1 and len(np.unique(cur)) == 1
            and unique_in_order(ref)[0] == unique_in_order(cur)[0]):
        return 1.0
    keys = sorted(union_keys(ref, cur))
    r = [0 if x == keys[0] else 1 for x in ref.tolist()]
    c = [0 if x == keys[0] else 1 for x in cur.tolist()]
    n1, n2 = len(r), len(c)
    p1 = float(sum(r)) / n1
    p2 = float(sum(c)) / n2
    P = float(p1 * n1 + p2 * n2) / (n1 + n2)
    z = (p1 - p2) / np.sqrt(P * (1 - P) * (1.0 / n1 + 1.0 / n2))
    return 2 * (1 - stats.norm.cdf(np.abs(z)))


# ---------------------------------------------------------------- samples
rng = np.random.default_rng(SEED)
QUANTILES = [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0]


def counts_of(a):
    vals, counts = np.unique(a, return_counts=True)
    return [[f(v), int(c)] for v, c in zip(vals, counts)]


references = {}


def case(name, ref, cur, tests, ref_name=None):
    """One reference/current pair. A reference shared by several cases (as the
    monitor shares one across windows) is stored once under `ref_name`."""
    ref = rng.permutation(np.asarray(ref, dtype=np.float64))
    cur = rng.permutation(np.asarray(cur, dtype=np.float64))
    ref_name = ref_name or name
    if ref_name not in references:
        references[ref_name] = counts_of(ref)
    out = {"name": name, "reference": ref_name, "current": counts_of(cur)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if "ks" in tests:
            res = stats.ks_2samp(ref, cur)
            out["ks_statistic"] = f(res.statistic)
            out["ks"] = f(res.pvalue)
        if "chisquare" in tests:
            out["chisquare"] = f(ev_chisquare(ref, cur))
        if "z" in tests:
            out["z"] = f(ev_z(ref, cur))
        if "wasserstein" in tests:
            out["wasserstein"] = f(ev_wasserstein(ref, cur))
        if "js" in tests:
            out["js"] = f(ev_jensenshannon(ref, cur))
        if "js_binned" in tests:
            out["js_binned"] = f(ev_jensenshannon_binned(ref, cur))
        if "moments" in tests:
            out["mean"] = f(np.mean(cur))
            out["std"] = f(np.std(cur))
            out["quantiles"] = [[f(q), f(np.quantile(cur, q))] for q in QUANTILES]
    return out


def tied_normal(n, shift=0.0, scale=1.0, decimals=1):
    return np.round(rng.normal(shift, scale, n), decimals)


def lognormal_money(n, mu=2.5, sigma=0.7, decimals=2):
    return np.round(rng.lognormal(mu, sigma, n), decimals)


def categories(n, k=265, a=1.3, shift=0):
    w = 1.0 / np.arange(1, k + 1) ** a
    w = np.roll(w, shift)
    return rng.choice(np.arange(1, k + 1), size=n, p=w / w.sum()).astype(float)


cases = []
KS = ("ks",)
# Exact K-S, equal sizes (_compute_prob_outside_square).
for n in (1, 2, 5, 10, 37, 100, 500, 1000, 2000):
    for shift in (0.0, 0.05, 0.2, 1.0):
        cases.append(case(f"ks_equal_n{n}_s{shift}", tied_normal(n), tied_normal(n, shift), KS))
# Exact K-S, unequal sizes (_compute_outer_prob_inside_method), many ties.
for n1, n2 in ((3000, 1000), (1000, 3000), (800, 2400), (1000, 999), (7, 13), (250, 100),
               (999, 10000), (60, 9000), (1000, 2500), (3, 10000), (1, 2)):
    for shift in (0.0, 0.1, 0.3, 2.0):
        cases.append(case(f"ks_unequal_{n1}_{n2}_s{shift}",
                          tied_normal(n1), tied_normal(n2, shift), KS))
# Equal sizes where the exact p-value exceeds 1 by rounding for some h, so
# scipy falls back to the asymptotic one (with D snapped to h/n).
for n in (1670, 5198):
    third = n // 3
    base = (third, third, n - 2 * third)
    for h in range(1, 9):
        ref = np.repeat([0.0, 1.0, 2.0], base)
        cur = np.repeat([0.0, 1.0, 2.0], (base[0] + h, base[1], base[2] - h))
        cases.append(case(f"ks_fallback_{n}_h{h}", ref, cur, KS, ref_name=f"ks_fallback_{n}"))
for n1, n2 in ((900, 2400), (1000, 10000)):
    cases.append(case(f"ks_coarse_{n1}_{n2}", np.round(rng.normal(0, 1, n1)),
                      np.round(rng.normal(0.05, 1, n2)), KS))
# Asymptotic K-S (max size > 10000): kstwo.sf through every _kolmogn branch.
for n1, n2, shifts in ((12000, 900, (0.0, 0.02, 0.05, 0.1, 0.5)),
                       (20000, 1000, (0.0, 0.03, 0.08, 0.3)),
                       (10001, 50, (0.0, 0.1, 0.2, 0.3, 0.5, 1.0, 3.0)),
                       (15000, 130, (0.0, 0.1, 0.2, 0.4, 0.8)),
                       (11000, 11000, (0.0, 0.01, 0.03, 0.1)),
                       (30000, 300, (0.0, 0.05, 0.1, 0.2, 0.6)),
                       (10500, 5, (0.0, 1.0, 3.0))):
    ref = tied_normal(n1, decimals=2)
    for shift in shifts:
        cases.append(case(f"ks_asymp_{n1}_{n2}_s{shift}", ref,
                          tied_normal(n2, shift, decimals=2), KS, ref_name=f"ks_asymp_{n1}_{n2}"))
# Chi-square and Z as Evidently applies them (small reference).
for n_ref, n_cur, shift in ((1000, 2400, 0), (800, 2400, 3), (1000, 300, 0), (900, 20000, 1)):
    cases.append(case(f"chisquare_locations_{n_ref}_{n_cur}_{shift}",
                      categories(n_ref), categories(n_cur, shift=shift), ("chisquare",)))
for k in (3, 4, 5):
    for n_ref, n_cur, p_shift in ((1000, 2400, 0.0), (500, 800, 0.02), (1000, 5000, 0.1), (50, 40, 0.3)):
        w = np.linspace(1, 2, k)
        w2 = w + p_shift * np.arange(k)
        ref = rng.choice(np.arange(k) * 1.5, size=n_ref, p=w / w.sum())
        cur = rng.choice(np.arange(k) * 1.5, size=n_cur, p=w2 / w2.sum())
        cases.append(case(f"chisquare_k{k}_{n_ref}_{n_cur}_{p_shift}", ref, cur, ("chisquare", "js")))
for n_ref, n_cur, p_ref, p_cur in ((1000, 2400, 0.3, 0.3), (1000, 2400, 0.3, 0.32),
                                   (1000, 2400, 0.3, 0.35), (1000, 2400, 0.3, 0.45),
                                   (1000, 2400, 0.3, 0.6), (1000, 2400, 0.1, 0.9),
                                   (700, 30000, 0.5, 0.52), (20, 15, 0.5, 0.6)):
    ref = np.where(rng.random(n_ref) < p_ref, 1.0, 0.0)
    cur = np.where(rng.random(n_cur) < p_cur, 1.0, 0.0)
    cases.append(case(f"z_{n_ref}_{n_cur}_{p_ref}_{p_cur}", ref, cur, ("z", "chisquare", "js")))
cases.append(case("z_same_single_value", [2.0] * 10, [2.0] * 7, ("z",)))
cases.append(case("z_different_single_values", [2.0] * 10, [3.0] * 7, ("z",)))
cases.append(case("z_one_side_constant", [2.0] * 10, [2.0] * 4 + [5.0] * 3, ("z",)))
# Wasserstein and Jensen-Shannon as Evidently applies them (large reference).
REF = 25211
DIST = ("wasserstein", "js", "moments")
PASSENGERS = [.02, .7, .12, .05, .03, .04, .02, .01, .005, .005]
refs = {
    "prediction": np.round(rng.normal(16, 9, REF), 4),
    "trip_distance": lognormal_money(REF, 0.8, 0.9),
    "fare": np.round(lognormal_money(REF, 2.5, 0.6) * 2) / 2,
    "passengers": rng.choice(np.arange(0, 10.0), REF, p=PASSENGERS),
    "location": categories(REF),
    "small_k": rng.choice([1.0, 2.0, 3.0, 4.0], REF),
}
for day in range(3):
    cases.append(case(f"prediction_day{day}", refs["prediction"],
                      np.round(rng.normal(16 + day, 9 + day, 2400), 4), ("wasserstein", "moments"), "prediction"))
    cases.append(case(f"trip_distance_day{day}", refs["trip_distance"],
                      lognormal_money(2400, 0.8 + 0.1 * day, 0.9), DIST, "trip_distance"))
    cases.append(case(f"fare_day{day}", refs["fare"],
                      np.round(lognormal_money(2400, 2.5 + 0.05 * day, 0.6) * 2) / 2, DIST, "fare"))
    p = [.02, .62 + .05 * day, .2 - .05 * day, .05, .03, .04, .02, .01, .005, .005]
    cases.append(case(f"passengers_day{day}", refs["passengers"],
                      rng.choice(np.arange(0, 10.0), 2400, p=p), DIST, "passengers"))
    cases.append(case(f"location_day{day}", refs["location"], categories(2400, shift=day), ("js",), "location"))
    cases.append(case(f"small_k_day{day}", refs["small_k"],
                      rng.choice([1.0, 2.0, 3.0, 4.0, 5.0], 2400, p=[.25, .25, .25, .25 - .01 * day, .01 * day]),
                      ("js",), "small_k"))
cases.append(case("constant_reference", [7.5] * 2000, tied_normal(300, 7.5), ("wasserstein", "js", "moments")))
cases.append(case("identical", tied_normal(3000), tied_normal(3000), ("wasserstein", "js", "moments")))
cases.append(case("wide_range", np.round(rng.normal(1e6, 1e5, 5000), 2),
                  np.round(rng.normal(1.01e6, 1e5, 800), 2), ("wasserstein", "moments")))
cases.append(case("inf_one_current", tied_normal(1500), np.append(tied_normal(300), np.inf), ("wasserstein", "js", "moments")))
cases.append(case("inf_two_current", tied_normal(1500), np.append(tied_normal(300), [np.inf, np.inf]), ("wasserstein", "moments")))
cases.append(case("neg_inf_current", tied_normal(1500), np.append(tied_normal(300), -np.inf), ("wasserstein", "moments")))
cases.append(case("inf_reference", np.append(tied_normal(1500), np.inf), tied_normal(300), ("wasserstein", "js")))
cases.append(case("tiny_js", refs["location"], categories(REF), ("js",), "location"))
for day in range(3):
    cases.append(case(f"binned_day{day}", lognormal_money(1500, 1.0, 0.8, 1),
                      lognormal_money(700, 1.0 + 0.1 * day, 0.8, 1), ("js_binned",)))
cases.append(case("binned_constant", [3.0] * 30, [3.0] * 10, ("js_binned",)))
cases.append(case("binned_continuous", rng.normal(0, 1, 2000), rng.normal(0.2, 1.1, 900), ("js_binned",)))
cases.append(case("quantiles_small", [1.0, 2.0, 2.0, 13.85, 100.0], [10.12, 10.12, 3.0, 7.25, 1.5, 2.0], ("moments",)))

# ---------------------------------------------------------------- special functions
ndtr_x = np.concatenate([np.linspace(-40, 40, 1601), rng.uniform(-10, 10, 400),
                         [-38.5, -37.6, -37.5, 0.0, -0.0, 1e-300, 1e-8, 1.4142135623730951, 8.0 * math.sqrt(2)]])
ndtr_vals = [[f(x), f(special.ndtr(x))] for x in ndtr_x]
erf_x = np.concatenate([np.linspace(-30, 30, 1201), rng.uniform(-3, 3, 300), [1.0, -1.0, 8.0, 26.5, 27.3]])
erf_vals = [[f(x), f(special.erf(x)), f(special.erfc(x))] for x in erf_x]

chi2_vals = []
dfs = list(range(1, 31)) + list(range(32, 301, 4)) + [264.0, 500.0, 1000.0]
xs = np.geomspace(1e-3, 2000, 45)
for df in dfs:
    near = df * np.array([0.5, 0.8, 0.9, 0.97, 1.0, 1.03, 1.1, 1.2, 1.5, 2.0])
    for x in np.concatenate([xs, near]):
        chi2_vals.append([f(df), f(x), f(special.chdtrc(df, x))])
for df, x in ((1, 0.0), (2, np.inf), (0, 3.0), (5, 1e-300)):
    chi2_vals.append([f(df), f(x), f(special.chdtrc(df, x))])

smirnov_vals = []
for n in (1, 2, 3, 5, 9, 10, 11, 20, 50, 100, 141, 500, 1000, 5000, 100000, 2000000):
    # The exact sum has O(n) terms: keep the grid coarse for large n.
    grid = 41 if n <= 5000 else 6
    ds = np.concatenate([np.linspace(0, 1, grid), rng.uniform(0, 1, 20 if n <= 5000 else 4),
                         [0.5 / n, 1.0 / n, 1.5 / n, 1 - 1.0 / n, 0.5 / math.sqrt(n)]])
    for d in ds:
        smirnov_vals.append([n, f(d), f(special.smirnov(n, d))])

kstwo_vals = []
for n in list(range(1, 21)) + [25, 30, 42, 48, 50, 69, 98, 100, 129, 133, 139, 140, 141, 200, 500, 909, 1000,
                               5000, 100000, 100001]:
    # Points in every _kolmogn region: t <= 1, DMTW, Pomeranz, Pelz-Good, smirnov.
    nx2 = np.array([0.01, 0.05, 0.1, 0.2, 0.4, 0.7, 0.754, 0.76, 1.0, 1.5, 2.1, 2.3, 3.0, 3.5, 3.73, 3.865, 3.9,
                    4.0, 4.1, 6.0, 10.0, 20.0, 50.0])
    xs = np.concatenate([np.sqrt(nx2 / n), [0.3 / n, 0.5 / n, 0.7 / n, 1.0 / n, 1.3 / n, 0.49, 0.5, 0.6, 1 - 1.5 / n, 1 - 1.0 / n, 0.999],
                         rng.uniform(0, min(1.0, 3 / math.sqrt(n)), 10)])
    for x in xs:
        # For large n, 2 * smirnov (n x^2 >= 2.2) is slow and covered by n = 5000.
        if 0 < x < 1.5 and (n <= 5000 or n * x * x < 2.2 or x >= 0.49):
            kstwo_vals.append([n, f(x), f(stats.kstwo.sf(x, n))])

data = {
    "versions": {"numpy": np.__version__, "scipy": scipy.__version__, "python": sys.version.split()[0]},
    "seed": SEED,
    "ndtr": ndtr_vals,
    "erf_erfc": erf_vals,
    "chi2_sf": chi2_vals,
    "smirnov": smirnov_vals,
    "kstwo_sf": kstwo_vals,
    "references": references,
    "cases": cases,
}
with open(OUT, "w") as fh:
    json.dump(data, fh, separators=(",", ":"))
    fh.write("\n")
print(f"wrote {OUT}: {len(cases)} cases, {os.path.getsize(OUT)} bytes")
