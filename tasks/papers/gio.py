"""GIO: Gradient Information Optimization for Training Dataset Selection (Everaert & Potts 2023;
seed 002_e77702a5ff075a7b.txt #199; round2_candidates.md §1.4): the computation.

Image-recognition analogue at our scale (digits, 8x8). Per seed:

* **Source pool** (labelled, shifted): the train split plus ``distractor_ratio`` x as many
  distractors made from train images, half *shifted domain* (intensity-inverted, with Gaussian
  pixel noise; true labels) and half *junk* (uniform-noise images with random labels).
* **Target set**: ``target_size`` unlabelled clean images drawn from the val split (never the
  test split); GIO sees only their features.
* **Features**: PCA (``pca`` components) fitted on the pool alone (unsupervised; the same map
  applied to the target).
* **Arms** at equal subset size: GIO (``tasks.data_selection.gio``, stops when the KL estimate
  rises past ``patience``), a uniformly random subset of the same size, and the full pool.
  GIO is re-run for every ``k`` in ``ks`` (robustness claim), each with its own random arm.
* **Learner**: multinomial logistic regression (scikit-learn, fixed ``C``) on raw pixels of the
  selected labelled pool points; metric = accuracy on the clean test split.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from tasks.data_prep import table_to_tensors
from tasks.data_selection.selection import Pool, select
from tasks.evaluation.seeds import arm_table, describe, interval_fields, paired, verdict

ARMS = ("gio", "random", "full")


class SelectParams(BaseModel):
    """Params of the ``select`` stage.

    Attributes:
        seeds: one pool / target draw / GIO start / random subset per seed.
        distractor_ratio: distractors per clean pool image (half shifted domain, half junk).
        noise: std of the Gaussian pixel noise on shifted-domain images (pixels in [0, 1]).
        target_size: unlabelled clean target images (from val).
        pca: PCA components of the selection features.
        k, steps, lr, patience: GIO's options at the paper's defaults (k = 5 nearest neighbours,
            50 gradient steps per pick); ``patience``: consecutive KL rises tolerated.
        ks: extra k values for the robustness claim.
        budget_fraction: the most GIO may pick, as a fraction of the pool.
        c: inverse L2 strength of the logistic regression (the same for every arm).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    seeds: tuple[int, ...] = Field(default=tuple(range(20)), min_length=2)
    distractor_ratio: float = Field(default=1.0, gt=0)
    noise: float = Field(default=0.3, ge=0)
    target_size: int = Field(default=100, ge=10)
    pca: int = Field(default=16, ge=2)
    k: int = Field(default=5, ge=1)
    steps: int = Field(default=50, ge=0)
    lr: float = Field(default=0.1, gt=0)
    patience: int = Field(default=10, ge=0)
    ks: tuple[int, ...] = (3, 10)
    budget_fraction: float = Field(default=0.5, gt=0, le=1)
    c: float = Field(default=1.0, gt=0)


# PLATFORM: the shifted source pool -------------------------------------------------------
def make_pool(x: np.ndarray, y: np.ndarray, ratio: float, noise: float, rng: np.random.Generator):
    """(features, labels, kind) of the source pool; kind 0 = clean, 1 = shifted domain, 2 = junk."""
    n_dis = int(round(ratio * len(y)))
    n_shift = n_dis // 2
    src = rng.integers(0, len(y), n_dis)
    shifted = np.clip(1.0 - x[src[:n_shift]] + noise * rng.standard_normal((n_shift, x.shape[1])), 0, 1)
    junk = rng.uniform(0, 1, (n_dis - n_shift, x.shape[1]))
    feats = np.concatenate([x, shifted, junk]).astype(np.float64)
    labels = np.concatenate([y, y[src[:n_shift]], rng.integers(0, y.max() + 1, n_dis - n_shift)])
    kind = np.concatenate([np.zeros(len(y)), np.ones(n_shift), np.full(n_dis - n_shift, 2)]).astype(np.int64)
    return feats, labels, kind


def _accuracy(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, c: float) -> float:
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    if len(np.unique(y)) < 2:
        return float(np.mean(y_test == y[0]))
    with threadpool_limits(1):  # NOTE: multi-threaded BLAS on a shared 2-core box is ~40x slower here
        model = LogisticRegression(C=c, max_iter=200).fit(x, y)
    return float(model.score(x_test, y_test))


# PAPER: one seed, every arm ----------------------------------------------------------------
def select_and_train(params: SelectParams, *, train: pa.Table, val: pa.Table, test: pa.Table) -> dict[str, object]:
    """Rows (seed, k, arm, n, distractor_share, junk_share, test_acc) and every GIO selection."""
    from sklearn.decomposition import PCA

    p = params
    x_tr, y_tr = (t.numpy() for t in table_to_tensors(train)[:2])
    x_va = table_to_tensors(val)[0].numpy()
    x_te, y_te = (t.numpy() for t in table_to_tensors(test)[:2])
    rows, selections = [], []
    for seed in p.seeds:
        rng = np.random.default_rng(seed)
        feats, labels, kind = make_pool(x_tr, y_tr, p.distractor_ratio, p.noise, rng)
        tgt = x_va[rng.choice(len(x_va), size=min(p.target_size, len(x_va)), replace=False)]
        proj = PCA(n_components=p.pca, random_state=seed).fit(feats)
        pool = Pool(np.arange(len(labels)), {"features": proj.transform(feats)})
        target = Pool(np.arange(len(tgt)), {"features": proj.transform(tgt)})
        budget = max(p.k + 1, int(p.budget_fraction * len(labels)))
        full_acc = _accuracy(feats, labels, x_te, y_te, p.c)
        rows.append({"seed": seed, "k": 0, "arm": "full", "n": len(labels), "distractor_share": float(np.mean(kind > 0)),
                     "junk_share": float(np.mean(kind == 2)), "test_acc": full_acc})
        for k in (p.k, *[q for q in p.ks if q != p.k]):
            sel = select(pool, budget, selector="gio", target=target, seed=seed, k=k, steps=p.steps, lr=p.lr,
                         patience=p.patience)
            selections.append(sel.to_table())
            idx = sel.ids
            rnd = np.random.default_rng([seed, k]).choice(len(labels), size=len(idx), replace=False)
            for arm, ids in (("gio", idx), ("random", rnd)):
                rows.append({"seed": seed, "k": k, "arm": arm, "n": len(ids),
                             "distractor_share": float(np.mean(kind[ids] > 0)),
                             "junk_share": float(np.mean(kind[ids] == 2)),
                             "test_acc": _accuracy(feats[ids], labels[ids], x_te, y_te, p.c)})
    results = pa.Table.from_pylist(rows)
    acc = {a: float(np.mean([r["test_acc"] for r in rows if r["arm"] == a and r["k"] in (0, p.k)])) for a in ARMS}
    return {"results": results, "selections": pa.concat_tables(selections),
            "metrics": {"test_acc_mean": acc, "pool_size": int(rows[0]["n"])}}


# PAPER: report -----------------------------------------------------------------------------
def report(params: SelectParams, *, results: pa.Table) -> dict[str, object]:
    from tasks.platform.report import Claim, Report, report_outputs

    rows = results.to_pylist()

    def per_seed(arm: str, k: int, col: str = "test_acc") -> dict[int, float]:
        return {r["seed"]: r[col] for r in rows if r["arm"] == arm and r["k"] == k}

    k0 = params.k
    gio, rnd, full = per_seed("gio", k0), per_seed("random", k0), per_seed("full", 0)
    n_gio = per_seed("gio", k0, "n")
    pool_n = rows[0]["n"]
    frac = np.mean(list(n_gio.values())) / pool_n
    claims = []
    c_rand = paired(gio, rnd)
    claims.append(Claim(
        "GIO's subset beats a random subset of the same size",
        f"test accuracy, GIO - random (k={k0}, {np.mean(list(n_gio.values())):.0f} of {pool_n} pool images): "
        f"{describe(c_rand)}", verdict(c_rand, ">"), "paired 95% CI over seeds above 0",
        **interval_fields(c_rand, 100, "pts")))
    c_full = paired(gio, full)
    small = frac <= 0.2
    claims.append(Claim(
        "GIO delivers outstanding results with very small train sets (close to the full pool with far less data)",
        f"test accuracy, GIO ({100 * frac:.0f}% of the pool) - full pool: {describe(c_full)}",
        verdict(c_full, ">", -0.01) if small else "not reproduced", "paired 95% CI above -1 pt (within 1 pt of, or above, the full pool) "
        "with at most 20% of the pool" + ("" if small else f"; GIO kept {100 * frac:.0f}%, so the size "
                                            "condition fails"),
        **interval_fields(c_full, 100, "pts")))
    share = per_seed("gio", k0, "distractor_share")
    c_share = paired(share, {s: per_seed("full", 0, "distractor_share")[s] for s in share})
    claims.append(Claim(
        "GIO selects data resembling the target: fewer distractors than their pool share",
        f"share of distractors (shifted + junk) in GIO's subset - in the pool: {describe(c_share)}",
        verdict(c_share, "<"), "paired 95% CI below 0", **interval_fields(c_share, 100, "pts")))
    robust_parts, ok = [], True
    for k in params.ks:
        c = paired(per_seed("gio", k), per_seed("random", k))
        robust_parts.append(f"k={k}: {describe(c)}")
        ok &= verdict(c, ">") == "reproduced"
    claims.append(Claim(
        "these findings are robust to GIO's hyperparameters",
        "GIO - random test accuracy at other k: " + "; ".join(robust_parts),
        "reproduced" if ok else "not reproduced", "GIO beats random (paired CI above 0) at every other k",
    ))
    claims.append(Claim(
        "GIO needs only a small set of unlabelled target examples",
        f"by construction: GIO saw {params.target_size} unlabelled target images (features only)",
        "not testable at this scale", "a design property of the method, not a measured outcome"))
    arms = {f"{a} (k={k})" if a != "full" else "full pool": per_seed(a, k)
            for a, k in [("full", 0), *[(a, k) for k in (k0, *params.ks) for a in ("gio", "random")]]}
    table = arm_table(arms)
    sizes = pa.Table.from_pylist([{"k": k, "gio_picks_mean": float(np.mean(list(per_seed("gio", k, "n").values()))),
                                   "gio_junk_share": float(np.mean(list(per_seed("gio", k, "junk_share").values()))),
                                   "pool": pool_n} for k in (k0, *params.ks)])
    rep = Report(
        title="GIO: Gradient Information Optimization for Training Dataset Selection", paper="gio", arxiv="2306.11670",
        summary=(
            f"digits with a constructed domain shift: a source pool of the train split plus {params.distractor_ratio:g}x "
            "distractors (half intensity-inverted noisy images with true labels, half uniform-noise junk with random "
            f"labels); {params.target_size} unlabelled clean val images are the target. GIO (k-NN KL descent on "
            f"PCA-{params.pca} features of the pool, stop after {params.patience} consecutive KL rises) against a "
            "random subset of the same size and the full pool; logistic regression on the selected pixels, "
            f"accuracy on the clean test split, {len(gio)} seeds."),
        claims=claims, tables={"test accuracy per arm (mean, 95% CI over seeds)": table,
                               "GIO subset sizes and junk share": sizes},
        notes=[
            "Scale: 8x8 digits and a logistic-regression learner instead of machine translation, spelling "
            "correction and ImageNet-scale recognition; the distractors are constructed, so the share of "
            "distractors GIO avoids measures our shift, not the paper's.",
            "Assumptions (tasks/data_selection/gio.py): v starts at the worst-covered target point; the first k "
            "picks are random pool points; the stop is the reference's sequential-increase tolerance.",
            "Tuning: every arm trains the same learner at the same C; the arms differ only in their data, so the "
            "project's per-arm tuning (tasks/platform/tuning.py) was not run: tuning C per subset is listed as "
            "future work in docs/data_selection.md.",
        ],
    )
    return {**report_outputs(rep), "summary": table,
            "metrics": {"verdicts": {cl.claim[:60]: cl.verdict for cl in claims}}}
