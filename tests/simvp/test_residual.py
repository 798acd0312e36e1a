"""The residual option: the network's output is added to an observed frame (the last one, or the frame at the
same phase of the last `residual_lag` inputs, e.g. the same hour of the last observed day)."""

import pytest
import torch

import simvp


def _pair(**residual_options):
    torch.manual_seed(0)
    plain = simvp.SimVP(in_shape=(4, 2, 9, 13), hid_S=4, hid_T=8, N_S=2, N_T=2, out_frames=3)
    residual = simvp.SimVP(plain.config, residual=True, **residual_options)
    residual.load_state_dict(plain.state_dict())  # same parameters: the option adds none
    plain.eval(), residual.eval()
    return plain, residual


def test_residual_adds_the_last_input_frame():
    plain, residual = _pair()
    x = torch.randn(2, 4, 2, 9, 13)
    with torch.no_grad():
        torch.testing.assert_close(residual(x), plain(x) + x[:, -1:])
    assert residual.config.residual is True and simvp.SimVP(residual.config).residual
    assert sum(p.numel() for p in residual.parameters()) == sum(p.numel() for p in plain.parameters())


def test_residual_lag_adds_the_frame_that_many_steps_before_each_target():
    plain, residual = _pair(residual_lag=3)
    x = torch.randn(2, 4, 2, 9, 13)
    # inputs are t-3..t and targets t+1..t+3: three steps before them are t-2, t-1, t, i.e. inputs 1, 2, 3
    with torch.no_grad():
        torch.testing.assert_close(residual(x), plain(x) + x[:, 1:4])
    rebuilt = simvp.SimVP(simvp.SimVPConfig.from_dict(residual.config.to_dict()))
    assert rebuilt.config.residual_lag == 3
    assert residual.state_dict().keys() == plain.state_dict().keys()  # the anchor index is not a weight


def test_residual_lag_repeats_the_last_period_for_targets_beyond_it():
    plain, residual = _pair(residual_lag=2)
    x = torch.randn(2, 4, 2, 9, 13)
    # inputs t-3..t, targets t+1..t+3, period 2: t+1 -> t-1, t+2 -> t, t+3 -> t-1 (inputs 2, 3, 2)
    with torch.no_grad():
        torch.testing.assert_close(residual(x), plain(x) + x[:, [2, 3, 2]])


def test_residual_lag_must_point_into_the_input():
    for lag in (0, 5):  # no lag, or longer than the input
        with pytest.raises(ValueError, match="residual_lag"):
            simvp.SimVP(in_shape=(4, 1, 8, 8), hid_S=4, hid_T=8, N_S=2, N_T=2, out_frames=3,
                        residual=True, residual_lag=lag)
    with pytest.raises(ValueError, match="residual is off"):
        simvp.SimVP(in_shape=(4, 1, 8, 8), hid_S=4, hid_T=8, N_S=2, N_T=2, out_frames=3, residual_lag=3)


def test_an_untrained_residual_model_forecasts_its_anchor():
    torch.manual_seed(0)
    model = simvp.SimVP(in_shape=(24, 1, 9, 13), hid_S=4, hid_T=8, N_S=2, N_T=2, out_frames=12,
                        residual=True, residual_lag=24).eval()
    x = torch.randn(3, 24, 1, 9, 13)
    with torch.no_grad():
        torch.testing.assert_close(model(x), x[:, :12])  # the same hours one day earlier
    two_days = simvp.SimVP(model.config, out_frames=48).eval()
    with torch.no_grad():  # 48 h ahead: each target starts from the same hour of the last observed day
        torch.testing.assert_close(two_days(x), torch.cat([x, x], dim=1))
