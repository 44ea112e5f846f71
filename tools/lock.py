"""python tools/lock.py > constraints.txt: the installed distributions vae-bench needs (with its
`dev` extra), each pinned to its installed version; run it in an environment made by
`bash install.sh` after a change of pyproject.toml's ranges."""

from importlib.metadata import version

from packaging.markers import default_environment

from bench.wheelhouse import closure

HEADER = """\
# The exact set CI and the README's install use (bash install.sh: pip install -c constraints.txt).
# pyproject.toml states the ranges the code needs; this pins one tested set inside them.
# Regenerate after an upgrade: python tools/lock.py > constraints.txt"""

if __name__ == "__main__":
    names = closure(["vae-bench[dev]"], default_environment()) - {"vae-bench"}
    print(HEADER)
    print("\n".join(f"{name}=={version(name)}" for name in sorted(names)))
