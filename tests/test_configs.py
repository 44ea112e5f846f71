"""Every config file composes and validates; config groups and the variant registry agree."""

import inspect
import re
from importlib.resources import files

import pytest
import yaml
from omegaconf import ListConfig

from bench.config import group_options, load_config, validate
from bench.data.named.sets import NAMED
from bench.data.sources import SYNTHETIC
from bench.errors import BenchError
from bench.networks import NET_NAMES
from bench.run import main
from models import variant_names
from models.nets import NETS

CONF = files("bench.conf")
MODEL_FILES = sorted(p.name for p in (CONF / "model").iterdir() if p.name.endswith(".yaml"))
STUDY_FILES = sorted(p.name for p in (CONF / "study").iterdir() if p.name.endswith(".yaml"))
SHARED = yaml.safe_load((CONF / "model" / "_mlp.yaml").read_text())


def test_every_model_file_is_a_registered_variant_and_every_variant_has_one():
    assert group_options("model") == variant_names()
    assert {f for f in MODEL_FILES if f.startswith("_")} == {"_mlp.yaml"}


@pytest.mark.parametrize("name", group_options("model"))
def test_model_config_composes_with_the_shared_network(name):
    cfg = load_config([f"model={name}"])
    assert cfg.model.name == name
    for key, value in SHARED.items():
        assert cfg.model[key] == value, key  # one source for the sizes every variant compares at
    own = yaml.safe_load((CONF / "model" / f"{name}.yaml").read_text())
    assert "_mlp" in own["defaults"] and not set(SHARED) & set(own), "sizes belong in _mlp.yaml"


@pytest.mark.parametrize("name", [f.removesuffix(".yaml") for f in STUDY_FILES])
def test_study_config_composes_and_validates(name):
    if name.startswith("_"):
        with pytest.raises(BenchError, match=f"unknown study '{name}'"):
            load_config([f"study={name}"])
        return
    cfg = load_config([f"study={name}"])
    assert cfg.study.name == f"{name}-{cfg.data.name}"
    assert cfg.model.name in variant_names()
    variants = cfg.study.space.get("model")
    if isinstance(variants, ListConfig):  # choices of the model group: each one composes too
        for variant in variants:
            assert load_config([f"study={name}", f"model={variant}"]).model.name == variant


GROUPS = [
    ("study", "study"),
    ("model", "model"),
    ("net", "network"),
    ("data", "dataset"),
    ("recipe", "recipe"),
]


def test_every_network_file_is_a_registered_network_or_custom():
    assert group_options("net") == sorted(NET_NAMES)
    assert load_config([]).net.name == "mlp"


@pytest.mark.parametrize("name", sorted(NETS))
def test_every_network_config_names_only_its_class_arguments(name):
    """A built-in net's keys (less `name`), and the model's it takes, are keyword arguments of
    its class."""
    keys = (set(load_config([f"net={name}"]).net) - {"name"}) | {"activation"}
    assert keys <= set(inspect.signature(NETS[name]).parameters), keys


@pytest.mark.parametrize("group,what", GROUPS)
def test_an_unknown_choice_is_one_line_naming_the_choices(group, what, capsys):
    assert main([f"{group}=nosuch"]) == 2
    err = capsys.readouterr().err
    choices = ", ".join(group_options(group))
    assert err == f"error: unknown {what} 'nosuch': choose one of {choices}\n"
    assert "_" not in choices.replace("fashion-mnist", "")  # shared files are not choices


@pytest.mark.parametrize("name", group_options("data"))
def test_data_config_composes_and_is_named_as_its_file(name):
    continuous = ["model.likelihood=gaussian"] if name == "linear" else []
    cfg = load_config([f"data={name}", *continuous])
    assert cfg.data.name == name and cfg.data.binarize in ("dynamic", "static", "none")
    assert name in {"digits", "files", *SYNTHETIC, *NAMED}  # a reader for every data config


@pytest.mark.parametrize("name", group_options("recipe"))
def test_every_recipe_composes_validates_and_states_its_source(name):
    cfg = load_config([f"recipe={name}"])
    validate(cfg)
    assert cfg.recipe_name == name  # logged: bench.reproduce finds the recipe's runs by it
    text = (CONF / "recipe" / f"{name}.yaml").read_text()
    assert re.search(r"\b(19|20)\d\d\b", text.splitlines()[1]), "its source, with the year"
    assert cfg.eval.k >= 200 and cfg.model.n_hidden >= 1
    for variant in variant_names():  # a recipe is a training setup: any variant runs in it
        validate(load_config([f"recipe={name}", f"model={variant}"]))
    assert load_config([f"recipe={name}", "data=digits"]).data.name == "digits"
