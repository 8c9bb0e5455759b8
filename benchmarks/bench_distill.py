"""Wall time of distillation through our task vs a plain torch loop (same work).

Both arms distil the same student from the same frozen teacher with the registered ``kd``
loss, the same batch size, epochs, Adam settings, data order and init, and both evaluate
the validation split after every epoch (our task records that per-epoch history) and once
at the end. The task arm is :func:`tasks.distill.distill` (Lightning Fabric); the plain arm is a
hand-written ``for epoch / for batch`` loop. Arms alternate, ``--repeats`` times each; we
report medians and the ratio task / plain (target <= 1.10), of wall time and of the
process's CPU time. NOTE: on a shared machine the wall-time ratio mostly measures who else
was running; the CPU-time ratio (``time.process_time``, one torch thread) is the steadier
estimate of the framework's own overhead.

    .venv/bin/python benchmarks/bench_distill.py [--epochs 10 --repeats 5 --quick]

Writes ``benchmarks/results/distill.json`` (atomic) and logs an MLflow run (experiment
``bench-distill``; tracking URI from ``MLFLOW_TRACKING_URI``, else MLflow's default).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
warnings.filterwarnings("ignore")

import torch  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from models import ModelSpec  # noqa: E402
from tasks.platform import artifacts  # noqa: E402
from tasks.data_prep import DataParams, prepare, table_to_tensors  # noqa: E402
from tasks.distill.distill import DistillParams, distill, make_loss_fn  # noqa: E402
from tasks.train import TrainParams, accuracy_and_loss, init_model, load_model, num_classes, train, unpack_seeds  # noqa: E402


def plain_loop(params: DistillParams, data, teacher_sd, seed: int) -> float:
    """The same distillation as ``distill`` with a bare torch loop; returns final val acc."""
    tr, va = data["train"], data["val"]
    n_classes = num_classes(tr, va)
    xt, yt, _ = table_to_tensors(tr)
    xv, yv, _ = table_to_tensors(va)
    teacher = load_model(params.teacher, teacher_sd, xt.shape[1], n_classes, "teacher").eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    loss_fn = make_loss_fn(params, [teacher])
    g = torch.Generator().manual_seed(seed)
    loader = DataLoader(TensorDataset(xt, yt), batch_size=params.batch_size, shuffle=True, generator=g)
    model = init_model(params.student, tr, n_classes, seed)
    opt = torch.optim.Adam(model.parameters(), lr=params.lr, weight_decay=params.weight_decay)
    history = []
    for _ in range(params.max_epochs):
        model.train()
        total, n = 0.0, 0
        for x, y in loader:
            loss = loss_fn(model(x), y, x)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, n = total + float(loss) * len(y), n + len(y)
        model.eval()
        with torch.no_grad():
            logits = model(xv)
            history.append(
                {"train_loss": total / n, "val_acc": float((logits.argmax(-1) == yv).float().mean())}
            )
    accuracy_and_loss(teacher, va)
    return accuracy_and_loss(model, va)["acc"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--num-samples", type=int, default=4000)
    ap.add_argument("--quick", action="store_true", help="tiny run (smoke check of the script)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/distill.json"))
    args = ap.parse_args()
    if args.quick:
        args.epochs, args.repeats, args.num_samples = 2, 2, 1000
    torch.set_num_threads(1)  # NOTE: one thread in both arms; the machine is shared
    load_start = os.getloadavg()

    data = prepare(DataParams(dataset="mnist1d", num_samples=args.num_samples, seed=0))
    teacher_spec = ModelSpec(hidden=(256, 128))
    teacher = train(TrainParams(model=teacher_spec, seeds=(0,), max_epochs=5), train=data["train"], val=data["val"])
    teacher_sd = unpack_seeds(teacher["weights"])[0]
    n_train = data["train"].num_rows
    # (batch size, student hidden widths): the headline row first (the flows' settings).
    configs = [(args.batch_size, (64,)), (256, (64,)), (args.batch_size, (512, 256))]
    rows = []
    for batch_size, hidden in configs:
        params = DistillParams(
            teacher=teacher_spec,
            student=ModelSpec(hidden=hidden),
            loss="kd",
            seeds=(0,),
            max_epochs=args.epochs,
            batch_size=batch_size,
        )
        # warm-up both arms once (allocator, first Fabric)
        one = params.model_copy(update={"max_epochs": 1})
        distill(one, train=data["train"], val=data["val"], teacher_weights=teacher["weights"])
        plain_loop(one, data, teacher_sd, 0)
        task_s, plain_s, task_cpu, plain_cpu, acc_task, acc_plain = [], [], [], [], [], []
        for _ in range(args.repeats):  # arms alternate so load drifts hit both
            t0, c0 = time.perf_counter(), time.process_time()
            out = distill(params, train=data["train"], val=data["val"], teacher_weights=teacher["weights"])
            task_s.append(time.perf_counter() - t0)
            task_cpu.append(time.process_time() - c0)
            acc_task.append(out["metrics"]["val_acc_mean"])
            t0, c0 = time.perf_counter(), time.process_time()
            acc_plain.append(plain_loop(params, data, teacher_sd, 0))
            plain_s.append(time.perf_counter() - t0)
            plain_cpu.append(time.process_time() - c0)
        steps = args.epochs * -(-n_train // batch_size)
        row = {
            "batch_size": batch_size,
            "student": list(hidden),
            "steps": steps,
            "task_s": task_s,
            "plain_s": plain_s,
            "task_median_s": statistics.median(task_s),
            "plain_median_s": statistics.median(plain_s),
            "ratio_task_over_plain": statistics.median(task_s) / statistics.median(plain_s),
            "overhead_ms_per_step": 1e3 * (statistics.median(task_s) - statistics.median(plain_s)) / steps,
            "task_cpu_s": task_cpu,
            "plain_cpu_s": plain_cpu,
            "cpu_ratio_task_over_plain": statistics.median(task_cpu) / statistics.median(plain_cpu),
            "cpu_overhead_ms_per_step": 1e3 * (statistics.median(task_cpu) - statistics.median(plain_cpu)) / steps,
            "same_val_acc": acc_task == acc_plain,
            "val_acc": statistics.median(acc_task),
        }
        rows.append(row)
        print(
            f"bs {batch_size:4d} student {hidden}: task {row['task_median_s']:.3f}s plain "
            f"{row['plain_median_s']:.3f}s ratio {row['ratio_task_over_plain']:.3f} "
            f"(+{row['overhead_ms_per_step']:.2f} ms/step); cpu ratio {row['cpu_ratio_task_over_plain']:.3f} "
            f"(+{row['cpu_overhead_ms_per_step']:.2f} ms/step); same acc: {row['same_val_acc']}"
        )

    head = rows[0]
    result = {
        "benchmark": "distill_task_vs_plain_torch_loop",
        "dataset": f"mnist1d n={args.num_samples} (train {n_train})",
        "teacher": list(teacher_spec.hidden),
        "loss": "kd",
        "epochs": args.epochs,
        "repeats": args.repeats,
        "rows": rows,
        "headline": {
            k: head[k]
            for k in (
                "batch_size",
                "student",
                "ratio_task_over_plain",
                "overhead_ms_per_step",
                "cpu_ratio_task_over_plain",
                "cpu_overhead_ms_per_step",
            )
        },
        "ratio_task_over_plain": head["ratio_task_over_plain"],
        "cpu_ratio_task_over_plain": head["cpu_ratio_task_over_plain"],
        "target_ratio": 1.10,
        "meets_target": head["ratio_task_over_plain"] <= 1.10,
        "meets_target_cpu": head["cpu_ratio_task_over_plain"] <= 1.10,
        "load_average_start": load_start,
        "torch_threads": torch.get_num_threads(),
        "load_average": os.getloadavg(),
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, torch {torch.__version__}",
        "quick": args.quick,
    }
    artifacts.write(args.out, result)
    try:
        import mlflow

        mlflow.set_experiment("bench-distill")
        with mlflow.start_run(run_name="distill_vs_plain"):
            mlflow.log_params({k: result[k] for k in ("epochs", "repeats", "loss", "quick")})
            for row in rows:
                tag = f"bs{row['batch_size']}_h{'x'.join(map(str, row['student']))}"
                mlflow.log_metrics(
                    {
                        f"{tag}.{k}": row[k]
                        for k in ("task_median_s", "plain_median_s", "ratio_task_over_plain", "cpu_ratio_task_over_plain")
                    }
                )
            mlflow.log_artifact(args.out)
    except ImportError:  # pragma: no cover - mlflow is in the lock file
        print("mlflow not importable; JSON only", file=sys.stderr)
    print(
        f"headline ratio {result['ratio_task_over_plain']:.3f} wall, {result['cpu_ratio_task_over_plain']:.3f} cpu "
        f"(target <= 1.10) -> {args.out}"
    )


if __name__ == "__main__":
    main()
