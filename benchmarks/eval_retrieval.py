"""P3: retrieval evaluation (top-1, top-5, mAP) time and peak memory.

Cases, each in its own process so peak RSS is its own:
  dense-10k : the obvious implementation, a full 10k x 10k cosine matrix, argmax/topk, full argsort for AP
  chunk-10k : harness.evaluate.retrieval_metrics on the same data
  chunk-50k : 50,000 queries x 50,000 gallery x 384-d
Targets: chunked >= 5x faster than dense at 10k; 50k within 2 GB peak RAM.
Usage: python benchmarks/eval_retrieval.py [--skip-50k]
"""
from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

DIM = 384
PER_ID = 10


def data(n: int, seed: int):
    import torch

    ids = n // PER_ID
    centres = torch.randn(ids, DIM, generator=torch.Generator().manual_seed(12345))  # shared identities
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % ids
    emb = centres[labels] + 2.5 * torch.randn(n, DIM, generator=gen)
    return emb, labels


def dense(q, ql, g, gl):
    import torch
    import torch.nn.functional as F

    sim = F.normalize(q, dim=1) @ F.normalize(g, dim=1).T
    top1 = (gl[sim.argmax(1)] == ql).float().mean().item()
    top5 = (gl[sim.topk(5, dim=1).indices] == ql[:, None]).any(1).float().mean().item()
    order = sim.argsort(dim=1, descending=True)
    rel = (gl[order] == ql[:, None]).float()
    prec = rel.cumsum(1) / torch.arange(1, rel.shape[1] + 1)
    ap = ((prec * rel).sum(1) / rel.sum(1).clamp(min=1)).mean().item()
    return {"top1": 100 * top1, "top5": 100 * top5, "mAP": 100 * ap}


def child(case: str) -> None:
    n = 10_000 if case.endswith("10k") else 50_000
    q, ql = data(n, 0)
    g, gl = data(n, 1)
    t0 = time.perf_counter()
    if case.startswith("dense"):
        m = dense(q, ql, g, gl)
    else:
        from harness.evaluation.retrieval import retrieval_metrics

        m = retrieval_metrics(q, ql, g, gl)
    dt = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"case": case, "seconds": dt, "peak_mb": peak_mb, **{k: m[k] for k in ("top1", "top5", "mAP")}}))


def main() -> None:
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    from _common import record

    cases = ["dense-10k", "chunk-10k"] + ([] if "--skip-50k" in sys.argv else ["chunk-50k"])
    out = {}
    for case in cases:
        res = subprocess.run([sys.executable, __file__, "--child", case], capture_output=True, text=True, check=True)
        out[case] = json.loads(res.stdout.strip().splitlines()[-1])
        print(out[case])
    d, c = out["dense-10k"], out["chunk-10k"]
    agree = all(abs(d[k] - c[k]) < 1e-3 for k in ("top1", "top5", "mAP"))
    figures = (f"10k: dense {d['seconds']:.2f} s / {d['peak_mb']:.0f} MB, chunked {c['seconds']:.2f} s / "
               f"{c['peak_mb']:.0f} MB, speed-up {d['seconds'] / c['seconds']:.1f}x, metrics agree: {agree}")
    if "chunk-50k" in out:
        b = out["chunk-50k"]
        figures += f"; 50k: {b['seconds']:.1f} s, peak {b['peak_mb']:.0f} MB"
    record("P3 retrieval eval", figures, ">= 5x at 10k; 50k <= 2048 MB")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(sys.argv[2])
    else:
        main()
