"""Each batched product of one fused MNIST-1D MLP step (40-100-100-10, batch 100), timed alone
in the layouts the engine could use; run by hand, never by CI.

    python bench/stacked_products.py [--k 32] [--repeats 200]

The output layer's products (10 columns) are the case :mod:`trainers.stacked_mlp` is built
around: with the weight ``[K, in, out]`` (the hidden layers' layout) its forward product and
its weight gradient run several times slower than the same FLOPs with ``[K, out, in]`` and the
output computed transposed. Prints microseconds and GFLOP/s per product, the matmul peak (a
4096² fp32 ``torch.mm``) measured in the same run, and each as a fraction of it.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from throughput import matmul_peak  # this folder: the same peak as the throughput table


def _seconds(op: Callable[[], object], repeats: int) -> float:
    for _ in range(10):
        op()
    started = time.perf_counter()
    for _ in range(repeats):
        op()
    return (time.perf_counter() - started) / repeats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    k, batch, f, hidden, out = args.k, 100, 40, 100, 10
    x = torch.randn(batch, f).expand(k, batch, f)
    w1, w2 = torch.randn(k, f, hidden), torch.randn(k, hidden, hidden)
    w3 = torch.randn(k, hidden, out)  # [K, in, out]
    w3_t = w3.transpose(1, 2).contiguous()  # [K, out, in]
    h, dh = torch.randn(k, batch, hidden), torch.randn(k, batch, hidden)
    d_out = torch.randn(k, batch, out)
    d_out_t = d_out.transpose(1, 2).contiguous()
    products: list[tuple[str, Callable[[], object], int]] = [
        ("hidden 1 forward", lambda: torch.bmm(x, w1), f * hidden),
        ("hidden 1 weight grad", lambda: torch.bmm(x.transpose(1, 2), dh), f * hidden),
        ("hidden 2 forward", lambda: torch.bmm(h, w2), hidden * hidden),
        ("hidden 2 weight grad", lambda: torch.bmm(h.transpose(1, 2), dh), hidden * hidden),
        ("hidden 2 input grad", lambda: torch.bmm(dh, w2.transpose(1, 2)), hidden * hidden),
        ("output forward [in,out]", lambda: torch.bmm(h, w3), hidden * out),
        ("output forward [out,in]", lambda: torch.bmm(w3_t, h.transpose(1, 2)), hidden * out),
        ("output w-grad [in,out]", lambda: torch.bmm(h.transpose(1, 2), d_out), hidden * out),
        ("output w-grad [out,in]", lambda: torch.bmm(d_out_t, h), hidden * out),
        ("output in-grad [in,out]", lambda: torch.bmm(d_out, w3.transpose(1, 2)), hidden * out),
        ("output in-grad [out,in]", lambda: torch.bmm(d_out_t.mT, w3_t), hidden * out),
    ]
    peak = matmul_peak(torch.device("cpu"))
    print(f"K = {k}, batch {batch}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"matmul peak (fp32 4096^2 torch.mm, best of 5): {peak:.1f} GFLOP/s")
    for name, op, size in products:
        seconds = _seconds(op, args.repeats)
        rate = 2 * k * batch * size / seconds / 1e9
        share = 100 * rate / peak
        print(f"  {name:<26} {1e6 * seconds:8.1f} us {rate:7.1f} GFLOP/s {share:5.1f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
