"""Behaviour of the SimVP model on tiny configurations (fast on CPU)."""

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F

import simvp
from data_catalog import CatalogError
from data_catalog.presets import load_preset, preset_names
from simvp import SimVPConfig
from simvp.translators import differential_divergence_loss, drop_path_schedule

TRANSLATORS = sorted(simvp.TRANSLATORS)
TINY = dict(in_shape=(4, 2, 16, 16), hid_S=8, hid_T=16, N_S=2, N_T=2, drop_path=0.0)


def tiny(translator: str, **overrides) -> simvp.SimVP:
    torch.manual_seed(0)
    return simvp.SimVP(**{**TINY, "translator": translator, **overrides})


def test_public_api():
    assert set(preset_names()) == {"weatherbench-t2m-5.625deg", "taxibj", "mmnist"}
    assert set(simvp.TRANSLATORS) == {"gsta", "incepu", "tau"}
    assert set(simvp.__all__) == {"SimVP", "SimVPConfig", "TRANSLATORS", "differential_divergence_loss"}
    with torch.device("meta"):
        model = simvp.SimVP(SimVPConfig(**{**load_preset("taxibj").model, "translator": "tau", "hid_T": 128}))
    assert isinstance(model, simvp.SimVP) and isinstance(model.config, SimVPConfig)
    assert model.config.translator == "tau" and model.config.hid_T == 128
    with pytest.raises(CatalogError, match=r"no preset named 'nope' \(known: mmnist, taxibj, weatherbench"):
        load_preset("nope")
    with pytest.raises(ValueError, match="unknown translator"):
        simvp.SimVP(in_shape=(4, 1, 8, 8), translator="nope")
    with pytest.raises(ValueError, match="unknown translator"):
        SimVPConfig(in_shape=(4, 1, 8, 8), translator="nope")


@pytest.mark.parametrize("name", preset_names())
@pytest.mark.parametrize("translator", TRANSLATORS)
def test_every_preset_builds_with_every_translator(name, translator):
    preset = load_preset(name)
    assert preset.name == name and preset.description
    config = SimVPConfig(**preset.model, translator=translator)
    assert config.in_shape == tuple(preset.model["in_shape"])
    with torch.device("meta"):
        model = simvp.SimVP(config)
    assert model.config == config and sum(p.numel() for p in model.parameters()) > 0
    if preset.training:  # a recipe is a valid training config
        from simvp.trainer import TrainConfig
        assert TrainConfig(**preset.training).epochs == preset.training["epochs"]


def test_a_malformed_preset_file_is_named(tmp_path, monkeypatch):
    from data_catalog import presets
    monkeypatch.setattr(presets, "PRESETS_DIR", tmp_path)
    (tmp_path / "bad.yaml").write_text("description: no model here\nsize: 3\n")
    (tmp_path / "broken.yaml").write_text("model: [unclosed\n")
    with pytest.raises(CatalogError, match=r"bad\.yaml: field model: Field required"):
        load_preset("bad")
    with pytest.raises(CatalogError, match=r"broken\.yaml: not a valid preset file"):
        load_preset("broken")


def test_config_is_plain_data_and_keyword_fields_still_work():
    config = SimVPConfig(in_shape=[4, 2, 16, 16], hid_S=8, translator="TAU", residual=True, residual_lag=4)
    assert config.in_shape == (4, 2, 16, 16) and config.translator == "tau" and config.out_frames is None
    data = config.to_dict()
    assert data["in_shape"] == [4, 2, 16, 16] and data["out_frames"] == 4
    assert json.loads(json.dumps(data)) == data
    assert SimVPConfig.from_dict(data) == dataclasses.replace(config, out_frames=4)
    assert simvp.SimVP(**TINY).config == simvp.SimVP(SimVPConfig(**TINY)).config == SimVPConfig(**TINY)
    assert simvp.SimVP(SimVPConfig(**TINY), hid_T=32).config.hid_T == 32  # keyword fields override
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.hid_S = 16
    with pytest.raises(ValueError, match="in_shape"):
        SimVPConfig(in_shape=(4, 2, 16))


@pytest.mark.parametrize("translator", TRANSLATORS)
def test_config_rebuilds_the_same_model(translator):
    model = tiny(translator, out_frames=6)
    config = model.config.to_dict()
    assert all(v is None or isinstance(v, (int, float, str, list)) for v in config.values())  # plain data
    rebuilt = simvp.SimVP(SimVPConfig.from_dict(config))
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


class TrueFeatures:
    """features(k0, k1) for a 2-channel model whose second channel is a known input: the lead step
    number, constant over the grid. Records the calls."""

    def __init__(self, batch: int = 2):
        self.batch, self.calls = batch, []

    def __call__(self, k0: int, k1: int) -> torch.Tensor:
        self.calls.append((k0, k1))
        lead = torch.arange(k0, k1, dtype=torch.float32) + 100.0
        return lead[None, :, None, None, None].expand(self.batch, -1, 1, 16, 16)


@pytest.mark.parametrize("out_frames", [4, 3])
def test_rollout_replaces_the_predicted_features_and_returns_the_data_channels(out_frames):
    model = tiny("gsta", out_frames=out_frames).eval()  # C = 2: one data channel, one feature
    x = torch.randn(2, 4, 2, 16, 16)
    features = TrueFeatures()
    with torch.no_grad():
        long = model.rollout(x, 10, features=features)
        assert long.shape == (2, 10, 1, 16, 16)  # steps not a multiple of out_frames, data only
        steps = [(k, k + out_frames) for k in range(0, 10, out_frames)]
        assert features.calls == steps
        # by hand: the model's data channel with the true features fed back
        context, expected = x, []
        for k0, k1 in steps:
            y = model(context[:, -4:])
            y = torch.cat([y[:, :, :1], TrueFeatures()(k0, k1)], dim=2)
            expected.append(y[:, :, :1])
            context = torch.cat([context, y], dim=1)
        torch.testing.assert_close(long, torch.cat(expected, dim=1)[:, :10])
        plain = model.rollout(x, 10)  # without features: all channels, predicted ones fed back
        assert plain.shape == (2, 10, 2, 16, 16)
        torch.testing.assert_close(plain[:, :out_frames, :1], long[:, :out_frames])
        assert not torch.allclose(plain[:, out_frames:, :1], long[:, out_frames:])
    with pytest.raises(ValueError, match="features"):
        model.rollout(x, 5, features=lambda k0, k1: torch.zeros(2, k1 - k0, 2, 16, 16))


def test_rollout_keeps_gradients_unless_the_caller_turns_them_off():
    model = tiny("gsta", out_frames=3)
    x = torch.randn(1, 4, 2, 16, 16)
    assert model.rollout(x, 5).requires_grad
    with torch.no_grad():
        assert not model.rollout(x, 5).requires_grad


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
