"""Compare CPU training recipes of the shifting TVAE by what they learn in a fixed number of steps.

Trains the paper's MNIST model (18x18 capsules, S = 18, L = 13, K = 3, MLPs) with Adam on the 4,000
training digits of ``mnist_5k`` and prints, every 250 steps, the training reconstruction and KL of
the last batch, the equivariance ratio on 128 held-out sequences and the roll-prediction NLL
against the no-change control on 64 of them. This is the measurement behind the recipe table of
``docs/results.md``; for example::

    python scripts/recipe_search.py --lr 1e-3 --mu-init 30
    python scripts/recipe_search.py --lr 1e-3 --mu-init 30 --kl-warmup 1000
    python scripts/recipe_search.py --lr 2e-3 --mu-init 30 --kl-warmup 500
    python scripts/recipe_search.py --lr 1e-3 --mu-init 15

(one thread each by default, so that two can run side by side on a 2-core machine).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from topovae.data.loaders import DataConfig, build_data
from topovae.metrics import equivariance_ratio
from topovae.metrics.roll import roll_prediction
from topovae.models.tvae import TVAE, TVAEConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--mu-init", type=float, default=30.0)
    parser.add_argument("--kl-warmup", type=int, default=0, help="steps of linear KL warm-up")
    parser.add_argument("--time-window", type=int, default=13)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=8, help="sequences per batch")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    config = TVAEConfig(coherence="shifting" if args.time_window else "none",
                        time_window=args.time_window, mu_init=args.mu_init)
    model = TVAE(config)
    data = build_data(DataConfig(source="mnist_5k", test_split="heldout",
                                 batch_size=args.batch_size, n_test=256), seed=args.seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=args.lr)
    test = [batch["x"] for batch, _ in zip(data.test, range(16), strict=False)]  # 128 sequences

    def evaluate() -> tuple[float, float, float]:
        model.eval()
        with torch.no_grad():
            codes = torch.cat([model.latent_codes(x) for x in test])
            rolls = [roll_prediction(model, x, n_keep=0) for x in test[:8]]
        model.train()
        return (round(float(equivariance_ratio(codes)), 3),
                round(sum(r.nll for r in rolls) / len(rolls), 1),
                round(sum(r.nll_static for r in rolls) / len(rolls), 1))

    step, epoch, started = 0, 0, time.time()
    print("step, seconds, recon_nll, kl, (ratio, roll_nll, no_change_nll)")
    while step < args.steps:
        data.train.set_epoch(epoch)
        for batch in data.train:
            out = model(batch["x"])
            weight = min(1.0, step / args.kl_warmup) if args.kl_warmup else 1.0
            recon = out.terms["recon_nll"]
            loss = recon + weight * (out.loss - recon)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            step += 1
            if step % 250 == 0 or step == args.steps:
                print((step, round(time.time() - started), round(recon.item(), 1),
                       round(out.terms["kl"].item(), 1), evaluate()), flush=True)
            if step >= args.steps:
                break
        epoch += 1
    print("settings", json.dumps(vars(args)))


if __name__ == "__main__":
    main()
