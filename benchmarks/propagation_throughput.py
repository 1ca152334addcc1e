"""Propagation throughput: the harness's batched path vs a per-pair DIFT-style recipe.

Batched (harness.propagate, fast mode): reference features computed once; targets featurized in
batches; cosine at feature resolution; only the K similarity maps are upsampled.
Per-pair (DIFT's demo recipe): for every target, the reference AND the target are featurized
(one pair at a time), both feature maps are upsampled to the image size, and cosine is taken per
pixel. Same featurizer and images for both; prints images/s and the ratio.

What bounds the ratio: with F the featurizer's time per image and U the time to upsample two
D-channel feature maps to S x S and take the per-pixel cosine, a pair costs about 2F + U and a
batched target F / b (b: the featurizer's own gain from batching, about 1 on CPU) plus a little.
So the ratio is about 2b + U b / F: 2 (the reference is featurized once, not per target) times
the batching gain, plus the upsampling saved. When the featurizer dominates (Stable Diffusion) it
stays near 2b; it grows large only where the full-resolution upsampling costs more than the
features themselves (cheap features, many channels, large S).

    python benchmarks/propagation_throughput.py [--featurizer spin] [--n 128] [--size 128]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from harness.keypoints.featurizers import create_featurizer
from harness.keypoints.propagate import exact_reference_vectors, match_exact, match_fast, reference_vectors


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--featurizer", default="spin")
    ap.add_argument("--n", type=int, default=128, help="target images")
    ap.add_argument("--k", type=int, default=4, help="keypoints")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                    help="extra featurizer option, e.g. model=tiny-random-sd, ensemble=2")
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds of each path (medians reported)")
    ap.add_argument("--no-record", action="store_true", help="print only; do not append to RESULTS.md")
    args = ap.parse_args()
    torch.manual_seed(0)
    extra = {k: (int(v) if v.isdigit() else v) for k, v in (o.split("=", 1) for o in args.option)}
    feat = create_featurizer(args.featurizer, size=args.size, **extra)
    images = torch.rand(args.n, 3, args.size, args.size)
    ref = torch.rand(1, 3, args.size, args.size)
    pts = torch.rand(args.k, 2) * args.size
    feat(ref)  # load weights / warm up outside the timings

    def run_batched():
        ref_vec = reference_vectors(feat(ref)[0], pts, feat.stride)
        return torch.cat([match_fast(ref_vec, feat(images[i : i + args.batch_size]), feat.stride)[0]
                          for i in range(0, args.n, args.batch_size)])

    def run_per_pair():
        out = []
        for i in range(args.n):
            ref_feats = feat(ref)[0]  # DIFT re-encodes the reference for every pair
            vec = exact_reference_vectors(ref_feats, pts, feat.stride)
            out.append(match_exact(vec, feat(images[i : i + 1]), feat.stride)[0])
        return torch.cat(out)

    def timed(fn):
        t0 = time.perf_counter()
        out = fn()
        return time.perf_counter() - t0, out

    # rounds alternate which path goes first, so a burst of other load hits both; medians are reported
    t_b, t_p = [], []
    for r in range(args.rounds):
        order = [(t_b, run_batched), (t_p, run_per_pair)]
        for times, fn in (order if r % 2 == 0 else order[::-1]):
            dt, out = timed(fn)
            times.append(dt)
            if fn is run_batched:
                a = out
            else:
                b = out
    tb, tp = statistics.median(t_b), statistics.median(t_p)
    ratios = sorted(p / q for p, q in zip(t_p, t_b))
    agree = float(((a - b).abs() <= feat.stride).all(-1).float().mean())
    print(f"featurizer {args.featurizer} (size {args.size}, stride {feat.stride}), {args.n} targets, K={args.k}, "
          f"threads {torch.get_num_threads()}, {args.rounds} rounds")
    print(f"batched  : {args.n / tb:8.1f} images/s (median)")
    print(f"per-pair : {args.n / tp:8.1f} images/s (median)")
    print(f"ratio    : {tp / tb:8.1f}x   (per round {', '.join(f'{x:.1f}' for x in ratios)}; points within one "
          f"cell of each other: {100 * agree:.0f}%)")
    if args.no_record:
        return
    from _common import record

    opts = "".join(f", {o}" for o in args.option)
    record("propagation throughput",
           f"{args.featurizer} size {args.size}{opts}, {args.n} targets, K={args.k}, median of {args.rounds} rounds: "
           f"batched {args.n / tb:.1f} img/s, per-pair DIFT-style {args.n / tp:.1f} img/s, ratio {tp / tb:.1f}x "
           f"(rounds {ratios[0]:.1f}-{ratios[-1]:.1f}x)", ">= 10x")


if __name__ == "__main__":
    main()
