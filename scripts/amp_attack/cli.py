"""
The command line of C{scripts/attack}: runs the chosen families one after
the other, each on a fresh server, prints a progress line per family and the
table, writes the results as JSON under bench-results/ and (default runs)
docs/reliability.md, and exits 1 when a family shows a defect.

    python -m amp_attack [--quick] [--only FAMILY,...] [--no-docs] [--report JSON]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from amp_bench.driver import background_load, machine_info
from amp_bench.systems import ROOT, Pinning, Pythons

from . import report
from .families import all_families
from .harness import Family, run_family
from .server import EXPECTED_DEFAULTS, server_options


def parse_args(argv: Sequence[str], names: List[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/attack",
        description="Attack a real amp-dispatch server, family by family, and report "
        "what held (docs/reliability.md).",
        epilog="families, in running order: " + ", ".join(names),
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: smaller volumes, < 1 min, no docs"
    )
    parser.add_argument(
        "--only",
        default=None,
        metavar="FAMILY[,FAMILY]",
        help="run only these families ('flood': every flood-*)",
    )
    parser.add_argument(
        "--no-docs", dest="docs", action="store_false", help="do not write docs/reliability.md"
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=ROOT / "bench-results",
        help="directory of the JSON results and server logs (bench-results)",
    )
    parser.add_argument(
        "--report",
        type=Path,
        default=None,
        metavar="JSON",
        help="run nothing: print the table of saved results and (unless --no-docs) write "
        "docs/reliability.md from them",
    )
    parser.add_argument(
        "--python",
        default=sys.executable,
        help="the interpreter that runs amp-dispatch (default: this one)",
    )
    args = parser.parse_args(argv)
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        chosen = {n for n in names for w in wanted if n == w or n.startswith(w + "-")}
        unknown = [w for w in wanted if not any(n == w or n.startswith(w + "-") for n in names)]
        if unknown:
            parser.error(f"unknown families {', '.join(unknown)}; known: {', '.join(names)}")
        args.only = chosen
    if args.quick:
        args.docs = False
    return args


def server_defaults(python: str) -> Dict[str, Any]:
    """
    The hardening options' defaults as the server under test states them,
    else the expected ones; and which options it has.
    """
    options = server_options(python)
    defaults: Dict[str, Any] = {}
    for name, expected in EXPECTED_DEFAULTS.items():
        stated = options.get(name)
        try:
            defaults[name] = int(float(stated)) if stated is not None else expected
        except ValueError:
            defaults[name] = expected
    defaults["options"] = sorted(options)
    return defaults


def raise_own_fd_limit() -> None:
    """
    The attackers hold more connections than the server may: soft limit up
    to the hard one.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def run(args: argparse.Namespace, families: List[Family], command: str) -> Dict[str, Any]:
    pinning = Pinning.detect()
    if pinning.load:
        os.sched_setaffinity(0, {int(pinning.load[-1])})
    raise_own_fd_limit()
    machine = machine_info(Pythons(args.python, None, args.python, None), pinning)
    for key in ("pypy", "loadgen", "redis", "txredisapi"):
        machine.pop(key, None)
    machine["background_load"] = background_load(0.5)
    if machine["background_load"] > 0.2:
        print(
            f"scripts/attack: other processes use {machine['background_load']:.1f} cores now: "
            "latencies will be noisy",
            file=sys.stderr,
        )
    defaults = server_defaults(args.python)
    missing = [name for name in EXPECTED_DEFAULTS if name not in defaults["options"]]
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    log_dir = args.output / "logs" / f"attack-{stamp}"
    print(
        f"amp-dispatch attack: {len(families)} families{' (quick)' if args.quick else ''}; "
        f"{pinning.note}; server fd limit 1024"
        + (f"; this build has no --{', --'.join(missing)}" if missing else ""),
        file=sys.stderr,
    )
    results: List[Dict[str, Any]] = []
    t0 = time.monotonic()
    for index, family in enumerate(families, 1):
        try:
            result = run_family(family, args.python, pinning, log_dir, args.quick, defaults)
        except KeyboardInterrupt:
            print("\ninterrupted: reporting what ran", file=sys.stderr)
            break
        results.append(result)
        if sys.stderr.isatty():
            sys.stderr.write("\r\x1b[K")
        print(report.progress_line(index, len(families), result), file=sys.stderr, flush=True)
    return {
        "command": command,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "stamp": stamp,
        "seconds": round(time.monotonic() - t0, 1),
        "quick": args.quick,
        "machine": machine,
        "server_defaults": defaults,
        "results": results,
    }


def main(argv: Optional[Sequence[str]] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    families = all_families()
    args = parse_args(argv, [f.name for f in families])
    if args.only:
        families = [f for f in families if f.name in args.only]
    if args.report is not None:
        json_path = args.report
        results = json.loads(json_path.read_text())
        written: List[Path] = []
        if results.get("quick"):
            args.docs = False  # a smoke run's figures do not go into the docs
    else:
        results = run(args, families, shlex.join(["scripts/attack", *argv]))
        args.output.mkdir(parents=True, exist_ok=True)
        json_path = args.output / f"attack-{results['stamp']}.json"
        json_path.write_text(json.dumps(results, indent=1) + "\n")
        written = [json_path]
    methods = {f.name: f.method for f in all_families()}
    markdown = report.markdown(results, methods)
    md_path = json_path.with_suffix(".md")
    md_path.write_text(markdown)
    written.append(md_path)
    if args.docs:
        doc = ROOT / "docs" / "reliability.md"
        doc.write_text(markdown)
        written.append(doc)
    print(report.text_table(results["results"]))
    shown = [str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p) for p in written]
    print(f"took {results['seconds'] / 60:.1f} min; wrote {', '.join(shown)}")
    failed = [r["family"] for r in results["results"] if not r["held"]]
    if failed:
        print(f"defects in: {', '.join(failed)}", file=sys.stderr)
        sys.exit(1)
