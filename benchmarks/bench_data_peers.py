"""Data-selection peers (issue 15, "Peers"): our selectors measured against the libraries a user
would reach for. Optional: needs the peer environment (``make peers-env``), never CI.

    .venv-peers/bin/python benchmarks/bench_data_peers.py [--profile smoke|full] [--out PATH]

(a) core-set: our ``kcenter_greedy`` vs scikit-activeml's ``CoreSet`` query on the same features
    (pool 4000 x 64, Gaussian), the same labelled set (the first centre(s)), batch 100: the
    picks must be identical, and the wall time per query (median over repeats, the two
    interleaved in every repeat) side by side. Goal: ours >= 5x faster.
(b) BALD: our ``bald_scores`` vs baal's ``BALD().get_uncertainties`` on the same MC-dropout
    probabilities (an MLP with dropout on digits, 20 stochastic passes): max |difference|.
    Goal <= 1e-6.
(c) label noise: cleanlab's confident learning (``find_label_issues``, prune_by_noise_rate,
    ranked by self-confidence, cut at the flaggers' common cap) as the baseline of the TACRED
    flaggers on tacred_noise's setup (digits, injected noise with its exact record; the same
    out-of-fold probabilities, via ``tasks.papers.tacred_noise.noisy_views``): precision and
    recall against the record, mean and 95% CI over the seeds, and CL minus each flagger paired
    over seeds.
(d) DSIR (``data-selection``, hashed uni+bigram importance weights, target = CoLoR-Filter's
    fine-tuning set; resampled by Gumbel top-k with our seed, the library's own resampling rule)
    vs CoLoR-Filter at the paper's largest tau vs random, on the color_filter corpus and budget:
    share of target-domain passages picked and target-domain bits/char of a fresh tinylm trained
    on each selection, 5 seeds (the auxiliaries are trained once, as in the paper's stage).

(e) BADGE: our ``badge`` selector vs scikit-activeml's ``Badge`` on the same probabilities and
    penultimate features (pool 4000: 10 Gaussian clusters in 64-d through a ReLU, 10 classes from
    a random linear head; batch 100; nothing labelled). Their gradient embeddings are read where
    their query computes them (a wrapper around ``skactiveml.pool._badge._d_2`` records its first
    argument): max |ours - theirs| <= 1e-6, and the first pick (the largest-norm embedding) must be
    the same. Later picks are D² draws from different RNGs, so quality is compared instead: the
    k-means++ potential of each batch (sum over the pool of the squared distance to the nearest
    pick, in the embedding space; lower = better covered), mean and 95% CI over seeds per library
    and the difference of the means. Wall and CPU time per query (median, interleaved).

Profiles: ``full`` = tacred_noise / color_filter full params, 10 noise seeds, 5 DSIR seeds (~5 min
on 2 shared cores); ``smoke`` = their smoke params, 5 seeds each (~1 min).

A failed peer check ((a) picks differ, (b) difference above 1e-6) exits 1 after writing the
JSON, with the numbers. Results: benchmarks/results/data_peers.json (atomic) and an MLflow run in
the experiment ``reprolab/bench-data``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

T_START = time.perf_counter()
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
for _k, _v in {"DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "MLFLOW_DISABLE_TELEMETRY": "true",
               "DVC_NO_ANALYTICS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}.items():
    os.environ.setdefault(_k, _v)

import numpy as np  # noqa: E402

from harness import interleaved, peer_versions, write_json_atomic  # noqa: E402

PEERS = ("scikit-activeml", "baal", "cleanlab", "data-selection")
BADGE_TOL = 1e-6
PROFILES = {  # profile -> (k-center repeats, tacred_noise params profile, noise seeds)
    "smoke": (3, "smoke", (0, 1, 2, 3, 4)),
    "full": (7, "full", tuple(range(10))),
}
BALD_TOL = 1e-6
GOAL_SPEEDUP = 5.0


# (a) --------------------------------------------------------------------------------------
def bench_coreset(repeats: int, n: int = 4000, d: int = 64, batch: int = 100, n_labelled: int = 10) -> dict:
    from skactiveml.pool import CoreSet

    from tasks.data_selection.kcenter import kcenter_greedy

    rng = np.random.default_rng(1)
    x = rng.normal(size=(n, d))
    out = {"pool": n, "dim": d, "batch": batch, "repeats": repeats, "goal_speedup": GOAL_SPEEDUP, "cases": {}}
    # NOTE: scikit-activeml starts from the labelled set (an empty one gives a random first pick),
    # so both get the same labelled positions: one (= our ``first``) and ten.
    for lab in (1, n_labelled):
        labelled = rng.choice(n, size=lab, replace=False)
        y = np.full(n, np.nan)
        y[labelled] = 0.0
        qs = CoreSet(random_state=0)
        fns = {"ours": lambda: kcenter_greedy(x, labelled, batch)[0],
               "skactiveml": lambda: qs.query(x, y, batch_size=batch)}
        picks = {k: np.asarray(f()) for k, f in fns.items()}  # warm-up + the picks
        wall, _ = interleaved(fns, repeats)
        t = {k: float(np.median(v)) for k, v in wall.items()}
        same = bool(np.array_equal(picks["ours"], picks["skactiveml"]))
        first_diff = None if same else int(np.flatnonzero(picks["ours"] != picks["skactiveml"])[0])
        case = {"labelled": lab, "same_picks": same, "first_differing_pick": first_diff,
                "ours_s": t["ours"], "skactiveml_s": t["skactiveml"], "speedup": t["skactiveml"] / t["ours"],
                "ours_all_s": wall["ours"], "skactiveml_all_s": wall["skactiveml"]}
        if not same:  # why: the distances at the first differing pick (Gram-form vs difference-form rounding?)
            from sklearn.metrics import pairwise_distances

            s = list(labelled) + list(picks["ours"][:first_diff])
            md_ = pairwise_distances(x, x[s]).min(axis=1)
            case["gap_at_first_diff"] = float(abs(md_[picks["ours"][first_diff]] - md_[picks["skactiveml"][first_diff]]))
        out["cases"][str(lab)] = case
        print(f"(a) core-set {n}x{d}, batch {batch}, {lab} labelled: ours {t['ours'] * 1e3:.1f} ms, scikit-activeml "
              f"{t['skactiveml'] * 1e3:.1f} ms ({case['speedup']:.2f}x); same picks: {same}", flush=True)
    out["same_picks"] = all(c["same_picks"] for c in out["cases"].values())
    out["speedup_min"] = min(c["speedup"] for c in out["cases"].values())
    out["goal_met"] = out["speedup_min"] >= GOAL_SPEEDUP
    return out


# (b) --------------------------------------------------------------------------------------
def mc_dropout_probs(samples: int = 20, seed: int = 0):
    """(samples, n, 10) softmax outputs of an MLP with dropout (p = 0.5) on the digits features,
    dropout left on; trained 30 full-batch Adam steps so the samples disagree realistically."""
    import torch
    from sklearn.datasets import load_digits

    torch.manual_seed(seed)
    torch.set_num_threads(1)
    xd, yd = load_digits(return_X_y=True)
    x = torch.tensor(xd / 16.0, dtype=torch.float32)
    y = torch.tensor(yd)
    net = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Dropout(0.5), torch.nn.Linear(64, 10))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(30):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    net.train()  # MC dropout
    with torch.no_grad():
        return torch.stack([torch.softmax(net(x), -1) for _ in range(samples)]).double().numpy()


def bench_bald() -> dict:
    from baal.active.heuristics import BALD

    from tasks.data_selection.uncertainty import bald_scores

    mc = mc_dropout_probs()
    ours = bald_scores(mc)
    theirs = np.asarray(BALD().get_uncertainties(np.transpose(mc, (1, 2, 0))), dtype=np.float64)  # baal: (n, C, iters)
    diff = float(np.max(np.abs(ours - theirs)))
    same_top = bool(np.array_equal(np.argsort(-ours, kind="stable")[:100], np.argsort(-theirs, kind="stable")[:100]))
    res = {"n": int(mc.shape[1]), "classes": int(mc.shape[2]), "mc_samples": int(mc.shape[0]),
           "max_abs_diff": diff, "tol": BALD_TOL, "ok": diff <= BALD_TOL, "same_top100": same_top,
           "score_range": [float(ours.min()), float(ours.max())]}
    print(f"(b) BALD on {mc.shape[1]} digits x {mc.shape[0]} MC-dropout samples: max |ours - baal| = {diff:.3g} "
          f"(tol {BALD_TOL:g}); same top-100: {same_top}", flush=True)
    return res


# (e) --------------------------------------------------------------------------------------
def badge_pool(n: int = 4000, d: int = 64, k: int = 10, seed: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """(probs (n, k), features (n, d)): clustered ReLU features and a random linear softmax head,
    scaled so the predictions range from confident to uncertain (as a trained MLP's do)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=2.0, size=(k, d))
    h = np.maximum(centres[rng.integers(0, k, n)] + rng.normal(size=(n, d)), 0.0)
    logits = h @ rng.normal(scale=0.15, size=(d, k))
    p = np.exp(logits - logits.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True), h


def kmeanspp_potential(g: np.ndarray, picks: np.ndarray) -> float:
    """Sum over rows of ``g`` of the squared distance to the nearest row in ``picks`` (difference form)."""
    d2 = np.full(g.shape[0], np.inf)
    for j in picks:
        diff = g - g[j]
        np.minimum(d2, np.einsum("ij,ij->i", diff, diff), out=d2)
    return float(d2.sum())


def bench_badge(repeats: int, seeds: tuple[int, ...], batch: int = 100) -> dict:
    import skactiveml.pool._badge as sk_badge
    from skactiveml.base import SkactivemlClassifier
    from skactiveml.pool import Badge

    from tasks.data_selection.badge import badge_embeddings, badge_kmeanspp
    from tasks.evaluation.seeds import mean_ci

    probs, h = badge_pool()
    n, k = probs.shape

    class Fixed(SkactivemlClassifier):
        """A classifier that is already trained: X is the pool position, predict_proba returns our
        probabilities and, with ``return_embeddings=True``, our features (skactiveml's embedding hook)."""

        def fit(self, X, y, sample_weight=None):
            return self

        def predict_proba(self, X, return_embeddings=False):
            idx = np.asarray(X, dtype=np.int64)[:, 0]
            return (probs[idx], h[idx]) if return_embeddings else probs[idx]

    X, y = np.arange(n, dtype=float)[:, None], np.full(n, np.nan)
    clf = Fixed(classes=np.arange(k))

    def theirs(seed: int) -> np.ndarray:
        qs = Badge(clf_embedding_flag_name="return_embeddings", random_state=seed)
        return np.asarray(qs.query(X, y, clf, fit_clf=False, batch_size=batch))

    def ours(seed: int) -> np.ndarray:
        return badge_kmeanspp(probs, h, np.arange(n), batch, np.random.default_rng(seed))[0]

    # their embeddings, as their query computes them: record _d_2's first argument
    seen: list[np.ndarray] = []
    orig = sk_badge._d_2

    def spy(g_x, *a, **kw):
        if not seen:
            seen.append(np.array(g_x))
        return orig(g_x, *a, **kw)

    sk_badge._d_2 = spy
    try:
        first_theirs = theirs(0)
    finally:
        sk_badge._d_2 = orig
    g = badge_embeddings(probs, h)
    emb_diff = float(np.max(np.abs(g - seen[0])))
    first_ours = ours(0)
    pot = {"ours": [kmeanspp_potential(g, ours(s)) for s in seeds],
           "skactiveml": [kmeanspp_potential(g, theirs(s)) for s in seeds]}
    rand = [kmeanspp_potential(g, np.random.default_rng(s).choice(n, batch, replace=False)) for s in seeds]
    ci = {name: mean_ci(v) for name, v in {**pot, "random": rand}.items()}
    diff = mean_ci(np.asarray(pot["ours"]) - np.asarray(pot["skactiveml"]))  # seeds paired by index only
    fns = {"ours": lambda: ours(0), "skactiveml": lambda: theirs(0)}
    wall, cpu = interleaved(fns, repeats)
    t = {key: float(np.median(v)) for key, v in wall.items()}
    c = {key: float(np.median(v)) for key, v in cpu.items()}
    scale = float(np.mean(pot["skactiveml"]))
    res = {"pool": n, "dim": h.shape[1], "classes": k, "batch": batch, "repeats": repeats, "seeds": len(seeds),
           "embedding_max_abs_diff": emb_diff, "tol": BADGE_TOL, "embedding_ok": emb_diff <= BADGE_TOL,
           "same_first_pick": bool(first_ours[0] == first_theirs[0]), "first_pick": int(first_ours[0]),
           "same_picks_seed0": bool(np.array_equal(first_ours, first_theirs)),
           "potential": {name: {"mean": m, "lo": lo, "hi": hi} for name, (m, lo, hi) in ci.items()},
           "potential_ours_minus_theirs": {"mean": diff[0], "lo": diff[1], "hi": diff[2],
                                           "relative": diff[0] / scale},
           "potential_same_within_ci": bool(diff[1] <= 0.0 <= diff[2]),
           "ours_s": t["ours"], "skactiveml_s": t["skactiveml"], "speedup": t["skactiveml"] / t["ours"],
           "ours_cpu_s": c["ours"], "skactiveml_cpu_s": c["skactiveml"], "cpu_speedup": c["skactiveml"] / c["ours"]}
    print(f"(e) BADGE {n}x{h.shape[1]} ({k} classes), batch {batch}: embeddings max |ours - skactiveml| = "
          f"{emb_diff:.3g}; same first pick: {res['same_first_pick']}; k-means++ potential ours "
          f"{ci['ours'][0]:.4g} [{ci['ours'][1]:.4g}, {ci['ours'][2]:.4g}] vs skactiveml {ci['skactiveml'][0]:.4g} "
          f"[{ci['skactiveml'][1]:.4g}, {ci['skactiveml'][2]:.4g}] (random {ci['random'][0]:.4g}); "
          f"time ours {t['ours'] * 1e3:.1f} ms, skactiveml {t['skactiveml'] * 1e3:.1f} ms ({res['speedup']:.2f}x; "
          f"CPU {res['cpu_speedup']:.2f}x)", flush=True)
    return res


# (c) --------------------------------------------------------------------------------------
def paper_params(paper: str, profile: str):
    """The paper's params (``params.yaml`` section at ``profile``) through the paper registry."""
    from flows.papers import get_paper
    from tasks.platform.params import read_yaml, section_raw

    model = get_paper(paper).params_model
    return model.model_validate(section_raw(read_yaml(ROOT / "params.yaml"), paper, model, profile))


def bench_noise(profile: str, seeds: tuple[int, ...]) -> dict:
    import pyarrow as pa
    from cleanlab.filter import find_label_issues

    from tasks.data_prep import prepare
    from tasks.evaluation.seeds import mean_ci, paired
    from tasks.data_selection.cleaning import detection, flag_all, noisy_views
    from tasks.train import torch_threads

    p = paper_params("tacred_noise", profile)
    splits = prepare(p.data)
    clean = p.clean
    rows, records, counts = [], [], {}
    with torch_threads():
        for seed in seeds:
            v = noisy_views(clean, seed, splits["train"], splits["val"], splits["test"])
            ids, pool = v["ids"], v["pool"]
            found = find_label_issues(v["y"][pool], v["probs"][pool], filter_by="prune_by_noise_rate",
                                      return_indices_ranked_by="self_confidence")
            flags = {name: s.ids for name, s in flag_all(clean, seed, v).items()}
            flags["CL"] = ids[pool[found[: v["cap"]]]]  # the flaggers' common cap
            for name, f in flags.items():
                rows += [{"seed": seed, "flagger": name, "id": int(i)} for i in f]
                counts.setdefault(name, {})[seed] = len(f)
            records += [{"seed": seed, **r} for r in v["record"].to_pylist()]
            print(f"(c) seed {seed}: pool {pool.size}, noisy {v['record'].num_rows}, cap {v['cap']}, CL found "
                  f"{len(found)}", flush=True)
    det = detection(pa.Table.from_pylist(rows), pa.Table.from_pylist(records))
    out = {"params_profile": profile, "dataset": p.data.dataset, "max_samples": p.data.max_samples,
           "noise": clean.noise.model_dump(), "max_flag_fraction": clean.max_flag_fraction, "folds": clean.folds,
           "seeds": list(seeds), "flaggers": {}, "cl_minus": {}}
    for name, per in det.items():
        entry = {"n_flags_mean": float(np.mean(list(counts[name].values())))}
        for metric in ("precision", "recall"):
            mean, lo, hi = mean_ci([per[s][metric] for s in seeds])
            entry[metric] = {"mean": mean, "lo": lo, "hi": hi}
        out["flaggers"][name] = entry
        print(f"(c) {name:>6}: precision {entry['precision']['mean']:.3f} [{entry['precision']['lo']:.3f}, "
              f"{entry['precision']['hi']:.3f}], recall {entry['recall']['mean']:.3f} [{entry['recall']['lo']:.3f}, "
              f"{entry['recall']['hi']:.3f}], {entry['n_flags_mean']:.0f} flags", flush=True)
    for name in det:
        if name != "CL":
            out["cl_minus"][name] = {m: paired({s: det["CL"][s][m] for s in seeds}, {s: det[name][s][m] for s in seeds})
                                     for m in ("precision", "recall")}
    return out


# (d) --------------------------------------------------------------------------------------
def dsir_log_weights(pool_text: list[str], target_text: list[str], work: Path) -> np.ndarray:
    """(n,) DSIR's log importance weights of the pool passages (hashed uni+bigram features,
    target = the CoLoR-Filter fine-tuning set), computed by the library from jsonl files."""
    import json

    from data_selection import HashedNgramDSIR

    for name, texts in (("pool", pool_text), ("target", target_text)):
        with open(work / f"{name}.jsonl", "w") as fh:
            fh.writelines(json.dumps({"text": t}) + "\n" for t in texts)
    dsir = HashedNgramDSIR([str(work / "pool.jsonl")], [str(work / "target.jsonl")], cache_dir=str(work / "cache"),
                           num_proc=1, min_example_length=1)
    dsir.fit_importance_estimator(num_tokens_to_fit="all")
    dsir.compute_importance_weights()
    return np.load(dsir.log_importance_weights_dir / "0.npy")


def bench_dsir(seeds: tuple[int, ...], profile: str = "full") -> dict:
    """DSIR vs CoLoR-Filter (and random) at the color_filter paper's budget on its corpus: the
    share of target-domain ("topics") passages selected and the target-domain bits/char of a
    fresh tinylm trained on each selection (the paper's pretrain step), per seed."""
    import tempfile

    import torch

    from flows.papers import get_paper
    from models.charlm import encode
    from tasks.data_selection.selection import Pool, select
    from tasks.evaluation.seeds import mean_ci, paired
    from tasks.quant.tinylm import bits_per_char, fit_tinylm
    from tasks.train import torch_threads

    paper = get_paper("color_filter")  # its corpus and score stages' cores, through the registry
    p = paper_params("color_filter", profile)
    corpus = paper.stage("corpus").func(p.corpus)["corpus"]
    scores = paper.stage("score").func(p.score, corpus=corpus)["scores"]
    split, text, origin = (corpus[c].to_pylist() for c in ("split", "text", "origin"))
    texts = {part: [t for s, t in zip(split, text) if s == part] for part in ("pool", "finetune", "eval")}
    pool_text, target_text = texts["pool"], texts["finetune"]
    origin = np.array([o for s, o in zip(split, origin) if s == "pool"])
    pool_tok = torch.stack([encode(t) for t in pool_text])
    ev = torch.stack([encode(t) for t in texts["eval"]])
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        logw = dsir_log_weights(pool_text, target_text, Path(tmp))
    dsir_s = time.perf_counter() - t0
    view = Pool(scores["position"].to_numpy(), {"prior_loss": scores["prior_loss"].to_numpy(),
                                                "conditional_loss": scores["conditional_loss"].to_numpy()})
    budget, tau = p.pretrain.budget, max(p.pretrain.taus)
    arms: dict[str, dict[int, dict[str, float]]] = {}
    with torch_threads(p.pretrain.target.threads):
        for seed in seeds:
            # DSIR's resampling: Gumbel top-k on the log importance weights (without replacement)
            g = logw + np.random.default_rng(seed).gumbel(size=logw.shape)
            picks = {"dsir": np.argsort(-g, kind="stable")[:budget],
                     f"color_tau{tau:g}": select(view, budget, selector="color_filter", seed=seed, tau=tau).ids,
                     "random": select(view, budget, selector="random", seed=seed).ids}
            for arm, ids in picks.items():
                model, _ = fit_tinylm(p.pretrain.target, pool_tok[torch.from_numpy(np.asarray(ids))], seed)
                arms.setdefault(arm, {})[seed] = {"share_topics": float(np.mean(origin[ids] == "topics")),
                                                  "eval_bpc": bits_per_char(model, ev)}
                print(f"(d) seed {seed} {arm:>12}: topics share {arms[arm][seed]['share_topics']:.3f}, "
                      f"eval bpc {arms[arm][seed]['eval_bpc']:.3f}", flush=True)
    out = {"profile": profile, "budget": budget, "tau": tau, "pool": int(len(pool_text)),
           "target_passages": len(target_text), "dsir_fit_s": dsir_s, "seeds": list(seeds), "arms": {},
           "dsir_minus_color": {}}
    for arm, per in arms.items():
        out["arms"][arm] = {}
        for m in ("share_topics", "eval_bpc"):
            mean, lo, hi = mean_ci([per[s][m] for s in seeds])
            out["arms"][arm][m] = {"mean": mean, "lo": lo, "hi": hi}
    color = f"color_tau{tau:g}"
    for m in ("share_topics", "eval_bpc"):
        out["dsir_minus_color"][m] = paired({s: arms["dsir"][s][m] for s in seeds}, {s: arms[color][s][m] for s in seeds})
    return out


def flat_metrics(out: dict) -> dict[str, float]:
    m = {f"coreset.l{k}.{f}": c[f] for k, c in out["coreset"]["cases"].items() for f in ("ours_s", "skactiveml_s", "speedup")}
    m.update({f"coreset.l{k}.same_picks": float(c["same_picks"]) for k, c in out["coreset"]["cases"].items()})
    m["bald.max_abs_diff"] = out["bald"]["max_abs_diff"]
    b = out["badge"]
    m.update({f"badge.{f}": float(b[f]) for f in ("embedding_max_abs_diff", "same_first_pick", "ours_s", "skactiveml_s",
                                                   "speedup", "cpu_speedup")})
    m.update({f"badge.potential.{a}_mean": e["mean"] for a, e in b["potential"].items()})
    m.update({f"noise.{n}.{k}_mean": e[k]["mean"] for n, e in out["noise"]["flaggers"].items() for k in ("precision", "recall")})
    if "arms" in out["dsir"]:
        m.update({f"dsir.{a}.{k}_mean": e[k]["mean"] for a, e in out["dsir"]["arms"].items() for k in ("share_topics", "eval_bpc")})
    m["total_wall_s"] = out["total_wall_s"]
    return m


def log_mlflow(out: dict, path: Path) -> None:
    from bench_data import log_mlflow as log_bench_data

    log_bench_data(out, path, flat_metrics(out), run="bench-data-peers",
                   tags={f"peer.{k}": v for k, v in out["versions"].items()})


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", choices=tuple(PROFILES), default="full")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    vers = peer_versions(PEERS)
    missing = [k for k in ("scikit-activeml", "baal", "cleanlab") if vers[k] == "not installed"]
    if missing:
        print(f"peers not installed: {missing}; run `make peers-env` and use .venv-peers/bin/python", file=sys.stderr)
        return 2
    kc_repeats, noise_profile, seeds = PROFILES[args.profile]
    dsir_profile = noise_profile
    load_start = os.getloadavg()[0]
    coreset = bench_coreset(kc_repeats)
    badge = bench_badge(kc_repeats, tuple(range(20 if args.profile == "full" else 10)))
    bald = bench_bald()
    noise = bench_noise(noise_profile, seeds)
    dsir = bench_dsir(seeds[:5], dsir_profile) if vers["data-selection"] != "not installed" else {
        "skipped": "data-selection (DSIR) not installed"}
    out = {"profile": args.profile, "versions": vers, "coreset": coreset, "bald": bald, "badge": badge, "noise": noise, "dsir": dsir,
           "total_wall_s": time.perf_counter() - T_START, "cpus": os.cpu_count(), "machine": platform.machine(),
           "python": platform.python_version(), "load_avg_1m_at_start": load_start,
           "load_avg_1m_at_end": os.getloadavg()[0]}
    path = Path(args.out or ROOT / "benchmarks/results/data_peers.json")
    write_json_atomic(path, out)
    log_mlflow(out, path)
    print(f"wrote {path}; total {out['total_wall_s']:.1f} s")
    failed = ([] if coreset["same_picks"] else [f"core-set picks differ from scikit-activeml's: {coreset['cases']}"]) + \
        ([] if bald["ok"] else [f"BALD differs from baal's by {bald['max_abs_diff']:.3g} > {BALD_TOL:g}"]) + \
        ([] if badge["embedding_ok"] and badge["same_first_pick"] else
         [(f"BADGE embeddings differ by {badge['embedding_max_abs_diff']:.3g} (tol {BADGE_TOL:g}) or the first "
           f"pick differs (same first pick: {badge['same_first_pick']})")])
    for f in failed:
        print(f"PEER CHECK FAILED: {f}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
