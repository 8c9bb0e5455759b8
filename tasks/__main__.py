"""The one CLI over the stage shell (what ``dvc.yaml`` calls).

    python -m tasks run --paper nm_sparsity --stage train_digits [--profile full] [--force]
    python -m tasks papers                       # list registered papers and their stages
    python -m tasks validate [--profile smoke]   # validate every params section (every profile), exit 2 if bad
    python -m tasks dvc-yaml [--check]           # (re)generate dvc.yaml from the declarations
    python -m tasks params --profile smoke       # print params.yaml with a profile applied
    python -m tasks compare RUN_A RUN_B          # metrics that moved beyond their CI, item flips

Bad input exits with status 2 and a one-paragraph error naming the key or file; nothing is
written.
"""

from __future__ import annotations

import argparse
import sys

import yaml

from tasks.platform.errors import ReprolabError


def _papers():
    from flows.papers import discover

    return discover()


def _load(profile: str, path: str):
    from tasks.platform.params import load_all

    return load_all({n: p.params_model for n, p in _papers().items()}, profile, path)


def cmd_run(args) -> int:
    from flows.papers import get_paper
    from tasks.platform import tracking
    from tasks.platform.params import ROOT
    from tasks.platform.stage import dvc_path, run_stage

    paper = get_paper(args.paper)
    stage = paper.stage(args.stage)
    params = _load(args.profile, args.params)[paper.name]  # every section validated first
    inputs = {}
    for arg, (src, out) in stage.input_refs().items():
        inputs[arg] = ROOT / dvc_path(paper, paper.stage(src), out)
    out_dir = ROOT / "artifacts" / paper.name / stage.name
    result = run_stage(paper, stage, params, inputs, out_dir=out_dir, overwrite=args.force)
    tracker = tracking.Tracker(paper.name, args.profile, "dvc")
    tracker.log_stage(result, stage.params_for(params), cached=False)
    print(f"{paper.name}/{stage.name}: wrote {', '.join(sorted(result.outputs))} to {out_dir} "
          f"in {result.seconds:.1f}s")
    return 0


def cmd_papers(args) -> int:
    for name, paper in _papers().items():
        print(f"{name:24s} {paper.title} (arXiv:{paper.arxiv})" if paper.arxiv else f"{name:24s} {paper.title}")
        if args.verbose:
            for st in paper.stages:
                print(f"    {st.name}")
    return 0


def cmd_validate(args) -> int:
    from tasks.platform.params import PROFILES

    profiles = [args.profile] if args.profile else list(PROFILES)  # default: every profile
    for profile in profiles:
        params = _load(profile, args.params)
    print(f"ok: {len(params)} paper section(s) valid under profile(s) {', '.join(profiles)}: {', '.join(params)}")
    return 0


def cmd_params(args) -> int:
    from tasks.platform.params import read_yaml

    params = _load(args.profile, args.params)  # validates
    raw = read_yaml(args.params)
    out = {k: raw[k] for k in ("defaults",) if k in raw}
    out.update({name: p.model_dump(mode="json") for name, p in params.items()})
    sys.stdout.write(yaml.safe_dump(out, sort_keys=False))
    return 0


def cmd_dvc_yaml(args) -> int:
    from tasks.platform.dvcgen import render_dvc_yaml
    from tasks.platform.params import ROOT

    text = render_dvc_yaml(_papers())
    target = ROOT / "dvc.yaml"
    if args.check:
        if not target.is_file() or target.read_text() != text:
            print("dvc.yaml is out of date with the stage declarations: run `python -m tasks dvc-yaml`",
                  file=sys.stderr)
            return 1
        print("dvc.yaml is up to date")
        return 0
    from tasks.platform.artifacts import atomic_write_bytes

    atomic_write_bytes(target, text.encode())
    print(f"wrote {target}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tasks", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run one stage of one paper into artifacts/ (DVC's path)")
    r.add_argument("--paper", required=True)
    r.add_argument("--stage", required=True)
    r.add_argument("--profile", default="full", choices=("smoke", "full"))
    r.add_argument("--params", default="params.yaml")
    r.add_argument("--force", action="store_true", help="replace existing outputs with different content")
    r.set_defaults(fn=cmd_run)
    p = sub.add_parser("papers", help="list registered papers")
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(fn=cmd_papers)
    v = sub.add_parser("validate", help="validate params.yaml (every profile unless --profile)")
    v.add_argument("--profile", default=None, choices=("smoke", "full"))
    v.add_argument("--params", default="params.yaml")
    v.set_defaults(fn=cmd_validate)
    pp = sub.add_parser("params", help="print params with a profile applied (validated)")
    pp.add_argument("--profile", default="full", choices=("smoke", "full"))
    pp.add_argument("--params", default="params.yaml")
    pp.set_defaults(fn=cmd_params)
    d = sub.add_parser("dvc-yaml", help="generate dvc.yaml from the stage declarations")
    d.add_argument("--check", action="store_true", help="exit 1 if dvc.yaml is out of date")
    d.set_defaults(fn=cmd_dvc_yaml)
    from tasks.evaluation.compare import add_cli as add_compare_cli

    add_compare_cli(sub)  # python -m tasks compare RUN_A RUN_B (docs/evaluation.md)
    args = ap.parse_args(argv)
    try:
        if args.cmd == "compare":
            _papers()  # registered papers tell which stored results are shared (tasks.platform.stage.find_store_dir)
        return args.fn(args)
    except ReprolabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
