"""Our training loop against the paper code's original computation, on one CPU, in one run.

The paper's public code computes the same model in another way. This script rebuilds that
computation (not the code) on the same batch shapes, the figures model of MNIST (18 x 18
capsules, S = 18, time window 13, K = 3, 8 sequences of 3 x 28 x 28 per batch, SGD with
momentum), and times one training step of it against ``topovae``'s own loop:

* **data**, one image at a time, the way a per-sample ``Dataset`` transform does it: every one
  of the 18 frames of a sequence is its own affine warp (``affine_grid`` + ``grid_sample``) of
  the single image, then its own RGB -> HSV -> RGB hue shift; batches of 8 sequences are
  collated from these;
* **networks** as convolutions over the whole image: the first encoder layer is a ``Conv2d``
  with a 28 x 28 kernel, the next ones 1 x 1 convolutions, the decoder ``ConvTranspose2d``
  layers with a 28 x 28 kernel last, a sigmoid and a clamp to [0, 1];
* **two separate encoders** (no shared first layer) and ``torch.distributions`` objects for the
  posterior sample, its KL and the Bernoulli likelihood of the probabilities;
* **the topography** as a 3-D transposed convolution over (time, capsule) with circular padding,
  the banded 13 x 13 kernel of the shifting window;
* the all-pairs equivariance error logged at every step, as the original loop does.

``topovae``'s side is the real ``topovae train`` loop (:func:`topovae.training.loop_timing.
time_training_loop`) on the ``tvae-Lpartial-mnist`` preset (the paper's settings: SGD, lr 1e-4,
momentum 0.9), trained on the 5,000 MNIST training digits of ``--data-dir``.

    python benchmarks/bench_original.py --data-dir ../shared/data/mnist [--steps 100]

prints both times per step, their ratio and the machine, as one JSON object with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from typing import Any

import torch
from torch import nn
from torch.distributions import Bernoulli, Normal, kl_divergence
from torch.nn import functional as F

N_CAPS = CAP_DIM = SEQ_LEN = 18
D = N_CAPS * CAP_DIM
TIME_WINDOW, CAPSULE_WINDOW = 13, 3
BATCH = 8
ANGLES = [20.0 * i for i in range(SEQ_LEN)]
HUES = [math.radians(20.0 * i) - math.pi for i in range(SEQ_LEN)]
SCALES = [0.60, 0.64, 0.68, 0.72, 0.76, 0.79, 0.83, 0.87, 0.91, 0.95, 0.99, 1.03, 1.07, 1.11,
          1.14, 1.18, 1.22, 1.26]


# -- data, one image at a time ----------------------------------------------------------------
def _warp(image: torch.Tensor, angle: float, scale: float) -> torch.Tensor:
    """One frame: rotate and scale one (3, 28, 28) image about its centre."""
    a = math.radians(angle)
    theta = torch.tensor([[math.cos(a) / scale, -math.sin(a) / scale, 0.0],
                          [math.sin(a) / scale, math.cos(a) / scale, 0.0]]).unsqueeze(0)
    grid = F.affine_grid(theta, [1, *image.shape], align_corners=False)
    return F.grid_sample(image.unsqueeze(0), grid, align_corners=False).squeeze(0)


def _shift_hue(image: torch.Tensor, shift: float) -> torch.Tensor:
    """One frame: RGB -> HSV, hue + shift (radians), HSV -> RGB."""
    r, g, b = image[0], image[1], image[2]
    maxc, argmax = image.max(0)
    minc = image.min(0).values
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    h = torch.where(argmax == 0, ((g - b) / safe) % 6,
                    torch.where(argmax == 1, (b - r) / safe + 2, (r - g) / safe + 4))
    h = torch.where(delta > 0, h, torch.zeros_like(h)) / 6.0
    s = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)),
                    torch.zeros_like(maxc))
    h = (h + shift / (2 * math.pi)) % 1.0
    i = torch.floor(h * 6)
    f = h * 6 - i
    p, q, t = maxc * (1 - s), maxc * (1 - s * f), maxc * (1 - s * (1 - f))
    i = i.long() % 6
    choices = [(maxc, t, p), (q, maxc, p), (p, maxc, t), (p, q, maxc), (t, p, maxc),
               (maxc, p, q)]
    out = torch.zeros_like(image)
    for k, (rr, gg, bb) in enumerate(choices):
        mask = i == k
        out[0] = torch.where(mask, rr, out[0])
        out[1] = torch.where(mask, gg, out[1])
        out[2] = torch.where(mask, bb, out[2])
    return out


def _sequence(grey: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One (18, 3, 28, 28) sequence of one digit: one factor varies, frame by frame."""
    image = torch.zeros(3, 28, 28)
    image[0] = grey
    start = int(torch.randint(SEQ_LEN, (1,), generator=generator))
    kind = int(torch.randint(3, (1,), generator=generator))
    fixed = [int(torch.randint(SEQ_LEN, (1,), generator=generator)) for _ in range(3)]
    frames = []
    for k in range(SEQ_LEN):
        step = (start + k) % SEQ_LEN
        angle = ANGLES[step if kind == 0 else fixed[0]]
        scale = SCALES[step if kind == 1 else fixed[1]]
        hue = HUES[step if kind == 2 else fixed[2]]
        frames.append(_shift_hue(_warp(image, angle, scale), hue))
    return torch.stack(frames)


# -- the model, as convolutions ---------------------------------------------------------------
def _encoder() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 3 * D, 28), nn.ReLU(True), nn.Conv2d(3 * D, 2 * D, 1),
                         nn.ReLU(True), nn.Conv2d(2 * D, 2 * D, 1))


def _decoder() -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(D, 2 * D, 1), nn.ReLU(True),
                         nn.ConvTranspose2d(2 * D, 3 * D, 1), nn.ReLU(True),
                         nn.ConvTranspose2d(3 * D, 3, 28), nn.Sigmoid())


class ConvolutionalTVAE(nn.Module):
    """The figures model computed with full-image convolutions and a 3-D transposed convolution."""

    def __init__(self) -> None:
        super().__init__()
        self.z_encoder, self.u_encoder, self.decoder = _encoder(), _encoder(), _decoder()
        kernel = (TIME_WINDOW, TIME_WINDOW, 1)
        self.grouper = nn.ConvTranspose3d(1, 1, kernel, padding=(12, 12, 0), bias=False)
        band = torch.ones(TIME_WINDOW, TIME_WINDOW).triu(-(CAPSULE_WINDOW // 2))
        with torch.no_grad():
            self.grouper.weight.zero_()
            self.grouper.weight[0, 0, :, :, 0] = band * band.t()
        self.grouper.weight.requires_grad_(False)
        self.mu = nn.Parameter(torch.tensor([30.0]))
        self.prior = Normal(0.0, 1.0)

    def _posterior(self, encoder: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        stats = encoder(x)
        q = Normal(stats[:, :D], torch.exp(stats[:, D:] / 2))
        sample = q.rsample()
        return sample, kl_divergence(q, self.prior)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        images = x.view(-1, 3, 28, 28)
        z, kl_z = self._posterior(self.z_encoder, images)
        u, kl_u = self._posterior(self.u_encoder, images)
        u_caps = u.view(-1, SEQ_LEN, N_CAPS, CAP_DIM, 1).permute(0, 2, 1, 3, 4)
        u_caps = u_caps.reshape(-1, 1, SEQ_LEN, CAP_DIM, 1) ** 2
        half = TIME_WINDOW // 2
        v = self.grouper(F.pad(u_caps, (0, 0, half, half, half, half), mode="circular"))
        v = v.view(-1, N_CAPS, SEQ_LEN, CAP_DIM, 1).permute(0, 2, 1, 3, 4).reshape(z.shape)
        s = (z + self.mu) / torch.sqrt(v + 1e-6)
        probs = torch.clamp(self.decoder(s), 0, 1)
        # the original ran on a torch that did not validate arguments (pixels are not 0/1)
        nll = -Bernoulli(probs=probs, validate_args=False).log_prob(images)
        n = images.shape[0]
        loss = nll.sum() / n + (kl_z.sum() + kl_u.sum()) / n
        return loss, s.view(-1, SEQ_LEN, N_CAPS, CAP_DIM)


def _equivariance_error(s: torch.Tensor) -> torch.Tensor:
    s = s / s.norm(dim=-1, keepdim=True)
    total = s.new_zeros(())
    for t in range(1, SEQ_LEN):
        total = total + (s.roll(shifts=(t, t), dims=(1, -1)) - s).abs().sum() / s.shape[0]
    return total / 2


def time_original(digits: torch.Tensor, steps: int, warmup: int, seed: int) -> dict[str, float]:
    """Mean ms per step of the original computation: data, forward, backward, SGD, logging."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = ConvolutionalTVAE()
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.SGD(params, lr=1e-4, momentum=0.9)
    data_ms, total = [], []
    for step in range(warmup + steps):
        started = time.perf_counter()
        picks = torch.randint(len(digits), (BATCH,), generator=generator)
        x = torch.stack([_sequence(digits[int(i)], generator) for i in picks])
        data_ms.append((time.perf_counter() - started) * 1000)
        optimiser.zero_grad()
        loss, s = model(x)
        _equivariance_error(s.detach())
        loss.backward()
        optimiser.step()
        float(loss.detach())
        if step >= warmup:
            total.append((time.perf_counter() - started) * 1000)
    return {"original_step_ms": statistics.fmean(total),
            "original_data_ms": statistics.fmean(data_ms[warmup:])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="folder with the MNIST IDX files")
    parser.add_argument("--steps", type=int, default=100, help="timed steps of each (default 100)")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from topovae.data.sources import build_source
    from topovae.hardware import cpu_model, has_bf16_matrix_units
    from topovae.training.loop_timing import time_training_loop

    source = build_source("mnist", "train-5k", args.data_dir)
    digits = source.images.float()
    digits = digits / 255.0 if digits.max() > 1 else digits
    digits = digits.reshape(len(digits), 28, 28)
    original = time_original(digits, args.steps, args.warmup, seed=0)
    ours = time_training_loop(
        "tvae-Lpartial-mnist", steps=args.steps, warmup=args.warmup,
        overrides={"data.source": "mnist", "data.split": "train-5k", "data.test_split": "test",
                   "data.data_dir": args.data_dir})
    result: dict[str, Any] = {
        **original,
        "topovae_loop_step_ms": ours["loop_step_ms"],
        "speedup": original["original_step_ms"] / ours["loop_step_ms"],
        "steps": args.steps, "machine": cpu_model(),
        "has_bf16_matrix_units": has_bf16_matrix_units(),
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
    }
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:<24} {value:.2f}" if isinstance(value, float) else f"{key:<24} {value}")


if __name__ == "__main__":
    main()
