"""python -m bench.wheelhouse DIR [--python 3.12] [--platform manylinux_2_28_x86_64]

Every wheel vae-bench needs on a node that already has its PyTorch (a GPU node, an NGC or conda
environment), for that node's Python and platform, downloaded here where the package index is
reachable: the exact versions of constraints.txt, less torch, torchvision and what they bring
(the node's own build stays untouched), plus pytest for the GPU check, and vae-bench's own
wheel. A package published only as an sdist (antlr4-python3-runtime, for hydra-core) is built
into a wheel. MLflow comes as mlflow-skinny with SQLAlchemy and Alembic (a worker logs to a
store, it serves no UI), unless --full-mlflow. --node-has NAME... leaves out what the node's
environment already has (pandas, matplotlib on an NGC image): pip on the node then checks its
versions against vae-bench's ranges. Run it in an environment made by install.sh: the
dependency graph is read from what is installed. On the node, offline (pip keeps the node's
torch and every package of it in range, and installs the rest from DIR):

    pip install --no-index --find-links DIR -r DIR/requirements.txt
    pip install --no-index --no-deps DIR/vae_bench-*.whl
"""

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import PackageNotFoundError, distribution, requires
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

from bench.cli import run_parsed
from bench.errors import BenchError

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = ROOT / "constraints.txt"
NODE_HAS = ("torch", "torchvision")  # with everything they require
STORE = ("sqlalchemy", "alembic")  # with mlflow-skinny, instead of mlflow's server and UI
EXTRA = ("pytest",)  # the GPU check runs pytest -m cuda


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(roots: list[str], environment: dict[str, str]) -> set[str]:
    """The installed distributions `roots` require, transitively (markers evaluated for
    `environment`), by normalized name."""
    found: set[str] = set()
    todo = [Requirement(r) for r in roots]
    while todo:
        requirement = todo.pop()
        name = normalized(requirement.name)
        if name in found:
            continue
        try:
            needed = distribution(requirement.name).requires or []
        except PackageNotFoundError:
            continue
        found.add(name)
        extras = ("", *requirement.extras)
        for line in needed:
            child = Requirement(line)
            if child.marker is None or any(
                child.marker.evaluate(environment | {"extra": e}) for e in extras
            ):
                todo.append(child)
    return found


def requirements(full_mlflow: bool) -> list[str]:
    """What the node installs from the wheelhouse, as ranges (the node's own versions stay where
    they fit): vae-bench's requirements, mlflow-skinny with MLflow's ranges for its store (unless
    full_mlflow), and pytest. vae-bench itself then goes in with --no-deps: its metadata names
    the full mlflow."""
    harness = [r for r in requires("vae-bench") or [] if "extra ==" not in r]
    if full_mlflow:
        return [*harness, *EXTRA]
    mlflow = next(Requirement(r) for r in harness if normalized(Requirement(r).name) == "mlflow")
    store = [r for r in requires("mlflow") or [] if normalized(Requirement(r).name) in STORE]
    harness = [r for r in harness if normalized(Requirement(r).name) != "mlflow"]
    return [*harness, f"mlflow-skinny{mlflow.specifier}", *store, *EXTRA]


def wanted(python: str, full_mlflow: bool) -> dict[str, str]:
    """name -> pinned version of every distribution the node needs."""
    pins = dict(line.split("==") for line in _pinned_lines())
    environment = default_environment() | {
        "python_version": python,
        "python_full_version": f"{python}.0",
    }
    names = closure(requirements(full_mlflow), environment) - closure(list(NODE_HAS), environment)
    missing = sorted(names - set(pins))
    if missing:
        raise BenchError(f"not pinned in {CONSTRAINTS.name}: {', '.join(missing)}")
    return {name: pins[name] for name in sorted(names)}


def leave_out(pins: dict[str, str], node_has: list[str]) -> tuple[dict[str, str], list[str]]:
    """The pins less what the node has, and which of them were left out."""
    gone = sorted(set(pins) & {normalized(n) for n in node_has})
    return {name: version for name, version in pins.items() if name not in gone}, gone


def _pinned_lines() -> list[str]:
    if not CONSTRAINTS.exists():
        raise BenchError(f"no {CONSTRAINTS}: run python -m bench.wheelhouse from a checkout")
    lines = CONSTRAINTS.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


LEGACY = {5: "manylinux1", 12: "manylinux2010", 17: "manylinux2014"}


def platform_tags(platform: str) -> list[str]:
    """The tags a node of `platform` installs: manylinux_2_28 takes every older glibc's wheels
    too (pip expands that only for the machine it runs on, not for --platform)."""
    found = re.fullmatch(r"manylinux_2_(\d+)_(\w+)", platform)
    if not found:
        return [platform]
    glibc, arch = int(found[1]), found[2]
    tags = [f"manylinux_2_{minor}_{arch}" for minor in range(glibc, 4, -1)]
    return tags + [f"{LEGACY[m]}_{arch}" for m in sorted(LEGACY, reverse=True) if m <= glibc]


def download(name: str, version: str, out: Path, python: str, platform: str) -> str:
    """The wheel of `name==version` for the target into `out`; from its sdist when it has no
    wheel. Returns how it came ("wheel" or "built")."""
    platforms = [arg for tag in platform_tags(platform) for arg in ("--platform", tag)]
    target = [*platforms, "--python-version", python, "--implementation", "cp"]
    base = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d"]
    spec = f"{name}=={version}"
    got = subprocess.run(
        [*base, str(out), *target, "--only-binary=:all:", spec], capture_output=True, text=True
    )
    if got.returncode == 0:
        return "wheel"
    with tempfile.TemporaryDirectory() as tmp:
        sdist = subprocess.run(
            [*base, tmp, "--no-binary=:all:", spec], capture_output=True, text=True
        )
        built = sdist.returncode == 0 and subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out)]
            + [str(p) for p in Path(tmp).iterdir()],
            capture_output=True,
            text=True,
        )
        if not built or built.returncode != 0:
            reason = (got.stderr.strip().splitlines() or ["no output"])[-1]
            raise BenchError(f"no wheel of {spec} for {platform}, Python {python}: {reason}")
    return "built"


def build(args: argparse.Namespace) -> None:
    out = Path(args.dir)
    out.mkdir(parents=True, exist_ok=True)
    pins, left_out = leave_out(wanted(args.python, args.full_mlflow), args.node_has)
    with ThreadPoolExecutor(max_workers=8) as pool:
        jobs = {
            name: pool.submit(download, name, version, out, args.python, args.platform)
            for name, version in pins.items()
        }
        how = {name: job.result() for name, job in jobs.items()}
    shutil.rmtree(ROOT / "build", ignore_errors=True)  # setuptools would pack stale files
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (out / "requirements.txt").write_text("\n".join(requirements(args.full_mlflow)) + "\n")
    wheels = sorted(out.glob("*.whl"))
    total = sum(w.stat().st_size for w in wheels)
    for wheel in wheels:
        print(f"{wheel.stat().st_size / 2**20:8.2f} MB  {wheel.name}")
    built = [n for n, h in how.items() if h == "built"]
    print(
        f"{len(wheels)} wheels, {total / 2**20:.1f} MB in {out}"
        + (f" (built from sdists: {', '.join(built)})" if built else "")
    )
    if left_out:
        print(f"left out, the node has them: {', '.join(left_out)}")
    print(
        "install on the node, offline:\n"
        f"  pip install --no-index --find-links {out} -r {out}/requirements.txt\n"
        f"  pip install --no-index --no-deps {out}/vae_bench-*.whl"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.wheelhouse", description=__doc__.splitlines()[2]
    )
    parser.add_argument("dir", help="where the wheels go")
    parser.add_argument("--python", default="3.12", help="the node's Python, e.g. 3.12")
    parser.add_argument("--platform", default="manylinux_2_28_x86_64")
    parser.add_argument("--full-mlflow", action="store_true", help="mlflow with its server and UI")
    parser.add_argument(
        "--node-has", nargs="*", default=[], metavar="NAME", help="distributions left out"
    )
    return run_parsed(parser, argv, build)


if __name__ == "__main__":
    raise SystemExit(main())
