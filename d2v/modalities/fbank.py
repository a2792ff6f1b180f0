"""Log-mel filterbank features for speech, an option beside the wav2vec 2.0 waveform CNN
(`pretrain.speech.frontend: fbank`): 80 mel bands of 25 ms windows every 10 ms, stacked two at a
time to 50 Hz, the CNN's frame rate (MelHuBERT, Fast-HuBERT). No learned parameters here.

Dimensions: B batch, S waveform samples, F 10 ms frames, T = F // stack output frames,
M mel bands.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor, nn

from d2v.kept import KeptPerTensor

WINDOW = 400  # 25 ms at 16 kHz
HOP = 160  # 10 ms
N_FFT = WINDOW  # one 25 ms frame per FFT (201 bins)


def _hz_to_mel(f: Tensor) -> Tensor:
    return 2595.0 * torch.log10(1.0 + f / 700.0)  # HTK


def mel_matrix(n_mels: int, sample_rate: int, n_fft: int = N_FFT, f_min: float = 20.0) -> Tensor:
    """(n_fft // 2 + 1, n_mels) triangular HTK-mel filters over the FFT bins (Kaldi / torchaudio
    style), each peaking at 1."""
    f_max = sample_rate / 2
    mels = torch.linspace(
        _hz_to_mel(torch.tensor(f_min)), _hz_to_mel(torch.tensor(f_max)), n_mels + 2
    )
    hz = 700.0 * (10 ** (mels / 2595.0) - 1.0)  # band edges
    bins = torch.linspace(0, f_max, n_fft // 2 + 1)[:, None]  # (n_freq, 1)
    lo, mid, hi = hz[:-2][None], hz[1:-1][None], hz[2:][None]
    up = (bins - lo) / (mid - lo)
    down = (hi - bins) / (hi - mid)
    return torch.clamp(torch.minimum(up, down), min=0.0)


def fbank_frames(samples: Tensor, stack: int) -> Tensor:
    """Output frames for `samples` valid samples (any shape): 10 ms frames of 25 ms windows
    without padding, then `stack` of them per output frame."""
    n = torch.div(samples.long() - WINDOW, HOP, rounding_mode="floor") + 1
    return torch.div(n.clamp(min=0), stack, rounding_mode="floor")


class LogMelStack(nn.Module):
    """waveform (B, S) -> log-mel features (B, T, stack * n_mels).

    The features of a waveform tensor are kept as long as the tensor lives: a second call on the
    very same tensor, unmodified since, returns them instead of computing them again. In a
    pretraining step the student and the EMA teacher, which shares this module, read the same
    batch; fine-tuning hands the same length buckets back every epoch (`speech._Pass`)."""

    def __init__(self, n_mels: int, stack: int, sample_rate: int = 16000):
        super().__init__()
        self.n_mels, self.stack = n_mels, stack
        self.out_dim = n_mels * stack
        self.register_buffer("window", torch.hann_window(WINDOW), persistent=False)
        self.register_buffer("mel", mel_matrix(n_mels, sample_rate), persistent=False)
        self._kept = KeptPerTensor()

    def frame_lengths(self, samples: Tensor) -> Tensor:
        return fbank_frames(samples, self.stack)

    def forward(self, wave: Tensor) -> Tensor:
        """wave: (B, S) -> (B, T, stack * M); zero padding gives log(eps) frames at the end."""
        compute = partial(log_mel_stack, wave, self.window, self.mel, self.stack)
        if wave.requires_grad:  # features with a graph behind them are not kept
            return compute()
        return self._kept.get(wave, compute)


def log_mel_stack(wave: Tensor, window: Tensor, mel: Tensor, stack: int) -> Tensor:
    """wave: (B, S) -> (B, T, stack * M) log-mel features of `mel`'s M bands."""
    with torch.autocast(wave.device.type, enabled=False):  # log of small powers: fp32
        spec = torch.stft(
            wave.float(),
            N_FFT,
            HOP,
            WINDOW,
            window,
            center=False,
            return_complex=True,
        )  # (B, n_freq, F)
        power = spec.real.square() + spec.imag.square()
        logmel = torch.log(power.transpose(1, 2) @ mel + 1e-6)  # (B, F, M)
    B, F, M = logmel.shape
    T = F // stack
    return logmel[:, : T * stack].reshape(B, T, stack * M)
