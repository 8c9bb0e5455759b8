"""Run or serve paper flows under Prefect.

    python -m flows run --paper nm_sparsity|all [--profile smoke|full]
    python -m flows list
    python -m flows serve [--paper NAME ...] [--cron "0 2 * * *"]   # nightly deployments

Bad input exits with status 2 and an error naming the key or file.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time

from flows import local
from tasks.platform.errors import ReprolabError


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
    if args.cmd == "run":
        # First line before the heavy imports (papers import torch & co.: seconds of silence).
        print(f"reprolab: {args.paper} ({args.profile}): loading the papers and checking params.yaml ...", flush=True)
    local.configure()
    try:
        from flows.papers import discover, get_paper

        if args.cmd == "list":
            for name, p in discover().items():
                print(f"{name:24s} {p.title}")
            return 0
        if args.cmd == "serve":
            print(f"Prefect: serving into {local.require_server()}", flush=True)
            from prefect import serve

            from flows.run import NIGHTLY_CRON, build_deployments

            papers = [get_paper(n) for n in args.paper] if args.paper else list(discover().values())
            serve(*build_deployments(papers, cron=args.cron or NIGHTLY_CRON))
            return 0
        overrides = json.loads(args.overrides) if args.overrides else None
        names = list(discover()) if args.paper == "all" else [args.paper]
        papers = [get_paper(n) for n in names]
        _validate(papers, args.profile, overrides)
        return _run(papers, args.profile, overrides)
    except json.JSONDecodeError as e:
        print(f"error: --overrides is not valid JSON: {e}", file=sys.stderr)
        return 2
    except ReprolabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C before a run started (while importing the papers)
        print("interrupted (SIGINT) before any stage started; nothing was run", file=sys.stderr)
        return 130


def _validate(papers: list, profile: str, overrides: dict | None) -> None:
    """Validate every params section (with ``overrides`` on each paper run) before any server starts."""
    from flows.papers import discover
    from tasks.platform.params import load_all

    models = {n: p.params_model for n, p in discover().items()}
    for paper in papers:
        load_all(models, profile, overrides={paper.name: overrides} if overrides else None)


def _run(papers: list, profile: str, overrides: dict | None) -> int:
    """Run ``papers``' flows on the project's Prefect server (or a temporary one); Ctrl-C/SIGTERM
    stop within seconds (:mod:`flows.interrupt`)."""
    from flows import interrupt
    from tasks.platform import progress

    server: local.TemporaryServer | None = None

    def stop_server() -> None:
        if server is not None:
            server.stop()

    def message(signum: int) -> str:
        where = progress.current()
        what = f"during {where}" if where else "before any stage started"
        return (f"interrupted ({signal.Signals(signum).name}) {what}; finished stages are kept in "
                f"{local.reprolab_home() / 'store'}: the same command resumes from them")

    interrupt.install(message, stop_server)
    try:
        if os.environ.get("PREFECT_API_URL"):
            url = os.environ["PREFECT_API_URL"]
            print(f"Prefect: using PREFECT_API_URL={url}", flush=True)
        elif url := local.project_server_url():
            print(f"Prefect: using this project's running server {url.removesuffix('/api')} (make ui)", flush=True)
        else:
            print("Prefect: no server of this project is running (`make ui` starts one); "
                  "starting a temporary one for this run ...", flush=True)
            server = local.TemporaryServer()
            url = server.start()
        local.use_api_url(url)
        from prefect import tags

        interrupt.quiet_console()
        stale = local.mark_stale_runs()
        if stale:
            print(f"Prefect: marked {len(stale)} run(s) left Running by a process that is gone Crashed: "
                  f"{', '.join(stale)}", flush=True)
        from flows.run import build_flow

        with tags("reprolab", local.run_tag()), interrupt.deferred():
            for paper in papers:
                t0 = time.perf_counter()
                summary = build_flow(paper)(profile=profile, overrides=overrides)
                stages = summary["stages"]
                reused = [s for s, v in stages.items() if v["cached"] or v["reused"]]
                print(f"\n== {paper.name} ({profile}) finished in {time.perf_counter() - t0:.1f}s; "
                      f"{len(stages) - len(reused)} of {len(stages)} stages computed"
                      + (f", {len(reused)} reused: {', '.join(reused)}" if reused else ""))
                if "report" in summary:
                    print(f"   report:  {summary['report']}  (and .html)")
        local.drain_prefect()
    except BaseException:
        if interrupt.received() is None:
            raise
        local.drain_prefect(timeout=3)
        try:  # a task run's last state (an event) can be lost on exit: set it on the server now
            local.mark_stale_runs(this_process=True)
        except Exception:  # noqa: BLE001 - server busy or gone: the next run's sweep marks them
            pass
        interrupt.report()
        return interrupt.exit_code(interrupt.received())
    finally:
        stop_server()
    from tasks.platform import tracking

    print("\nWhere to look:")
    print(f"   MLflow UI:   mlflow ui --backend-store-uri {tracking.tracking_uri()}   (or: make ui)")
    print(f"   Prefect UI:  {'make ui' if server else url.removesuffix('/api')}   (history in {local.prefect_home()})")
    print(f"   artifacts:   {local.reprolab_home() / 'store'}")
    return 0


if __name__ == "__main__":
    code = main()
    if code in (130, 143):
        from flows import interrupt

        if interrupt.received() is not None:
            # NOTE: state is reported and the server stopped; skip interpreter teardown, which
            # after an interrupted stage was seen to block for ~10 s in native code.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    sys.exit(code)
