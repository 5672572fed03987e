"""FEDformer speed and memory: vectorised frequency blocks, linear growth with input length, official code.

``damokit bench fedformer`` (``--quick`` for smaller shapes):

(a) Fourier blocks, forward + backward: damokit's vectorised FEB-f/FEA-f (index gather + one batched complex
    einsum) against the official per-mode loop formulation (one small einsum and one indexed write per kept
    mode, re-implemented here on the same weights). Outputs are checked equal. Ratio = loop / vectorised.
(b) FEDformer-f against the full-attention Transformer as the input length grows (96 .. 3072, ``label_len =
    I/2``, horizon 96): time per forward + backward and the activation memory autograd keeps for backward
    (bytes of the distinct saved storages; deterministic, unlike CPU peak RSS). Ratio = Transformer / FEDformer.
(c) Optional, full mode only: the official implementation side by side at the paper's ETTh1 configuration
    (B=32, D=512, d_ff=2048, 64 modes): training step (forward, backward, Adam as each training loop builds it:
    the official ``torch.optim.Adam``, the engine's fused Adam) and inference batch (medians of interleaved
    calls), with the official weights loaded into ours and the output difference reported.
    Needs a local checkout of github.com/MAZiqing/FEDformer named by ``FEDFORMER_OFFICIAL=/path`` (plus sympy
    importable, e.g. via ``PYTHONPATH``); skipped cleanly otherwise. Nothing of it is part of damokit.

Timings on a shared machine are inflated by load; the ratios, measured in one process, are what to read.
"""

from __future__ import annotations

import contextlib
import io
import os
import statistics
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch
from torch import nn

from damokit.benchmarking import BenchResult, saved_bytes, time_callable
from damokit.engine import build_optimizer
from damokit.forecasting.fedformer import FEDformer, load_official_fedformer
from damokit.forecasting.fourier import FourierBlock, FourierCrossAttention
from damokit.forecasting.transformer import Transformer
from damokit.registry import register_benchmark

OFFICIAL_ENV = "FEDFORMER_OFFICIAL"


class _LoopFourierBlock(nn.Module):
    """The official FEB-f formulation: a Python loop over kept modes, on ``block``'s weights and modes."""

    def __init__(self, block: FourierBlock):
        super().__init__()
        self.block = block

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        B, L, H, E = q.shape
        x_ft = torch.fft.rfft(q.permute(0, 2, 3, 1), dim=-1)
        out_ft = torch.zeros(B, H, E, L // 2 + 1, dtype=torch.cfloat)
        for m, i in enumerate(self.block.index.tolist()):
            out_ft[..., m] = torch.einsum("bhi,hio->bho", x_ft[..., i], self.block.weights1[..., m])
        return torch.fft.irfft(out_ft, n=L).reshape(B, L, -1)


class _LoopFourierCross(nn.Module):
    """The official FEA-f formulation: per-mode gathers and scatters in Python loops."""

    def __init__(self, block: FourierCrossAttention):
        super().__init__()
        self.block = block

    def forward(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        B, L, H, E = q.shape
        blk = self.block
        xq_ft, xk_ft = torch.fft.rfft(q.permute(0, 2, 3, 1), dim=-1), torch.fft.rfft(k.permute(0, 2, 3, 1), dim=-1)
        q_sel = torch.zeros(B, H, E, len(blk.index_q), dtype=torch.cfloat)
        for m, j in enumerate(blk.index_q.tolist()):
            q_sel[..., m] = xq_ft[..., j]
        k_sel = torch.zeros(B, H, E, len(blk.index_kv), dtype=torch.cfloat)
        for m, j in enumerate(blk.index_kv.tolist()):
            k_sel[..., m] = xk_ft[..., j]
        a = torch.einsum("bhex,bhey->bhxy", q_sel, k_sel).tanh()
        y = torch.einsum("bhex,heox->bhox", torch.einsum("bhxy,bhey->bhex", a, k_sel), blk.weights1)
        out_ft = torch.zeros(B, H, E, L // 2 + 1, dtype=torch.cfloat)
        for m, j in enumerate(blk.index_q.tolist()):
            out_ft[..., j] = y[..., m]
        return torch.fft.irfft(out_ft / blk.d_model / blk.d_model, n=L).reshape(B, L, -1)


def _fwd_bwd(fn, inputs):
    def step():
        for t in inputs:
            t.grad = None
        fn(*inputs).sum().backward()

    return step


def _blocks(quick: bool, min_time: float) -> list[dict]:
    B, D, H, M = (4, 128, 8, 64) if quick else (32, 512, 8, 64)
    Lq, Lkv = 144, 96  # ETTh1 decoder (48 + 96) and encoder lengths
    rng = np.random.RandomState(2021)
    feb = FourierBlock(D, H, Lq, M, "random", rng)
    fea = FourierCrossAttention(D, H, Lq, Lkv, M, "random", rng)
    q = torch.randn(B, Lq, H, D // H, requires_grad=True)
    k = torch.randn(B, Lkv, H, D // H, requires_grad=True)
    cases = [
        ("FEB-f (decoder self)", feb, _LoopFourierBlock(feb), (q,)),
        ("FEA-f (cross)", lambda q_, k_: fea(q_, k_), _LoopFourierCross(fea), (q, k)),
    ]
    rows = []
    for name, vec, loop, inputs in cases:
        with torch.no_grad():
            diff = (vec(*inputs) - loop(*inputs)).abs().max().item()
        t_vec = time_callable(_fwd_bwd(vec, inputs), min_time)
        t_loop = time_callable(_fwd_bwd(loop, inputs), min_time)
        rows.append(
            {"part": "a", "case": f"{name} B={B} D={D} M={M}", "baseline_s": t_loop, "candidate_s": t_vec,
             "ratio": t_loop / t_vec, "note": f"loop vs vectorised, max|diff|={diff:.1e}"}
        )  # fmt: skip
    return rows


def _length_sweep(quick: bool, min_time: float) -> list[dict]:
    lengths = (96, 192, 384) if quick else (96, 192, 384, 768, 1536, 3072)
    B, D, F = (2, 64, 128) if quick else (2, 128, 256)  # full: the 3072-step Transformer keeps ~4 GB
    horizon, C = 96, 7
    rows = []
    for L in lengths:
        kw = dict(input_size=L, horizon=horizon, enc_in=C, d_model=D, n_heads=8, d_ff=F, dropout=0.05)
        torch.manual_seed(0)
        models = {"transformer": Transformer(**kw), "fedformer": FEDformer(**kw, modes=64)}
        x = torch.randn(B, L, C)
        marks = torch.rand(B, L, 4), torch.rand(B, L // 2 + horizon, 4)
        stats = {}
        for name, model in models.items():
            model.train()

            def call(model=model, x=x, marks=marks):
                return model(x, *marks)

            stats[name] = (time_callable(_fwd_bwd(call, ()), min_time), saved_bytes(call))
        (t_tr, m_tr), (t_fed, m_fed) = stats["transformer"], stats["fedformer"]
        rows.append(
            {"part": "b", "case": f"I={L} B={B} D={D}", "baseline_s": t_tr, "candidate_s": t_fed, "ratio": t_tr / t_fed,
             "note": f"saved MB transformer {m_tr / 2**20:.1f} fedformer {m_fed / 2**20:.1f} "
                     f"(ratio {m_tr / m_fed:.2f})"}
        )  # fmt: skip
    return rows


_PAPER = dict(version="Fourier", mode_select="random", modes=64, moving_avg=[24], L=3, base="legendre",
              cross_activation="tanh", seq_len=96, label_len=48, pred_len=96, output_attention=False, enc_in=7,
              dec_in=7, c_out=7, d_model=512, embed="timeF", dropout=0.05, freq="h", factor=3, n_heads=8,
              d_ff=2048, e_layers=2, d_layers=1, activation="gelu")  # fmt: skip


def _interleaved(fns: dict, repeats: int) -> dict[str, float]:
    """Median seconds per call, calling the candidates in turn so that load drift on a shared machine hits
    all of them alike (these calls take seconds; ``time_callable``'s back-to-back blocks would not)."""
    for fn in fns.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def _official(repeats: int) -> tuple[list[dict], str]:
    root = os.environ.get(OFFICIAL_ENV)
    if not root or not (Path(root) / "models" / "FEDformer.py").is_file():
        return [], f"(c) skipped: set {OFFICIAL_ENV} to a checkout of MAZiqing/FEDformer to compare with it"
    sys.path.insert(0, root)
    try:
        from models.FEDformer import Model  # the official code, outside damokit
    except ImportError as err:
        return [], f"(c) skipped: the official code at {root} does not import ({err})"
    finally:
        sys.path.remove(root)
    np.random.seed(2021)  # noqa: NPY002 -- the official blocks draw their modes from numpy's global RNG
    torch.manual_seed(2021)
    with contextlib.redirect_stdout(io.StringIO()):  # the official constructors print
        official = Model(types.SimpleNamespace(**_PAPER))
    ours = load_official_fedformer(official.state_dict(), _PAPER)
    B = 32
    x, x_mark, y_mark = torch.randn(B, 96, 7), torch.rand(B, 96, 4) - 0.5, torch.rand(B, 144, 4) - 0.5
    x_dec, target = torch.zeros(B, 144, 7), torch.randn(B, 96, 7)
    official.eval()
    with torch.no_grad():
        diff = (official(x, x_mark, x_dec, y_mark) - ours(x, x_mark, y_mark)).abs().max().item()
    calls = {"official": lambda: official(x, x_mark, x_dec, y_mark), "ours": lambda: ours(x, x_mark, y_mark)}
    models = {"official": official, "ours": ours}
    steps = {}
    for name, call in calls.items():
        # each as its training loop builds it: the official exp code's torch.optim.Adam, the engine's fused Adam
        params = models[name].parameters()
        opt = build_optimizer("adam", params, lr=1e-4) if name == "ours" else torch.optim.Adam(params, lr=1e-4)

        def train_step(call=call, opt=opt):
            opt.zero_grad()
            ((call() - target) ** 2).mean().backward()
            opt.step()

        steps[name] = train_step
    for model in models.values():
        model.train()
    train = _interleaved(steps, repeats)
    for model in models.values():
        model.eval()
    with torch.no_grad():
        infer = _interleaved(calls, 2 * repeats)
    times = {name: (train[name], infer[name]) for name in calls}
    rows = [
        {"part": "c", "case": f"paper ETTh1 config, {what}", "baseline_s": times["official"][i],
         "candidate_s": times["ours"][i], "ratio": times["official"][i] / times["ours"][i],
         "note": f"official vs ours, same weights, eval max|diff|={diff:.1e}"}
        for i, what in enumerate(("training step (fwd+bwd+Adam)", "inference batch"))
    ]  # fmt: skip
    return rows, ""


@register_benchmark("fedformer")
def run(quick: bool) -> BenchResult:
    torch.set_num_threads(2)
    min_time = 0.2 if quick else 1.0
    rows = _blocks(quick, min_time) + _length_sweep(quick, min_time)
    notes = ["ratio = baseline / candidate (> 1: the candidate is faster)"]
    if quick:
        notes.append("(c) official side by side: full mode only")
    else:
        official_rows, note = _official(repeats=5)
        rows += official_rows
        if note:
            notes.append(note)
    return BenchResult(
        name="fedformer",
        title="vectorised Fourier blocks; FEDformer vs full attention over input length; official code",
        rows=rows,
        conditions={
            "dtype": "float32",
            "mode": "quick" if quick else "full",
        },
        notes="; ".join(notes),
    )
