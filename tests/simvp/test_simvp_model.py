"""Behaviour of the SimVP model on tiny configurations (fast on CPU)."""

import pytest
import torch
import torch.nn.functional as F

import simvp
from simvp.translators import differential_divergence_loss, drop_path_schedule

TRANSLATORS = sorted(simvp.TRANSLATORS)
TINY = dict(in_shape=(4, 2, 16, 16), hid_S=8, hid_T=16, N_S=2, N_T=2, drop_path=0.0)


def tiny(translator: str, **overrides) -> simvp.SimVP:
    torch.manual_seed(0)
    return simvp.SimVP(**{**TINY, "translator": translator, **overrides})


def test_public_api():
    assert set(simvp.PRESETS) == {"weatherbench-t2m-5.625deg", "taxibj", "mmnist"}
    assert set(simvp.TRANSLATORS) == {"gsta", "incepu", "tau"}
    with torch.device("meta"):
        model = simvp.build("taxibj", translator="tau", hid_T=128)
    assert isinstance(model, simvp.SimVP)
    assert model.config["translator"] == "tau" and model.config["hid_T"] == 128
    with pytest.raises(KeyError, match="unknown preset"):
        simvp.build("nope")
    with pytest.raises(ValueError, match="unknown translator"):
        simvp.SimVP(in_shape=(4, 1, 8, 8), translator="nope")


@pytest.mark.parametrize("translator", TRANSLATORS)
def test_config_rebuilds_the_same_model(translator):
    model = tiny(translator, out_frames=6)
    config = model.config
    assert all(v is None or isinstance(v, (int, float, str, list)) for v in config.values())  # plain data
    rebuilt = simvp.SimVP(**config)
    rebuilt.load_state_dict(model.state_dict())  # strict: same parameters and buffers
    x = torch.randn(2, 4, 2, 16, 16)
    model.eval()
    rebuilt.eval()
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x))


@pytest.mark.parametrize("translator", TRANSLATORS)
@pytest.mark.parametrize(
    "n_s,height,width", [(2, 16, 16), (2, 33, 49), (4, 14, 8), (4, 13, 21), (3, 17, 9)]
)
def test_output_shape_any_grid(translator, n_s, height, width):
    model = tiny(translator, N_S=n_s).eval()
    x = torch.randn(2, 4, 2, height, width)
    with torch.no_grad():
        assert model(x).shape == (2, 4, 2, height, width)


@pytest.mark.parametrize("translator", TRANSLATORS)
@pytest.mark.parametrize("out_frames", [1, 7])
def test_temporal_projection(translator, out_frames):
    model = tiny(translator, out_frames=out_frames).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 4, 2, 15, 16)).shape == (2, out_frames, 2, 15, 16)


def test_wrong_input_is_rejected():
    model = tiny("gsta")
    with pytest.raises(ValueError, match=r"expected input \(B, 4, 2, H, W\)"):
        model(torch.randn(1, 3, 2, 16, 16))


@pytest.mark.parametrize("out_frames", [4, 3, 6])
def test_rollout_feeds_outputs_back(out_frames):
    model = tiny("gsta", out_frames=out_frames).eval()
    x = torch.randn(2, 4, 2, 16, 16)
    with torch.no_grad():
        long = model.rollout(x, 10)
        assert long.shape == (2, 10, 2, 16, 16)
        first = model(x)
        torch.testing.assert_close(long[:, :out_frames], first)
        context = torch.cat([x, first], dim=1)[:, -4:]
        second = model(context)[:, : 10 - out_frames]
        torch.testing.assert_close(long[:, out_frames : 2 * out_frames], second)


def test_rollout_matches_released_scheme_when_out_equals_in():
    model = tiny("incepu").eval()
    x = torch.randn(1, 4, 2, 16, 16)
    with torch.no_grad():
        step1 = model(x)
        step2 = model(step1)
        step3 = model(step2)
        expected = torch.cat([step1, step2, step3[:, :2]], dim=1)
        torch.testing.assert_close(model.rollout(x, 10), expected)


@pytest.mark.parametrize("translator", TRANSLATORS)
def test_gradients_reach_every_parameter(translator):
    model = tiny(translator, out_frames=5).train()
    x = torch.randn(2, 4, 2, 15, 17)
    model(x).square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("translator", TRANSLATORS)
def test_overfits_one_batch(translator):
    model = tiny(translator).train()
    x = torch.randn(4, 4, 2, 16, 16)
    target = torch.roll(x, shifts=1, dims=-1)  # a learnable motion: shift right by one pixel
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(100):
        loss = F.mse_loss(model(x), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10


@pytest.mark.parametrize("translator", TRANSLATORS)
def test_eval_is_deterministic(translator):
    model = tiny(translator, drop=0.1, drop_path=0.2).eval()
    x = torch.randn(2, 4, 2, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


@pytest.mark.parametrize("translator", TRANSLATORS)
def test_bf16_autocast_close_to_fp32(translator):
    model = tiny(translator).eval()
    x = torch.randn(2, 4, 2, 16, 16)
    with torch.no_grad():
        reference = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x)
    relative = (low.float() - reference).norm() / reference.norm()
    assert relative < 2e-2


def test_drop_path_schedule_is_the_released_one():
    assert drop_path_schedule(0.1, 3) == pytest.approx([0.01, 0.055, 0.1])
    assert drop_path_schedule(0.0, 2) == pytest.approx([0.01, 0.0])


def test_differential_divergence_loss():
    target = torch.randn(2, 5, 1, 8, 8)
    assert differential_divergence_loss(target, target).abs() < 1e-6
    other = differential_divergence_loss(torch.randn_like(target), target)
    assert other > 0
    assert differential_divergence_loss(target[:, :2], target[:, :2]) == 0
    pred = torch.randn_like(target, requires_grad=True)
    differential_divergence_loss(pred, target).backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
