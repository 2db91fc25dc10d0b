"""The installed package data: Hydra configs under `kanpde.conf`, problems under `kanpde.problems`."""

from __future__ import annotations

from importlib import resources

import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from kanpde.run import resolve_width
from kanpde.registry import build_model, build_problem, model_name, options, problem_names
from kanpde.stages import parse_stages

# At least these options; more may be added (e.g. example problems, optimiser recipes).
EXPECTED = {"problem": {"poisson", "poisson_sinsin"}, "model": {"kan", "mlp"}, "optim": {"grid_lbfgs"}}


def group_options(group: str) -> set[str]:
    """Config names of a group, read from the installed package data."""
    folder = resources.files("kanpde.conf").joinpath(group)
    return {p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml")}


def test_config_groups_are_installed():
    """The installed kanpde.conf holds config.yaml and the groups problem/model/optim with the
    expected options; Hydra's config loader sees exactly the installed options."""
    assert resources.files("kanpde.conf").joinpath("config.yaml").is_file()
    for group, names in EXPECTED.items():
        assert group_options(group) >= names, group
    with initialize_config_module(config_module="kanpde.conf", version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        for group in EXPECTED:
            assert set(loader.get_group_options(group)) == group_options(group), group


def test_every_installed_option_builds():
    """Every installed problem, model and optim config builds: keys are constructor options."""
    for name in sorted(group_options("problem")):
        with initialize_config_module(config_module="kanpde.conf", version_base="1.3"):
            cfg = compose(config_name="config", overrides=[f"problem={name}"])
        assert build_problem(OmegaConf.to_container(cfg.problem)).name == name
    for name in sorted(group_options("model")):
        with initialize_config_module(config_module="kanpde.conf", version_base="1.3"):
            cfg = compose(config_name="config", overrides=[f"model={name}"])
        model_cfg = OmegaConf.to_container(cfg.model)
        model_cfg["width"] = resolve_width(model_cfg["width"], 2, 1)  # "in"/"out": a problem's sizes
        assert model_name(build_model(model_cfg)) == model_cfg["name"]
        assert name.split("_")[0] == model_cfg["name"]  # kan, kan_gaam, ... build a KAN
    for name in sorted(group_options("optim")):
        with initialize_config_module(config_module="kanpde.conf", version_base="1.3"):
            cfg = compose(config_name="config", overrides=[f"optim={name}"])
        stages = parse_stages(OmegaConf.to_container(cfg.optim)["stages"])
        assert len(stages) >= 1 and all(s.steps >= 1 for s in stages), name


def test_default_config_composes():
    """The default composition is poisson + kan + grid_lbfgs with the documented values."""
    with initialize_config_module(config_module="kanpde.conf", version_base="1.3"):
        cfg = compose(config_name="config")
    assert "hydra" not in cfg
    plain = OmegaConf.to_container(cfg, resolve=True)
    assert plain["problem"]["name"] == "poisson" and plain["problem"]["n_interior"] == 10_000
    assert plain["model"] == {"name": "kan", "width": ["in", 10, "out"], "grid": 5, "order": 3,
                              "grid_range": [-1.0, 1.0], "noise_scale": 0.1, "base_scale": 1.0,
                              "mult": None, "symbolic": None}
    assert plain["optim"]["name"] == "grid_lbfgs"
    assert [s.grid for s in parse_stages(plain["optim"]["stages"])] == [5, 10, 20]
    assert plain["seed"] == 0 and plain["data_seed"] == 0 and plain["dtype"] == "float64"


@pytest.mark.parametrize("problem", sorted(EXPECTED["problem"]))
@pytest.mark.parametrize("model", sorted(EXPECTED["model"]))
def test_every_option_composes_and_builds(problem, model):
    """Each problem x model composition builds: its keys are exactly constructor options."""
    with initialize_config_module(config_module="kanpde.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"problem={problem}", f"model={model}"])
    prob_cfg = OmegaConf.to_container(cfg.problem)
    model_cfg = OmegaConf.to_container(cfg.model)
    prob = build_problem(prob_cfg)
    model_cfg["width"] = resolve_width(model_cfg["width"], prob.in_dim, prob.out_dim)
    net = build_model(model_cfg)
    assert prob.name == problem and type(net).__name__ == model.upper()
    assert set(prob_cfg) - {"name"} == set(options(type(prob)))
    assert set(model_cfg) - {"name"} == set(options(type(net)))
    assert net.config.width[0] == prob.in_dim and net.config.width[-1] == prob.out_dim


def test_problems_package_is_installed():
    """The problems folder is importable as kanpde.problems and registers its problems."""
    import kanpde.problems

    assert resources.files(kanpde.problems).joinpath("poisson.py").is_file()
    assert set(problem_names()) >= EXPECTED["problem"]


def test_plain_install_runs_from_another_directory(tmp_path):
    """`pip install .` (not editable) ships the configs and problems: the CLI composes and runs
    from an unrelated directory with only the installed copy on the path."""
    import importlib.util
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    src = tmp_path / "src"
    shutil.copytree(repo, src, ignore=shutil.ignore_patterns(".git", ".venv", "results", "build", "*.egg-info", "__pycache__"))
    site = tmp_path / "site"
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(src)]
    if importlib.util.find_spec("setuptools") is not None:
        cmd.insert(4, "--no-build-isolation")
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    assert (site / "kanpde" / "conf" / "problem" / "poisson.yaml").is_file()
    assert (site / "kanpde" / "conf" / "hydra" / "launcher" / "slurm.yaml").is_file()
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "PYTHONUNBUFFERED": "1"}
    probe = subprocess.run(
        [sys.executable, "-c", "import kanpde, kanpde.problems.poisson; print(kanpde.__file__)"],
        cwd=work, env=env, capture_output=True, text=True, timeout=120, check=True,
    )
    assert probe.stdout.strip().startswith(str(site))
    out = subprocess.run(
        [sys.executable, "-m", "kanpde", "problem=poisson_sinsin", "model.grid=7", "--cfg", "job"],
        cwd=work, env=env, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "name: poisson_sinsin" in out.stdout and "grid: 7" in out.stdout
