"""python -m bench.wheelhouse: which wheels a node that has its own torch gets (the download
itself needs the package index, which tests do not reach)."""

from bench.wheelhouse import CONSTRAINTS, leave_out, platform_tags, requirements, wanted


def test_the_node_gets_the_pinned_set_less_torch_and_what_it_brings():
    pins = wanted("3.12", full_mlflow=False)
    assert {"torch", "torchvision", "triton", "sympy", "nvidia-cublas"}.isdisjoint(pins)
    assert {"mlflow-skinny", "sqlalchemy", "alembic", "optuna", "hydra-core"} <= set(pins)
    assert {"pytest", "safetensors", "psycopg-binary"} <= set(pins)
    assert "mlflow" not in pins and "flask" not in pins and "ruff" not in pins
    lines = CONSTRAINTS.read_text().splitlines()
    constraints = dict(line.split("==") for line in lines if "==" in line)
    assert all(constraints[name] == version for name, version in pins.items())
    full = wanted("3.12", full_mlflow=True)
    assert {"mlflow", "flask", "mlflow-skinny"} <= set(full)


def test_a_manylinux_target_takes_the_wheels_of_every_older_glibc():
    tags = platform_tags("manylinux_2_28_x86_64")
    assert tags[0] == "manylinux_2_28_x86_64" and "manylinux_2_17_x86_64" in tags
    assert {"manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"} <= set(tags)
    assert "manylinux_2_29_x86_64" not in tags
    assert platform_tags("win_amd64") == ["win_amd64"]


def test_what_the_node_has_is_left_out_by_its_normalized_name():
    pins = wanted("3.12", full_mlflow=False)
    kept, gone = leave_out(pins, ["Pandas", "PyYAML", "python_dateutil", "not-needed-here"])
    assert gone == ["pandas", "python-dateutil", "pyyaml"]
    assert set(kept) == set(pins) - set(gone) and "optuna" in kept


def test_the_node_installs_ranges_with_mlflow_skinny_in_place_of_mlflow():
    needs = {
        r.split("<")[0].split(">")[0].split("!")[0].split("[")[0]: r for r in requirements(False)
    }
    assert needs["torch"] == "torch>=2.11"  # checked against the node's, never installed
    assert "mlflow" not in needs and needs["mlflow-skinny"].startswith("mlflow-skinny")
    assert {"sqlalchemy", "alembic", "pytest", "optuna"} <= set(needs)
    assert "mlflow" in {r.split(">")[0].split("<")[0] for r in requirements(True)}
