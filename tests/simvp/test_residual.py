"""The residual option: the network's output is added to the last observed frame."""

import torch

import simvp


def test_residual_adds_the_last_input_frame():
    torch.manual_seed(0)
    plain = simvp.SimVP(in_shape=(4, 2, 9, 13), hid_S=4, hid_T=8, N_S=2, N_T=2, out_frames=3)
    residual = simvp.SimVP(**{**plain.config, "residual": True})
    residual.load_state_dict(plain.state_dict())  # same parameters: the option adds none
    plain.eval(), residual.eval()
    x = torch.randn(2, 4, 2, 9, 13)
    with torch.no_grad():
        torch.testing.assert_close(residual(x), plain(x) + x[:, -1:])
    assert residual.config["residual"] is True and simvp.SimVP(**residual.config).residual
    assert sum(p.numel() for p in residual.parameters()) == sum(p.numel() for p in plain.parameters())
