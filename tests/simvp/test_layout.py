"""channels_last is kept through the model (translator and decoder see it) and changes nothing numerically;
the trend anchor behaves as documented."""

import pytest
import torch

from simvp import SimVP, SimVPConfig


def model(**fields):
    torch.manual_seed(0)
    return SimVP(SimVPConfig(in_shape=(6, 2, 12, 16), hid_S=4, hid_T=8, N_S=2, N_T=2, out_frames=4, **fields)).eval()


def test_channels_last_runs_through_the_model_with_the_same_output():
    plain = model()
    cl = model().to(memory_format=torch.channels_last)
    assert cl.encoder_weight_is_channels_last() and not plain.encoder_weight_is_channels_last()
    seen = {}
    def record(name):
        def hook(module, args):
            seen[name] = args[0]
        return hook

    cl.translator.register_forward_pre_hook(record("translator"))
    cl.decoder.register_forward_pre_hook(record("decoder"))
    x = torch.randn(3, 6, 2, 12, 16)
    with torch.no_grad():
        torch.testing.assert_close(cl(x), plain(x), rtol=1e-5, atol=1e-5)
    for name, t in seen.items():
        assert t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous(), name


def test_channels_last_gradients_match():
    plain, cl = model().train(), model().train().to(memory_format=torch.channels_last)
    x = torch.randn(2, 6, 2, 12, 16)
    plain(x).square().mean().backward()
    cl(x).square().mean().backward()
    for p, q in zip(plain.parameters(), cl.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5)


def test_trend_anchor_starts_as_the_same_hours_a_day_earlier_and_learns_the_change():
    m = SimVP(SimVPConfig(in_shape=(5, 1, 8, 8), hid_S=4, hid_T=8, N_S=2, N_T=2, out_frames=6, residual=True,
                          residual_lag=4, anchor_trend=True))
    x = torch.randn(2, 5, 1, 8, 8)
    with torch.no_grad():
        y = m(x)  # readout starts at zero and the trend weights too: the lagged frames
        torch.testing.assert_close(y, x[:, [1, 2, 3, 4, 1, 2]])
        m.trend_weight.fill_(0.5)
        change = x[:, -1] - x[:, 0]
        torch.testing.assert_close(m(x), x[:, [1, 2, 3, 4, 1, 2]] + 0.5 * change[:, None])
    with pytest.raises(ValueError, match="anchor_trend needs residual_lag"):
        SimVPConfig(in_shape=(4, 1, 8, 8), residual=True, residual_lag=4, anchor_trend=True)
