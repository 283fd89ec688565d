"""Run every bench/bench_*.py module's run() and write JSON plus a markdown table to bench/results/."""

from __future__ import annotations

import importlib
import json
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(HERE.parent))
    wanted = set(argv)
    results: dict[str, object] = {}
    for path in sorted(HERE.glob("bench_*.py")):
        name = path.stem
        if wanted and name not in wanted and name.removeprefix("bench_") not in wanted:
            continue
        module = importlib.import_module(f"bench.{name}")
        sys.stderr.write(f"running {name}...\n")
        results[name] = module.run()
    out_dir = HERE / "results"
    out_dir.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    meta = {"when": stamp, "python": platform.python_version(), "machine": platform.machine()}
    (out_dir / f"{stamp}.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    lines = ["| benchmark | metric | value |", "|---|---|---|"]
    for bench, figures in results.items():
        if isinstance(figures, dict):
            for key, value in figures.items():
                lines.append(f"| {bench} | {key} | {value} |")
    (out_dir / f"{stamp}.md").write_text("\n".join(lines) + "\n")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
