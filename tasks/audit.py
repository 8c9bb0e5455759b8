"""Auditing stage: membership inference against classifiers trained by the shared ``fit``.

The design is LiRA's (Carlini et al. 2022, Sec. VI): ``1 + R`` models train on random
halves of one candidate pool, each candidate IN for exactly half of them
(:func:`tasks.methods.mia.balanced_membership`). Model 0 is the target; models 1..R are
the shadow/reference models. A disjoint population split (never trained on) serves RMIA's
z points. Membership of every model is an index table (``id``, one bool column per model)
so it can be versioned as a file.

Core functions are pure (tables and tensors in, tables and dicts out) and usable in any
paper's pipeline: :func:`audit_models` attacks already-trained models, e.g. the dense,
pruned and distilled models of ``nm_sparsity``, given their member/non-member tables.
"""

from __future__ import annotations

import time
from typing import Annotated, Literal

import numpy as np
import pyarrow as pa
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from torch import nn

from models import ModelSpec
from tasks.data_prep import table_to_tensors
from tasks.methods import mia
from tasks.methods import nm_magnitude as nm
from tasks.methods.dpsgd import DPSGDParams, canary_audit, make_canaries, many_run_scores
from tasks.methods.nm_magnitude import PruneParams
from tasks.params import Limit, Seed, SetOf
from tasks.train import OptimParams, fit, init_model, num_classes, predict_logits, torch_threads

# Attacks that need shadow/reference models; the rest only look at the target.
REFERENCE_ATTACKS = ("reference_loss", "lira_online", "lira_offline", "rmia")


class MIAParams(BaseModel):
    """Params of a membership-inference audit.

    Attributes:
        attacks: registered attack names (:data:`tasks.methods.mia.ATTACKS`).
        n_shadow: number of shadow/reference models R (the target is one more).
        model: architecture of target and shadows.
        optim: their optimisation settings.
        seed: seed of the membership draw and of model ``i``'s training (``seed + i``).
        fprs: FPR levels at which TPR is reported (convention ``fpr <= x``).
        n_boot: bootstrap replicates for the AUC CIs.
        fix_variance: LiRA's global-variance variant (better with few shadows).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    attacks: SetOf[str] = (
        "loss", "entropy", "modified_entropy", "grad_norm",
        "reference_loss", "lira_offline", "lira_online", "rmia",
    )
    n_shadow: Annotated[int, Field(ge=0), Limit("models")] = 8
    model: ModelSpec = ModelSpec(hidden=(256,))
    optim: OptimParams = OptimParams(max_epochs=60, batch_size=32, lr=2e-3)
    seed: Seed = 0
    fprs: SetOf[float] = (0.001, 0.01)
    n_boot: Annotated[int, Field(ge=10), Limit("bootstrap")] = 500
    fix_variance: bool = False

    @field_validator("attacks")
    @classmethod
    def _known(cls, v):
        for a in v:
            mia.get_attack(a)  # ValueError names the unknown attack and the registered ones
        if len(set(v)) != len(v):
            raise ValueError(f"duplicate attack names in {list(v)}")
        return v

    @model_validator(mode="after")
    def _enough_shadows(self):
        ref = [a for a in self.attacks if a in REFERENCE_ATTACKS]
        if ref and self.n_shadow < 2:
            raise ValueError(f"n_shadow = {self.n_shadow}: attacks {ref} need at least 2 shadow models")
        return self


# ---------------------------------------------------------------------------------------
# PLATFORM: membership index tables
# ---------------------------------------------------------------------------------------


def membership_table(ids: np.ndarray, keep: np.ndarray) -> pa.Table:
    """Index table: ``id`` (int64) + ``m0..m{K-1}`` (bool), keep bool (K, n)."""
    cols = {"id": pa.array(np.asarray(ids, dtype=np.int64))}
    cols.update({f"m{k}": pa.array(keep[k]) for k in range(keep.shape[0])})
    return pa.table(cols)


def membership_from_table(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`membership_table`: (ids (n,), keep bool (K, n))."""
    names = table.schema.names
    if not names or names[0] != "id" or any(not n.startswith("m") for n in names[1:]):
        raise ValueError(f"not a membership table: columns {names}")
    keep = np.stack([table.column(n).to_numpy(zero_copy_only=False).astype(bool) for n in names[1:]])
    return table.column("id").to_numpy(), keep


def split_membership(pool: pa.Table, n_models: int, seed: int) -> pa.Table:
    """Draw the balanced membership of ``n_models`` models over the candidate pool."""
    return membership_table(
        pool.column("id").to_numpy(), mia.balanced_membership(n_models, pool.num_rows, seed)
    )


# ---------------------------------------------------------------------------------------
# PLATFORM: training and signals
# ---------------------------------------------------------------------------------------


def train_models(
    pool: pa.Table, membership: pa.Table, val: pa.Table, spec: ModelSpec, optim: OptimParams, seed: int
) -> tuple[list[nn.Module], list[float]]:
    """Train model k on the pool rows with ``m{k}`` set, with the shared ``fit``.

    Returns the models and each one's training wall time (s).
    """
    ids, keep = membership_from_table(membership)
    if not np.array_equal(ids, pool.column("id").to_numpy()):
        raise ValueError("membership table ids do not match the pool's ids (same order)")
    n_cls = num_classes(pool, val)
    models, times = [], []
    for k in range(keep.shape[0]):
        t0 = time.perf_counter()
        train_k = pool.filter(pa.array(keep[k]))
        model = init_model(spec, pool, n_cls, seed + k)
        fit(model, optim, train_k, val, seed + k)
        models.append(model)
        times.append(time.perf_counter() - t0)
    return models, times


def logits_of(models: list[nn.Module], table: pa.Table) -> np.ndarray:
    """Logits of every model on a split table, float64 (K, n, C)."""
    return np.stack([predict_logits(m, table)[0].double().numpy() for m in models])


def attack_inputs(
    target: nn.Module,
    candidates: pa.Table,
    refs: list[nn.Module] | None = None,
    ref_in: np.ndarray | None = None,
    population: pa.Table | None = None,
    with_grad_norms: bool = True,
) -> mia.AttackInputs:
    """Signals of the target (and reference models) on the candidates and population."""
    x, y, _ = table_to_tensors(candidates)
    fields = {"logits": logits_of([target], candidates)[0], "labels": y.numpy()}
    if with_grad_norms:
        fields["grad_norms"] = mia.gradient_norms(target, x, y)
    if refs:
        fields["ref_logits"] = logits_of(refs, candidates)
        if ref_in is not None:
            fields["ref_in"] = ref_in
    if population is not None:
        fields["pop_logits"] = logits_of([target], population)[0]
        fields["pop_labels"] = table_to_tensors(population)[1].numpy()
        if refs:
            fields["ref_pop_logits"] = logits_of(refs, population)
    return mia.AttackInputs(**fields)


# ---------------------------------------------------------------------------------------
# PLATFORM: the audit cores
# ---------------------------------------------------------------------------------------


def score_attacks(inputs: mia.AttackInputs, attacks, fix_variance: bool = False) -> dict[str, np.ndarray]:
    """Scores (n,) of each attack; LiRA variants get ``fix_variance``; timing in ``_secs``."""
    out = {}
    for name in attacks:
        opts = {"fix_variance": fix_variance} if name.startswith("lira") else {}
        out[name] = mia.run_attack(name, inputs, **opts)
    return out


def metrics_table(scores: dict[str, np.ndarray], is_member: np.ndarray, fprs, n_boot: int, seed: int) -> pa.Table:
    """One row per attack: auc, auc_lo, auc_hi, bal_acc, tpr_at_<x>_fpr, counts."""
    rows = [
        {"attack": name, **mia.attack_metrics(s, is_member, fprs=fprs, n_boot=n_boot, seed=seed)}
        for name, s in scores.items()
    ]
    return pa.Table.from_pylist(rows)


def audit_models(
    target: nn.Module,
    members: pa.Table,
    nonmembers: pa.Table,
    attacks=("loss", "entropy", "modified_entropy", "grad_norm"),
    fprs=(0.001, 0.01),
    n_boot: int = 500,
    seed: int = 0,
) -> dict[str, object]:
    """Reference-free audit of any trained classifier from its member/non-member tables.

    For pipelines that did not train shadows (e.g. ``nm_sparsity``'s dense, pruned and
    distilled models: members = their training split, non-members = the test split).

    Returns:
        ``metrics`` (pa.Table, one row per attack) and ``scores`` ({attack: (n,)}).
    """
    bad = [a for a in attacks if a in REFERENCE_ATTACKS]
    if bad:
        raise ValueError(f"attacks {bad} need reference models; use mia_audit")
    cand = pa.concat_tables([members, nonmembers])
    is_member = np.r_[np.ones(members.num_rows, bool), np.zeros(nonmembers.num_rows, bool)]
    inputs = attack_inputs(target, cand, with_grad_norms="grad_norm" in attacks)
    scores = score_attacks(inputs, attacks)
    return {"metrics": metrics_table(scores, is_member, fprs, n_boot, seed), "scores": scores}


def mia_audit(params: MIAParams, *, pool: pa.Table, population: pa.Table) -> dict[str, object]:
    """Train target + ``n_shadow`` shadows on balanced halves of ``pool`` and attack the target.

    The three stage cores below in one call (for notebooks and tests).

    Args:
        params: the audit's params.
        pool: candidate split table (``id, label, x``); half are the target's members.
        population: split table never trained on (RMIA's z points, and ``fit``'s val set).

    Returns:
        ``membership`` (index table), ``metrics`` (one row per attack), ``scores`` (table of
        per-candidate scores + ``is_member``), ``timing`` (dict of wall times, s) and
        ``roc`` (log-scale ROC figure).
    """
    membership = membership_stage(params, pool=pool)["membership"]
    trained = shadows_stage(params, pool=pool, membership=membership, val=population)
    attacked = attack_stage(params, weights=trained["weights"], pool=pool, membership=membership, population=population)
    return {"membership": membership, **attacked, "timing": {**trained["metrics"], **attacked["timing"]}}


# ---------------------------------------------------------------------------------------
# PLATFORM: calibration audit (metrics from tasks/methods/scoring.py, the one implementation)
# ---------------------------------------------------------------------------------------

CALIBRATION_METRICS = ("ece", "ece_mass", "classwise_ece", "brier", "nll")


def _calibration_values(probs: np.ndarray, labels: np.ndarray, n_bins: int) -> dict[str, float]:
    from tasks.methods import scoring

    return {
        "ece": scoring.ece(probs, labels, n_bins, binning="width"),
        "ece_mass": scoring.ece(probs, labels, n_bins, binning="mass"),
        "classwise_ece": scoring.classwise_ece(probs, labels, n_bins),
        "brier": scoring.brier(probs, labels),
        "nll": scoring.log_loss(probs, labels),
    }


def calibration_audit(
    model: nn.Module, table: pa.Table, n_bins: int = 15, n_boot: int = 500, seed: int = 0, figure: bool = True
) -> dict[str, object]:
    """Calibration of a classifier on a split: ECE (equal-width, equal-mass), classwise ECE,
    Brier, NLL, accuracy, each with a bootstrap percentile 95 % CI over examples, and the
    reliability diagram.

    Returns:
        ``metrics`` ({name: value, name_lo, name_hi}) and ``reliability`` (Figure; ``None``
        with ``figure=False``, which saves ~0.1 s per call when auditing many models).
    """
    from tasks.methods import scoring

    logits, y, _ = predict_logits(model, table)
    probs = torch.softmax(logits.double(), -1).numpy()
    labels = y.numpy()
    point = _calibration_values(probs, labels, n_bins)
    point["acc"] = float(np.mean(probs.argmax(1) == labels))
    rng = np.random.default_rng(seed)
    reps = {k: [] for k in point}
    for _ in range(n_boot):
        i = rng.integers(0, labels.size, labels.size)
        vals = _calibration_values(probs[i], labels[i], n_bins)
        vals["acc"] = float(np.mean(probs[i].argmax(1) == labels[i]))
        for k, v in vals.items():
            reps[k].append(v)
    metrics = {}
    for k, v in point.items():
        lo, hi = np.quantile(reps[k], [0.025, 0.975])
        metrics.update({k: v, f"{k}_lo": float(lo), f"{k}_hi": float(hi)})
    fig = scoring.reliability_diagram(probs, labels, n_bins) if figure else None
    return {"metrics": metrics, "reliability": fig}


# ---------------------------------------------------------------------------------------
# PLATFORM: stage cores (func(params, **inputs) -> {output: object}, see docs/contract.md)
# ---------------------------------------------------------------------------------------


def membership_stage(params: MIAParams, *, pool: pa.Table) -> dict[str, object]:
    """Draw the member/non-member index file of target (m0) and shadows (m1..mR)."""
    return {"membership": split_membership(pool, 1 + params.n_shadow, params.seed)}


def shadows_stage(params: MIAParams, *, pool: pa.Table, membership: pa.Table, val: pa.Table) -> dict[str, object]:
    """Train target + shadows; weights packed as ``"<k>.<param>"`` (k = model index)."""
    from tasks.train import pack_seeds

    models, times = train_models(pool, membership, val, params.model, params.optim, params.seed)
    weights = pack_seeds({k: {n: t.detach().clone() for n, t in m.state_dict().items()} for k, m in enumerate(models)})
    metrics = {
        "n_models": len(models),
        "train_all_s": float(np.sum(times)),
        "train_per_model_s": float(np.median(times)),
    }
    return {"weights": weights, "metrics": metrics}


def load_models(params: MIAParams, weights: dict[str, torch.Tensor], like: pa.Table, n_classes: int) -> list[nn.Module]:
    """Rebuild the models packed by :func:`shadows_stage` (model index order)."""
    from tasks.train import unpack_seeds

    models = []
    for k, sd in unpack_seeds(weights).items():
        m = init_model(params.model, like, n_classes, params.seed + k)
        m.load_state_dict(sd)
        m.eval()
        models.append(m)
    return models


def attack_stage(
    params: MIAParams, *, weights: dict[str, torch.Tensor], pool: pa.Table, membership: pa.Table, population: pa.Table
) -> dict[str, object]:
    """Attack model 0 with every attack in ``params.attacks``; shadows are models 1..R.

    Returns:
        ``metrics`` (pa.Table, one row per attack, with ``secs``), ``scores``
        (per-candidate table), ``roc`` (log-scale ROC figure).
    """
    ids, keep = membership_from_table(membership)
    if not np.array_equal(ids, pool.column("id").to_numpy()):
        raise ValueError("membership ids do not match the pool's ids")
    models = load_models(params, weights, pool, num_classes(pool, population))
    if len(models) != keep.shape[0]:
        raise ValueError(f"{len(models)} models in weights but {keep.shape[0]} in the membership table")
    t0 = time.perf_counter()
    inputs = attack_inputs(models[0], pool, models[1:], keep[1:], population, "grad_norm" in params.attacks)
    t_signals = time.perf_counter() - t0
    scores, secs = {}, {}
    for name in params.attacks:
        t0 = time.perf_counter()
        scores.update(score_attacks(inputs, (name,), params.fix_variance))
        secs[name] = time.perf_counter() - t0
    table = metrics_table(scores, keep[0], params.fprs, params.n_boot, params.seed)
    table = table.append_column("secs", pa.array([secs[a] for a in params.attacks]))
    table = table.append_column(
        "needs_shadows", pa.array([a in REFERENCE_ATTACKS for a in params.attacks])
    )
    score_tab = pa.table({"id": pool.column("id"), "is_member": pa.array(keep[0]), **scores})
    fig = mia.roc_plot({k: (v, keep[0]) for k, v in scores.items()}, title="MIA ROC (log-log)")
    return {"metrics": table, "scores": score_tab, "roc": fig, "timing": {"signals_s": t_signals, **{f"{k}_s": v for k, v in secs.items()}}}


def calibrate_stage(params: MIAParams, *, weights: dict[str, torch.Tensor], test: pa.Table, pool: pa.Table) -> dict[str, object]:
    """Calibration audit of the target model (model 0) on the test split."""
    target = load_models(params, weights, pool, num_classes(pool, test))[0]
    out = calibration_audit(target, test, n_boot=params.n_boot, seed=params.seed)
    return {"metrics": out["metrics"], "reliability": out["reliability"]}


# ---------------------------------------------------------------------------------------
# PLATFORM: DP auditing stage cores
# ---------------------------------------------------------------------------------------


class GaussianAuditParams(BaseModel):
    """Params of the known-mechanism DP audit (Gaussian mechanism, correct and half-noise).

    Attributes:
        mu: GDP parameter of the correct mechanism (mu = 1 -> eps 4.377 at delta 1e-5).
        delta: delta at which epsilon is reported.
        significance: 1 - confidence of the epsilon lower bounds.
        sample_sizes: numbers of in and out samples for the epsilon bounds.
        strategies: threshold strategies compared (see ``dp_audit.THRESHOLD_STRATEGIES``).
        conformal_sizes: sample budgets of the conformal f-DP audit (type I / power).
        conformal_alpha: type-I level alpha of the conformal threshold test.
        level: significance of the conformal audit and of the trade-off band.
        repeats: independent audits per budget (type-I rate and power).
        band_n: samples per side for the trade-off band; band_repeats: its coverage runs.
        seed: base seed.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    mu: float = Field(default=1.0, gt=0.0)
    delta: float = Field(default=1e-5, gt=0.0, lt=1.0)
    significance: float = Field(default=0.05, gt=0.0, lt=1.0)
    sample_sizes: SetOf[int] = (1000, 10000)
    strategies: SetOf[str] = ("bonferroni", "split", "none")
    conformal_sizes: SetOf[int] = (20, 60, 300)
    conformal_alpha: float = Field(default=0.1, gt=0.0, lt=1.0)
    level: float = Field(default=0.05, gt=0.0, lt=1.0)
    repeats: int = Field(default=200, ge=10)
    band_n: int = Field(default=1000, ge=20)
    band_repeats: int = Field(default=50, ge=1)
    seed: Seed = 0


def gaussian_audit_stage(params: GaussianAuditParams) -> dict[str, object]:
    """Epsilon lower bounds, conformal f-DP audit and trade-off band on Gaussian mechanisms.

    Returns:
        ``bounds`` (pa.Table: mechanism, n, strategy, eps_gdp, eps_cp, eps_true),
        ``metrics`` (type-I rates, power, band coverage, Opacus golden values),
        ``band`` (Figure: the band vs the true trade-off curve).
    """
    from matplotlib.figure import Figure

    from tasks.methods import dp_audit as dp

    p = params
    eps_true = dp.gdp_to_eps(p.mu, p.delta)
    rows = []
    for mech, scale in (("correct", 1.0), ("half_noise", 0.5)):
        for n in p.sample_sizes:
            out, inn = dp.gaussian_mechanism(n, p.mu, p.seed, noise_scale=scale)
            for st in p.strategies:
                rows.append({
                    "mechanism": mech, "n": n, "strategy": st,
                    "eps_gdp": dp.eps_gdp(inn, out, p.delta, p.significance, st, p.seed),
                    "eps_cp": dp.eps_clopper_pearson(inn, out, p.delta, p.significance, st, p.seed),
                    "eps_claimed": eps_true,
                    "eps_true": dp.gdp_to_eps(p.mu / scale, p.delta),
                })
    f = lambda a: dp.gaussian_tradeoff(a, p.mu)  # noqa: E731  (the claimed trade-off)
    metrics: dict[str, float] = {
        "eps_true": eps_true, "level": p.level, "repeats": p.repeats, "band_repeats": p.band_repeats,
    }
    for n in p.conformal_sizes:
        for mech, scale in (("correct", 1.0), ("half_noise", 0.5)):
            rej = [
                dp.conformal_fdp_audit(
                    *dp.gaussian_mechanism(n, p.mu, p.seed + 1 + r, noise_scale=scale), f, p.conformal_alpha, p.level
                ).reject
                for r in range(p.repeats)
            ]
            key = "type1" if mech == "correct" else "power"
            metrics[f"conformal_{key}_n{n}"] = float(np.mean(rej))
    alphas = np.linspace(0.05, 0.95, 19)
    truth = f(alphas)
    cover = []
    for r in range(p.band_repeats):
        band = dp.tradeoff_band(*dp.gaussian_mechanism(p.band_n, p.mu, p.seed + 10_000 + r), alphas, p.level)
        cover.append(bool(np.all((band["lower"] <= truth) & (truth <= band["upper"]))))
    metrics["band_coverage"] = float(np.mean(cover))
    broken = dp.tradeoff_band(*dp.gaussian_mechanism(p.band_n, p.mu, p.seed, noise_scale=0.5), alphas, p.level)
    metrics["band_broken_below_claim_frac"] = float(np.mean(broken["upper"] < truth))
    metrics.update({
        "opacus_rdp_eps": dp.accountant_epsilon(1.5, 0.04, 2250, 1e-5, "rdp"),
        "opacus_prv_eps": dp.accountant_epsilon(1.5, 0.04, 2250, 1e-5, "prv"),
        "opacus_noise_multiplier_eps8": dp.noise_multiplier_for(8.0, 1e-5, 0.04, 2250),
    })
    fig = Figure(figsize=(4.5, 4.5))
    ax = fig.add_subplot(1, 1, 1)
    grid = np.linspace(0, 1, 201)
    ax.plot(grid, f(grid), "k-", label=f"claimed: {p.mu:g}-GDP")
    ax.plot(grid, dp.gaussian_tradeoff(grid, 2 * p.mu), "r:", label=f"half noise: {2 * p.mu:g}-GDP")
    ax.fill_between(alphas, band["lower"], band["upper"], alpha=0.3, label=f"band, correct (n={p.band_n})")
    ax.fill_between(alphas, broken["lower"], broken["upper"], alpha=0.3, color="tab:red", label="band, half noise")
    ax.set(xlabel="type I error alpha", ylabel="type II error", title="Trade-off function T(P, Q)")
    ax.legend(fontsize=7)
    return {"bounds": pa.Table.from_pylist(rows), "metrics": metrics, "band": fig}


class DPSGDAuditParams(BaseModel):
    """Params of the DP-SGD canary audit.

    Attributes:
        target_eps: target epsilons, one DP-SGD model each.
        include_nonprivate: also train the same model without DP (the leakage baseline).
        canaries: number m of mislabelled canaries (each inserted w.p. 1/2).
        dpsgd: shared DP-SGD settings (its ``target_eps`` is replaced per run).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    target_eps: SetOf[float] = (1.0, 4.0, 16.0)
    include_nonprivate: bool = True
    canaries: int = Field(default=400, ge=10)
    dpsgd: DPSGDParams = DPSGDParams()


def _dp_runs(params):
    """``(target_eps, DPSGDParams)`` per run of a DP-SGD audit: the non-private run first
    (``None``, if ``params.include_nonprivate``), then each target epsilon."""
    runs = ([None] if params.include_nonprivate else []) + list(params.target_eps)
    for eps in runs:
        yield eps, params.dpsgd.model_copy(update={"target_eps": eps})


def dpsgd_audit_stage(params: DPSGDAuditParams, *, train: pa.Table, val: pa.Table, test: pa.Table) -> dict[str, object]:
    """One DP-SGD run per target epsilon (+ non-private), each audited by the one-run bound.

    Canaries come from ``val`` (never trained on otherwise); utility is test accuracy.

    Returns:
        ``results`` (pa.Table, one row per run) and ``metrics`` (wall time).
    """
    n_cls = num_classes(train, val, test)
    rows = []
    t_all = time.perf_counter()
    with torch_threads(1):
        for eps, p in _dp_runs(params):
            t0 = time.perf_counter()
            res = canary_audit(p, train, val, params.canaries, n_cls, test=test)
            rows.append({
                "target_eps": float("inf") if eps is None else float(eps),
                "eps_spent": res["eps_spent"],
                "eps_lb": res["eps_lb"],
                "canary_auc": res["canary_auc"],
                "noise_multiplier": res["noise_multiplier"],
                "test_acc": res["test_acc"],
                "r": res["r"], "v": res["v"], "m": res["m"],
                "secs": time.perf_counter() - t0,
            })
    return {"results": pa.Table.from_pylist(rows), "metrics": {"wall_s": time.perf_counter() - t_all}}


class ManyRunAuditParams(BaseModel):
    """Params of the many-run DP-SGD canary audit (Jagielski et al. 2020; Nasr et al. 2021).

    Attributes:
        target_eps: target epsilons, one pair of model arms each.
        include_nonprivate: also audit the same training without DP (the leakage baseline).
        n_models: R, models per arm (R on D, R on D + canary); the bound's resolution:
            with perfect separation R = 64 / 128 give at most ~2.0 / ~2.8 (Clopper-Pearson).
        train_rows: use only the first ``train_rows`` training rows as D (None = all),
            which makes each run cheaper; the canary audit does not depend on |D|.
        strategy: threshold strategy of the headline bounds (``split``: chosen on one half
            of the runs, certified on the other; ``bonferroni``); both are reported.
        significance: 1 - confidence of the lower bounds.
        canary_seed: seed of the canary draw (one mislabelled held-out example).
        dpsgd: DP-SGD settings of every run (``target_eps`` and ``seed`` are set per run).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    target_eps: SetOf[float] = (1.0, 4.0, 16.0)
    include_nonprivate: bool = True
    n_models: Annotated[int, Field(ge=4), Limit("models")] = 96
    train_rows: int | None = Field(default=None, ge=10)
    strategy: Literal["split", "bonferroni"] = "split"
    significance: float = Field(default=0.05, gt=0.0, lt=1.0)
    canary_seed: Seed = 0
    dpsgd: DPSGDParams = DPSGDParams(epochs=10, batch_size=128, model=ModelSpec(hidden=(64,)))

    @field_validator("target_eps")
    @classmethod
    def _positive(cls, v):
        bad = [e for e in v if not e > 0]
        if bad:
            raise ValueError(f"target epsilons must be > 0, got {bad}")
        return v


def dpsgd_many_run_stage(params: ManyRunAuditParams, *, train: pa.Table, val: pa.Table, test: pa.Table) -> dict[str, object]:
    """Many-run canary audit of DP-SGD at each target epsilon (+ non-private).

    One mislabelled canary is drawn from ``val`` (never trained on otherwise); D is
    ``train`` (or its first ``train_rows`` rows). Per target epsilon, R models train on D
    and R on D + canary (:func:`tasks.methods.dpsgd.many_run_scores`), and the canary's
    IN/OUT log-prob scores give Clopper-Pearson and GDP lower bounds
    (:func:`tasks.methods.dp_audit.eps_many_run`) to compare with the accountant's epsilon.

    Returns:
        ``results`` (pa.Table, one row per target: target_eps (inf = no DP), eps_spent,
        noise_multiplier, n_models (per arm), eps_cp, eps_gdp (headline strategy),
        eps_cp_/eps_gdp_/mu_gdp_ per strategy, auc, in/out score means, test_acc, secs),
        ``scores`` (pa.Table: target_eps, arm ``in``/``out``, model, score) and
        ``metrics`` (wall time, total models, seconds per model).
    """
    from tasks.methods import dp_audit as dp

    n_cls = num_classes(train, val, test)
    canary = make_canaries(val, 1, n_cls, params.canary_seed)[0]
    d = train if params.train_rows is None else train.slice(0, params.train_rows)
    if params.train_rows is not None and d.num_rows < params.train_rows:
        raise ValueError(f"train_rows = {params.train_rows} but the train split has only {train.num_rows} rows")
    strategies = (params.strategy,) + tuple(s for s in dp.VALID_STRATEGIES if s != params.strategy)
    rows, score_rows = [], []
    t_all = time.perf_counter()
    with torch_threads(1):
        for eps, p in _dp_runs(params):
            t0 = time.perf_counter()
            res = many_run_scores(p, d, canary, params.n_models, n_cls, test=test)
            b = dp.eps_many_run(res["in_scores"], res["out_scores"], p.delta, params.significance, strategies,
                                params.canary_seed)
            target = float("inf") if eps is None else float(eps)
            rows.append({
                "target_eps": target, "eps_spent": res["eps_spent"], "noise_multiplier": res["noise_multiplier"],
                "n_models": params.n_models, "strategy": params.strategy, "significance": params.significance,
                "eps_cp": b[f"eps_cp_{params.strategy}"], "eps_gdp": b[f"eps_gdp_{params.strategy}"],
                **{f"{k}_{s}": b[f"{k}_{s}"] for s in dp.VALID_STRATEGIES for k in ("eps_cp", "eps_gdp", "mu_gdp")},
                "auc": b["auc"], "in_mean": float(res["in_scores"].mean()), "out_mean": float(res["out_scores"].mean()),
                "test_acc": res["test_acc"], "secs_per_model": res["secs_per_model"],
                "secs": time.perf_counter() - t0,
            })
            for arm in ("in", "out"):
                score_rows += [{"target_eps": target, "arm": arm, "model": i, "score": float(v)}
                               for i, v in enumerate(res[f"{arm}_scores"])]
    wall = time.perf_counter() - t_all
    n_total = 2 * params.n_models * len(rows)
    return {
        "results": pa.Table.from_pylist(rows), "scores": pa.Table.from_pylist(score_rows),
        "metrics": {"wall_s": wall, "models_trained": n_total, "secs_per_model": wall / n_total},
    }


# ---------------------------------------------------------------------------------------
# PLATFORM: auditing compressed models (composes nm_sparsity's prune + finetune cores)
# ---------------------------------------------------------------------------------------


class CompressionAuditParams(BaseModel):
    """How the target is compressed before it is re-audited.

    Attributes:
        prune: N:M patterns / vector sizes (``tasks.methods.nm_magnitude.PruneParams``).
        finetune: fixed-mask fine-tuning on the target's own members.
        attacks: reference-free attacks run on every model.
        n_boot: bootstrap replicates of the CIs.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    prune: PruneParams = PruneParams(patterns=("2:4", "1:4"), vectors=(1,))
    finetune: OptimParams = OptimParams(max_epochs=10, lr=5e-4)
    attacks: SetOf[str] = ("loss", "modified_entropy", "grad_norm")
    n_boot: Annotated[int, Field(ge=10), Limit("bootstrap")] = 300


def compression_audit_stage(
    params: dict, *, weights: dict[str, torch.Tensor], pool: pa.Table, membership: pa.Table,
    val: pa.Table, test: pa.Table,
) -> dict[str, object]:
    """Leakage and calibration of the target before and after N:M pruning (+ fine-tuning).

    ``params``: ``{"mia.<ds>": MIAParams, "compress": CompressionAuditParams}``. The dense
    target (model 0) is pruned with ``nm_magnitude.prune`` and fine-tuned with its mask fixed
    on its own members (``nm_magnitude.finetune``); each model is attacked (members = the
    target's training half, non-members = the rest of the pool) and calibrated on ``test``.

    Returns:
        ``results`` (pa.Table: model, attack AUCs with CIs, TPR at 1 % FPR, acc, ECE, NLL).
    """
    from tasks.train import TrainParams, pack_seeds, unpack_seeds

    mia_p = next(v for k, v in params.items() if k.startswith("mia"))
    cp: CompressionAuditParams = params["compress"]
    _, keep = membership_from_table(membership)
    members, nonmembers = pool.filter(pa.array(keep[0])), pool.filter(pa.array(~keep[0]))
    n_cls = num_classes(pool, val, test)
    train_p = TrainParams(model=mia_p.model, seeds=(mia_p.seed,), **mia_p.optim.model_dump())
    dense_sd = unpack_seeds(weights)[0]
    dense = pack_seeds({mia_p.seed: dense_sd})
    with torch_threads(1):
        pruned = nm.prune({"prune": cp.prune, "train": train_p}, dense=dense, train=members)["weights"]
        tuned = nm.finetune({"finetune": cp.finetune, "train": train_p}, pruned=pruned, train=members, val=val)["weights"]
    variants = {"dense": dense_sd}
    for stage, packed in (("pruned", pruned), ("finetuned", tuned)):
        for var, seeds in nm.unpack_variants(packed).items():
            variants[f"{stage}/{var}"] = seeds[mia_p.seed]
    rows = []
    for name, sd in variants.items():
        model = init_model(mia_p.model, pool, n_cls, mia_p.seed)
        model.load_state_dict(sd)
        model.eval()
        res = audit_models(model, members, nonmembers, cp.attacks, fprs=(0.01,), n_boot=cp.n_boot, seed=mia_p.seed)
        cal = calibration_audit(model, test, n_boot=10, seed=mia_p.seed)["metrics"]
        row = {"model": name, "test_acc": cal["acc"], "ece": cal["ece"], "nll": cal["nll"]}
        for r in res["metrics"].to_pylist():
            row.update({f"{r['attack']}_auc": r["auc"], f"{r['attack']}_auc_lo": r["auc_lo"],
                        f"{r['attack']}_auc_hi": r["auc_hi"], f"{r['attack']}_tpr_at_0.01_fpr": r["tpr_at_0.01_fpr"]})
        rows.append(row)
    return {"results": pa.Table.from_pylist(rows)}
