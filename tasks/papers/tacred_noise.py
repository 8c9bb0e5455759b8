"""Noise in Relation Classification Dataset TACRED: Characterization and Reduction (seed
001_d31d1b4d47488510.txt; round2_candidates.md §1.1): our analogue, the computation.

TACRED is not shippable, so the analogue is digits with a catch-all negative class: class 0
plays "no-relation", classes 1-9 the relations. Per seed, on the training split:

1. a clean subset (``clean_fraction`` of train, stratified by nothing, seeded) keeps its true
   labels — the Extrinsic Strategy's reference; the rest (the *pool*) gets TACRED-like label
   noise from :func:`tasks.data_selection.noise.inject_noise` (positives turned negative, a few
   positive swaps), whose record says exactly which labels changed;
2. out-of-fold probabilities on the pool (``folds`` MLPs) and the penultimate-layer embedding
   of an MLP trained on the whole noisy training set;
3. flags, each through :func:`~tasks.data_selection.selection.select` with the same cap
   (``max_flag_fraction`` of the pool): IS (``noise_intrinsic``), ES (``noise_extrinsic``,
   negatives), ES+P (``noise_extrinsic``, positives too), the low given-label-probability
   baseline (``label_disagreement``) and ``random`` at ES+P's flag count;
4. flag precision/recall against the injector's record, and a fresh MLP trained on each
   version of the data — noisy, clean (oracle), and per flagger eliminated (E: flagged rows
   dropped) and reannotated (R: flagged rows given their true label, a perfect annotator) —
   scored on test by accuracy and micro-F1 over the positive classes (TACRED's metric).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch

from tasks.data_prep import table_to_tensors
# the params, one seed's noisy views, the flaggers and their scoring live in the domain (reused by
# make bench-data-peers); imported here under the names the stages and tests use
from tasks.data_selection.cleaning import FLAGGERS, CleanParams, detection, fit_mlp, flag_all, noisy_views  # noqa: F401
from tasks.evaluation.seeds import arm_table, describe, interval_fields, paired, verdict
from tasks.platform.errors import ReprolabError
from tasks.train import num_classes, torch_threads

FLAGS_SCHEMA = pa.schema([("seed", pa.int64()), ("flagger", pa.string()), ("id", pa.int64()), ("score", pa.float64()),
                          ("noisy", pa.bool_()), ("reason", pa.string())])
RECORD_SCHEMA = pa.schema([("seed", pa.int64()), ("id", pa.int64()), ("old", pa.int64()), ("new", pa.int64())])
RESULTS_SCHEMA = pa.schema([("seed", pa.int64()), ("variant", pa.string()), ("n_train", pa.int64()),
                            ("acc", pa.float64()), ("f1_pos", pa.float64())])


def f1_positive(pred: np.ndarray, gold: np.ndarray, negative: int) -> float:
    """Micro-F1 over the positive classes (TACRED's metric: no-relation counts only as a miss)."""
    pred_pos, gold_pos = pred != negative, gold != negative
    correct = int((pred_pos & (pred == gold)).sum())
    p = correct / max(int(pred_pos.sum()), 1)
    r = correct / max(int(gold_pos.sum()), 1)
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


# PAPER: one seed (steps 1-3 in tasks.data_selection.cleaning) ----------------------------
def _one_seed(p: CleanParams, seed: int, train: pa.Table, val: pa.Table, test: pa.Table) -> tuple[list, list, list]:
    xt, yt, _ = table_to_tensors(test)
    neg = p.noise.negative_class
    setup = noisy_views(p, seed, train, val, test)
    x, y_true, y, ids, k, record = (setup[key] for key in ("x", "y_true", "y", "ids", "k", "record"))
    n = ids.size
    noisy = y != y_true
    # (3) flags
    flags, flag_rows = flag_all(p, seed, setup), []
    pos_of = {int(i): j for j, i in enumerate(ids)}
    for name, s in flags.items():
        pos = np.array([pos_of[int(i)] for i in s.ids], dtype=np.int64)
        flag_rows += [{"seed": seed, "flagger": name, "id": int(i), "score": float(sc), "noisy": bool(noisy[j]),
                       "reason": s.reason} for i, sc, j in zip(s.ids, s.scores, pos)]
        flags[name] = pos
    # (4) retrain each version of the data, score on test
    versions = {"noisy": (np.arange(n), y), "clean": (np.arange(n), y_true)}
    for name, pos in flags.items():
        keep = np.setdiff1d(np.arange(n), pos)
        versions[f"{name}-E"] = (keep, y)
        relabelled = y.copy()
        relabelled[pos] = y_true[pos]  # a perfect annotator
        if name != "random":
            versions[f"{name}-R"] = (np.arange(n), relabelled)
    results = []
    for v, (rows, labels) in versions.items():
        m = fit_mlp(p, x[rows], labels[rows], ids[rows], val, k, 100 * seed + 50)
        with torch.no_grad():
            pred = m(xt).argmax(-1).numpy()
        results.append({"seed": seed, "variant": v, "n_train": int(rows.size),
                        "acc": float((pred == yt.numpy()).mean()), "f1_pos": f1_positive(pred, yt.numpy(), neg)})
    rec = [{"seed": seed, **r} for r in record.to_pylist()]
    return flag_rows, rec, results


def clean(params: CleanParams, *, train: pa.Table, val: pa.Table, test: pa.Table) -> dict[str, object]:
    """Every seed: noise record, flags and the retrained versions' test scores."""
    if num_classes(train, val, test) < 3:
        raise ReprolabError("tacred_noise.clean needs >= 3 classes (one negative, >= 2 relations)")
    flags, records, results = [], [], []
    with torch_threads():
        for seed in params.seeds:
            f, r, s = _one_seed(params, seed, train, val, test)
            flags += f
            records += r
            results += s
    results_t = pa.Table.from_pylist(results, schema=RESULTS_SCHEMA)
    return {"flags": pa.Table.from_pylist(flags, schema=FLAGS_SCHEMA),
            "record": pa.Table.from_pylist(records, schema=RECORD_SCHEMA),
            "results": results_t,
            "metrics": {"f1_pos_mean": {v: float(np.mean([r["f1_pos"] for r in results if r["variant"] == v]))
                                        for v in dict.fromkeys(r["variant"] for r in results)}}}


def report(params: CleanParams, *, flags: pa.Table, record: pa.Table, results: pa.Table, train: pa.Table) -> dict[str, object]:
    from tasks.platform.report import Claim, Report, report_outputs

    neg = params.noise.negative_class
    f1: dict[str, dict[int, float]] = {}
    for r in results.to_pylist():
        f1.setdefault(r["variant"], {})[r["seed"]] = r["f1_pos"]
    det = detection(flags, record)
    base = f1["noisy"]
    c = lambda v: paired(f1[v], base)  # noqa: E731
    claims = []
    # (1) where the noise is: circular in our analogue
    rec = record.to_pylist()
    inj_neg = np.mean([r["new"] == neg for r in rec]) if rec else float("nan")
    fl = [r for r in flags.to_pylist() if r["flagger"] == "ESP"]
    lab = dict(zip(train.column("id").to_pylist(), train.column("label").to_pylist()))
    # a flag's given label is negative when it was injected negative or is a clean negative
    new_of = {(r["seed"], r["id"]): r["new"] for r in rec}
    n_neg = sum(v == neg for v in lab.values()) * len(params.seeds)
    base_neg = (n_neg + sum(r["new"] == neg for r in rec) - sum(r["old"] == neg for r in rec)) / (len(lab) * len(params.seeds))
    flag_neg = np.mean([new_of.get((r["seed"], r["id"]), lab[r["id"]]) == neg for r in fl]) if fl else float("nan")
    claims.append(Claim(
        "the majority of the noise originates from instances labelled no-relation (negatives)",
        f"we inject the noise ourselves, so this is circular here: {100 * inj_neg:.1f}% of injected noisy labels are "
        f"negative by construction; {100 * flag_neg:.1f}% of ES+P's flags (which may flag either kind) carry a "
        f"negative label, against {100 * base_neg:.1f}% of all training labels after injection",
        "not testable at this scale",
        "TACRED is not shippable and in the analogue the noise location is our choice (see notes)",
        value=float(flag_neg),
    ))
    # (2) flags recover the injected noise better than chance (our added check)
    prec = {name: {s: v["precision"] for s, v in d.items()} for name, d in det.items()}
    pcs = {name: paired(prec[name], prec["random"]) for name in ("IS", "ES", "ESP")}
    ok = all(verdict(x, ">") == "reproduced" for x in pcs.values())
    claims.append(Claim(
        "the nearest-neighbour strategies identify potentially noisy examples",
        "flag precision minus random flagging's (same count as ES+P): "
        + "; ".join(f"{k}: {describe(v, 100, 'pts')}" for k, v in pcs.items()),
        "reproduced" if ok else "not reproduced", "every strategy's paired CI above 0 (against the injector's record)",
        **interval_fields(pcs["ESP"], 100, "pts"),
    ))
    # (3) IS: elimination improves, reannotation does not
    ise, isr = c("IS-E"), c("IS-R")
    claims.append(Claim(
        "IS with elimination (TACRED-E) improves F1 (paper: +4% on average)",
        f"positive micro-F1, IS-E - noisy: {describe(ise, 100, 'pts')}", verdict(ise, ">"), "paired CI above 0",
        **interval_fields(ise, 100, "pts"),
    ))
    claims.append(Claim(
        "IS with reannotation (TACRED-R) does not improve F1",
        f"IS-R - noisy: {describe(isr, 100, 'pts')}",
        "reproduced" if not isr["lo"] > 0 else "not reproduced",
        "CI of IS-R - noisy not above 0; our annotator is perfect (the paper's were human)",
        **interval_fields(isr, 100, "pts"),
    ))
    # (4) ES: elimination and reannotation both improve (paper +3.8% / +4.4%)
    en, rn = c("ES-E"), c("ES-R")
    claims.append(Claim(
        "ES elimination and reannotation (TACRED-EN / RN) improve F1 (paper: +3.8% / +4.4%)",
        f"ES-E - noisy: {describe(en, 100, 'pts')}; ES-R - noisy: {describe(rn, 100, 'pts')}",
        "reproduced" if verdict(en, ">") == verdict(rn, ">") == "reproduced" else "not reproduced",
        "both paired CIs above 0", **interval_fields(en, 100, "pts"),
    ))
    # (5) ES extended to positives improves further (paper +5.8% / +5.6%)
    enp, rnp = paired(f1["ESP-E"], f1["ES-E"]), paired(f1["ESP-R"], f1["ES-R"])
    claims.append(Claim(
        "extending ES to positives (TACRED-ENP / RNP) improves further (paper: +5.8% / +5.6%)",
        f"ESP-E - ES-E: {describe(enp, 100, 'pts')}; ESP-R - ES-R: {describe(rnp, 100, 'pts')}",
        "reproduced" if verdict(enp, ">") == verdict(rnp, ">") == "reproduced" else "not reproduced",
        "both paired CIs above 0", **interval_fields(enp, 100, "pts"),
    ))
    arms = arm_table({v: vals for v, vals in f1.items()})
    det_rows = [{"flagger": name, **{f"{m}_mean": float(np.mean([v[m] for v in d.values()]))
                                     for m in ("precision", "recall", "n_flags")}} for name, d in det.items()]
    base_cmp = {v: paired(f1[v], f1["LD-E" if v.endswith("-E") else "LD-R"]) for v in ("IS-E", "ES-E", "ESP-E", "IS-R", "ES-R", "ESP-R")}
    rep = Report(
        title="Noise in Relation Classification Dataset TACRED: Characterization and Reduction", paper="tacred_noise",
        arxiv="",
        summary=(
            f"Analogue on digits: class {neg} is 'no-relation', the other classes are relations. Per seed "
            f"({len(params.seeds)} seeds), {100 * params.clean_fraction:.0f}% of the training split is a clean subset; "
            f"the rest gets injected noise ({100 * params.noise.pos_to_neg:.0f}% of positives relabelled negative, "
            f"{100 * params.noise.pos_to_pos:.0f}% swapped to another relation, {100 * params.noise.neg_to_pos:.0f}% "
            f"of negatives made positive). Flaggers: IS (false negatives of {params.folds}-fold out-of-fold MLPs -> "
            f"their {params.k} nearest negatives), ES and ES+P ({params.k}-NN majority vote of the clean subset), the "
            "low given-label probability baseline (LD) and random flags; each flag set is eliminated (E) or "
            "reannotated by a perfect annotator (R) and an MLP retrained; test metric: micro-F1 over positive classes."
        ),
        claims=claims,
        tables={"Positive micro-F1 per data version (95% CI over seeds)": arms,
                "Flag precision / recall against the injector's record (means over seeds)": pa.Table.from_pylist(det_rows),
                "TACRED strategies vs the LD baseline at the same cap (F1, paired)": pa.Table.from_pylist(
                    [{"comparison": f"{v} - LD", "diff_pts": 100 * x["diff"], "lo": 100 * x["lo"], "hi": 100 * x["hi"]}
                     for v, x in base_cmp.items()])},
        notes=[
            "Circularity: we inject the noise, so 'where the noise is' is our choice, not a finding; claim 1 is not "
            "testable here. What we test instead is whether the model-based methods recover the injected labels "
            "(precision/recall against the injector's exact record) and whether cleaning helps.",
            "Reannotation uses the true label (a perfect annotator); TACRED's reannotators disagree with each other, "
            "which is one reason TACRED-R did not help. Our R variants are therefore an upper bound.",
            "IS assumption: anchors are out-of-fold false negatives on the training pool itself (the paper uses "
            "model predictions; its exact anchor set is not in the abstract).",
            "cleanlab (confident learning) is not in requirements.lock; its full rule is not run. LD ranks by the "
            "out-of-fold probability of the given label, the quantity confident learning thresholds per class.",
            "Magnitudes (4%, 3.8%, 4.4%, 5.8%, 5.6% F1) depend on TACRED's noise rate and models; ours depend on the "
            "injected rates and are not comparable.",
        ],
    )
    metrics = {"f1_pos_mean": {v: float(np.mean(list(x.values()))) for v, x in f1.items()},
               "precision_mean": {k: float(np.mean(list(v.values()))) for k, v in prec.items()},
               "verdicts": {cl.claim[:60]: cl.verdict for cl in claims}}
    return {**report_outputs(rep), "summary": arms, "metrics": metrics}
