"""The released SimVP configurations: parameter counts and FLOPs against the published tables.

Published numbers: OpenSTL model zoo (docs/en/model_zoos/video_benchmarks.md and the weather and
traffic tables) and the SimVP / SimVP v2 / TAU papers. Models are built on the meta device, so
nothing large is allocated or run.
"""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import simvp
from data_catalog.presets import load_preset

WEATHER = "weatherbench-t2m-5.625deg"

# (preset, translator, published millions, decimals the table gives)
PUBLISHED_PARAMS = [
    (WEATHER, "gsta", 12.76, 2),
    (WEATHER, "incepu", 14.67, 2),
    (WEATHER, "tau", 12.22, 2),
    ("taxibj", "gsta", 9.96, 2),
    ("taxibj", "incepu", 13.79, 2),
    ("taxibj", "tau", 9.55, 2),
    ("mmnist", "gsta", 46.8, 1),
    pytest.param(
        "mmnist", "incepu", 58.0, 1,
        marks=pytest.mark.xfail(
            strict=True,
            reason="the released architecture has 57,946,113 parameters (57.95M), which the "
            "OpenSTL table lists as 58.0M; plain rounding gives 57.9M. Its FLOPs match the "
            "table (test_flops_match_published), so the table rounded 57.95 up.",
        ),
    ),
]

# Exact counts of this implementation, pinned so that any change to the architecture shows up.
EXACT_PARAMS = {
    (WEATHER, "gsta"): 12_758_305,
    (WEATHER, "incepu"): 14_666_017,
    (WEATHER, "tau"): 12_219_553,
    ("taxibj", "gsta"): 9_961_058,
    ("taxibj", "incepu"): 13_794_914,
    ("taxibj", "tau"): 9_545_442,
    ("mmnist", "gsta"): 46_769_665,
    ("mmnist", "incepu"): 57_946_113,
    ("mmnist", "tau"): 44_656_001,
}

# Published fvcore FLOPs (G, one sample): multiply-accumulates of convs and linears plus norms.
PUBLISHED_GFLOPS = {
    (WEATHER, "gsta"): 7.01,
    (WEATHER, "incepu"): 8.03,
    ("taxibj", "gsta"): 2.62,
    ("taxibj", "incepu"): 3.61,
    ("mmnist", "gsta"): 16.5,
    ("mmnist", "incepu"): 19.4,
}


def meta_model(preset: str, translator: str) -> torch.nn.Module:
    with torch.device("meta"):
        return simvp.SimVP(simvp.SimVPConfig(**load_preset(preset).model, translator=translator))


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("preset,translator,millions,decimals", PUBLISHED_PARAMS)
def test_params_match_published(preset, translator, millions, decimals):
    assert round(n_params(meta_model(preset, translator)) / 1e6, decimals) == millions


def test_mmnist_incepu_params_to_two_decimals():
    # See the xfail above: 57.95M is the count the published 58.0M was rounded from.
    assert round(n_params(meta_model("mmnist", "incepu")) / 1e6, 2) == 57.95


@pytest.mark.parametrize("preset,translator", sorted(EXACT_PARAMS))
def test_exact_param_counts(preset, translator):
    assert n_params(meta_model(preset, translator)) == EXACT_PARAMS[preset, translator]


@pytest.mark.parametrize("preset,translator", sorted(PUBLISHED_GFLOPS))
def test_flops_match_published(preset, translator):
    model = meta_model(preset, translator).eval()
    x = torch.empty(1, *model.config.in_shape, device="meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    gmacs = counter.get_total_flops() / 2e9  # torch counts 2 per multiply-accumulate
    published = PUBLISHED_GFLOPS[preset, translator]
    # torch counts convolutions and matmuls only; fvcore also counts norms (under 1% here).
    assert 0.98 * published < gmacs <= published
