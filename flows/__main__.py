"""Run or serve paper flows under Prefect.

    python -m flows run --paper nm_sparsity|all [--profile smoke|full]
    python -m flows list
    python -m flows serve [--paper NAME ...] [--cron "0 2 * * *"]   # nightly deployments

Bad input exits with status 2 and an error naming the key or file.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from tasks.errors import ReprolabError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m flows")
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--paper", default="nm_sparsity", help="a registered paper, or 'all'")
    r.add_argument("--profile", default="full", choices=("smoke", "full"))
    r.add_argument("--overrides", default="", help="JSON partial params section for this run")
    sub.add_parser("list")
    s = sub.add_parser("serve")
    s.add_argument("--paper", action="append", help="paper(s) to serve (default: all)")
    s.add_argument("--cron", default=None)
    args = ap.parse_args(argv)
    try:
        from flows.papers import discover, get_paper

        if args.cmd == "list":
            for name, p in discover().items():
                print(f"{name:24s} {p.title}")
            return 0
        if args.cmd == "serve":
            from prefect import serve

            from flows.run import NIGHTLY_CRON, build_deployments

            papers = [get_paper(n) for n in args.paper] if args.paper else list(discover().values())
            serve(*build_deployments(papers, cron=args.cron or NIGHTLY_CRON))
            return 0
        overrides = json.loads(args.overrides) if args.overrides else None
        names = list(discover()) if args.paper == "all" else [args.paper]
        papers = [get_paper(n) for n in names]
        from tasks.params import load_all

        # Validate every section (with the overrides) before Prefect or any server starts.
        for paper in papers:
            load_all({n: p.params_model for n, p in discover().items()}, args.profile,
                     overrides={paper.name: overrides} if overrides else None)
        for paper in papers:
            t0 = time.perf_counter()
            summary = paper.flow(profile=args.profile, overrides=overrides)
            computed = [s for s, v in summary["stages"].items() if not (v["cached"] or v["reused"])]
            print(f"\n== {paper.name} ({args.profile}) finished in {time.perf_counter() - t0:.1f}s; "
                  f"{len(computed)} of {len(summary['stages'])} stages computed, the rest reused")
            if "report" in summary:
                print(f"   report:  {summary['report']}  (and .html)")
        from flows.run import HOME
        from tasks import tracking

        print("\nWhere to look:")
        print(f"   MLflow UI:   mlflow ui --backend-store-uri {tracking.tracking_uri()}   (or: make ui)")
        print("   Prefect UI:  prefect server start --host 127.0.0.1   (or: make ui)")
        print(f"   artifacts:   {HOME / 'store'}")
        return 0
    except json.JSONDecodeError as e:
        print(f"error: --overrides is not valid JSON: {e}", file=sys.stderr)
        return 2
    except ReprolabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
