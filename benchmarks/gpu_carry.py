"""Prepare, on this machine, what ``benchmarks/gpu.sh`` carries to the GPU machine: ``.gpu/``
(git-ignored; the device tool's ``carry``).

- ``.gpu/wheels/``: the Python 3.12 x86-64 wheels of what tunelab needs there and the machine
  lacks: the closure of tunelab's core dependencies minus ``benchmarks/h200_packages.txt``,
  at the versions installed here (no registry can be reached from there), minus
  :data:`SKIPPED`, plus :data:`OVERRIDES` (newer than the machine may hold);
- ``.gpu/data/instructions.jsonl``: the throughput benchmark's instruction rows (chatterbot
  English pairs + BBC article -> headline, ``throughput_assets.instruction_rows``), so the
  GPU run needs none of the packaged corpora.

    python benchmarks/gpu_carry.py                  # 7 MB
    python benchmarks/gpu_carry.py --with-pyarrow   # + pyarrow (55 MB), if the machine's is
                                                    # too old for the carried datasets
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CARRY = ROOT / ".gpu"
# not carried: never imported on gpu.sh's paths (benchmarks/gpu.sh --cpu-smoke hides them too)
SKIPPED = {
    "rouge-score": "an sdist only; imported only to score ROUGE",
    "plotly": "9.7 MB; only each run's report.html needs it (a warning without)",
}
# carried although the machine has them: the carried wheels need newer versions than it may
# hold (datasets: fsspec <= 2026.9.0 as installed here; pydantic: typing-extensions >= 4.16)
OVERRIDES = ("fsspec", "typing-extensions")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64")  # fmt: skip


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def machine_packages() -> set[str]:
    lines = (ROOT / "benchmarks" / "h200_packages.txt").read_text().splitlines()
    return {norm(x) for x in lines if x.strip() and not x.startswith("#")}


def missing(machine: set[str]) -> dict[str, str]:
    """name -> version installed here, for tunelab's core dependencies (and theirs) that the
    machine lacks."""
    found: dict[str, str] = {}
    todo = [r for r in metadata.requires("tunelab") or [] if "extra ==" not in r]
    while todo:
        name = norm(re.split(r"[\s<>=!~;\[(]", todo.pop())[0])
        if name in machine or name in found or name in SKIPPED:
            continue
        dist = metadata.distribution(name)
        found[name] = dist.version
        todo += [r for r in dist.requires or [] if "extra ==" not in r]
    return found


def download(packages: dict[str, str], into: Path) -> None:
    """``pip download`` of each package's Python 3.12 manylinux x86-64 wheel (no deps)."""
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--python-version", "3.12", "--implementation", "cp", *platforms,
               "-d", str(into), *(f"{k}=={v}" for k, v in sorted(packages.items()))]  # fmt: skip
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)


def write_data(into: Path) -> Path:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from throughput_assets import SEED, instruction_rows

    into.mkdir(parents=True, exist_ok=True)
    path = into / "instructions.jsonl"
    rows = instruction_rows(1000, 1000, SEED)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--with-pyarrow", action="store_true", help="Carry pyarrow too.")
    args = parser.parse_args()
    packages = missing(machine_packages())
    overrides = (*OVERRIDES, "pyarrow") if args.with_pyarrow else OVERRIDES
    packages |= {norm(n): metadata.version(n) for n in overrides}
    wheels = CARRY / "wheels"
    shutil.rmtree(wheels, ignore_errors=True)  # .gpu/wheels is this script's own output
    wheels.mkdir(parents=True)
    download(packages, wheels)
    data = write_data(CARRY / "data")
    print("carried wheels: " + ", ".join(f"{k}=={v}" for k, v in sorted(packages.items())))
    for name, why in SKIPPED.items():
        print(f"not carried: {name} ({why})")
    print(f"{data.relative_to(ROOT)}: {size_mb(data.parent):.1f} MB")
    print(f".gpu: {size_mb(CARRY):.1f} MB (the device tool carries at most 64 MB with the tree)")


if __name__ == "__main__":
    main()
