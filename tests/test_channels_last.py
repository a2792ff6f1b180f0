"""conv_tokens computes the module's own convolution on channels-last tokens: same outputs and
same gradients (input, weight, bias), for the shapes the models use and a few they might."""

import pytest
import torch
from torch import nn

from d2v.channels_last import conv_tokens

CONV1D = [  # (c_in, c_out, kernel, stride, padding, dilation, groups)
    (64, 64, 19, 1, 9, 1, 16),  # data2vec audio's conv positions
    (32, 32, 7, 1, 3, 1, 16),  # the 2.0 audio decoder
    (16, 16, 8, 1, 4, 1, 4),  # an even kernel (wav2vec 2.0's 128)
    (8, 12, 3, 2, 1, 2, 1),  # stride and dilation
]


def _compare(module: nn.Module, x_first: torch.Tensor, channels_dim: int) -> None:
    """x_first: (B, C, *spatial); conv_tokens gets the same values channels-last."""
    x1 = x_first.clone().requires_grad_()
    x2 = x_first.movedim(1, channels_dim).contiguous().requires_grad_()
    expected = module(x1)
    got = conv_tokens(module, x2)
    assert got.shape == expected.movedim(1, channels_dim).shape
    torch.testing.assert_close(got, expected.movedim(1, channels_dim), rtol=1e-4, atol=1e-5)
    grad = torch.randn_like(expected)
    grads1 = torch.autograd.grad(expected, [x1, *module.parameters()], grad)
    grads2 = torch.autograd.grad(got, [x2, *module.parameters()], grad.movedim(1, channels_dim))
    torch.testing.assert_close(grads2[0], grads1[0].movedim(1, channels_dim), rtol=1e-4, atol=1e-4)
    for g1, g2 in zip(grads1[1:], grads2[1:], strict=True):
        torch.testing.assert_close(g2, g1, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape", CONV1D)
def test_conv1d_on_tokens_matches_the_module(shape):
    c_in, c_out, kernel, stride, padding, dilation, groups = shape
    torch.manual_seed(0)
    conv = nn.Conv1d(c_in, c_out, kernel, stride, padding, dilation, groups)
    _compare(conv, torch.randn(3, c_in, 50), channels_dim=-1)


def test_weight_normed_conv_on_tokens_matches_the_module():
    torch.manual_seed(0)
    conv = nn.utils.parametrizations.weight_norm(nn.Conv1d(16, 16, 5, padding=2, groups=4), dim=2)
    _compare(conv, torch.randn(2, 16, 30), channels_dim=-1)


def test_conv2d_on_a_patch_grid_matches_the_module():
    torch.manual_seed(0)
    conv = nn.Conv2d(64, 64, 3, padding=1, groups=16)  # the 2.0 image decoder
    _compare(conv, torch.randn(4, 64, 7, 7), channels_dim=-1)


def test_other_padding_is_refused():
    conv = nn.Conv1d(4, 4, 3, padding="same")
    with pytest.raises(ValueError, match="integer zero padding"):
        conv_tokens(conv, torch.randn(1, 10, 4))
