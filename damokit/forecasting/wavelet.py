"""FEDformer's multiwavelet frequency blocks: FEB-w (self-attention) and FEA-w (cross-attention).

Paper: Zhou et al., FEDformer, arXiv 2201.12740, Sec. 3.2-3.3 (Fig. 3-4). Official code:
github.com/MAZiqing/FEDformer, ``layers/MultiWaveletCorrelation.py`` and ``layers/utils.py``.

Multiwavelet (Alpert-type) two-scale filters of polynomial order ``k`` on [0, 1], for a Legendre or a
Chebyshev scaling basis, are computed with numpy the way the official code does with sympy: scaling functions
as polynomial coefficient tables (exact integer coefficients), wavelets by Gram-Schmidt against them, filter
entries by Gauss quadrature, entries below 1e-8 zeroed (the official thresholds are reproduced). The
Gram-Schmidt is ill-conditioned, so these steps are mirrored operation by operation to match the official
tables.

Measured property of the official tables (reproduced, since they define the published FEDformer-w): the
Gram-Schmidt in the monomial basis loses about two digits per order, so the Legendre filter bank
``[[H0, H1], [G0, G1]]`` is orthogonal to 1e-9 at ``k=4`` but off by 0.46 at the default ``k=8``
(decomposition followed by reconstruction is then not the identity).

Official quirks reproduced by default (``corrected=False``):

1. FEB-w reads only the values (queries and keys are ignored); kept, it is the block's definition.
2. FEA-w's inner cross attention (``FourierCrossAttentionW``) aggregates the keys' spectrum (keys as
   values) and divides its output by ``D**2``, as FEA-f does. ``corrected=True`` aggregates the values'
   spectrum and drops the division.
3. Filters: the official round-off above (the default tables are the official ones, which official checkpoints
   hold as buffers). ``corrected=True`` evaluates the same construction (same scaling functions, inner products,
   Gram-Schmidt order and signs) in 40-digit arithmetic (``multiwavelet_filters(..., accurate=True)``): the bank
   is then orthogonal to round-off (Legendre 2e-16 at k=8, was 0.46; Chebyshev, in the weighted sense
   ``F diag(PHI0, PHI1) F^T = I``, 1.4e-12 at k=8, was 1.7e-4) and agrees with the official tables where those
   are accurate (within 1e-9 up to k=4).

Deviation (numerics only): the blocks keep at most ``alpha`` (16) or ``modes`` of the ``N // 2 + 1`` frequency
bins, so the truncated transforms are products with the DFT rows of those bins (``_low_rfft``/``_low_irfft``)
instead of full FFTs followed by a slice (same values up to float32 round-off).

Notation: ``B`` batch, ``N`` length, ``c`` wavelet channels, ``k`` polynomial order, ``D`` model width.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
import torch
from numpy.polynomial import Polynomial
from torch import nn

__all__ = [
    "multiwavelet_filters",
    "SparseKernelFT1d",
    "MultiWaveletCore",
    "MultiWaveletTransform",
    "MultiWaveletCross",
]

BASES = ("legendre", "chebyshev")
_TINY = 1e-8  # official threshold below which coefficients and filter entries are set to zero


def _zero_small(a: np.ndarray) -> np.ndarray:
    a[np.abs(a) < _TINY] = 0
    return a


def _shifted_integer_coefficients(base: str, n: int) -> list[int]:
    """Exact integer power coefficients (ascending) of ``P_n(2x-1)`` or ``T_n(2x-1)``."""
    if base == "legendre":  # P_n(2x-1) = sum_j (-1)^(n+j) C(n, j) C(n+j, j) x^j
        return [(-1) ** (n + j) * math.comb(n, j) * math.comb(n + j, j) for j in range(n + 1)]
    prev, cur = [1], [-1, 2]  # T_0, T_1 = 2x - 1; T_{m+1} = 2 (2x - 1) T_m - T_{m-1}
    if n == 0:
        return prev
    for _ in range(n - 1):
        nxt = [0] * (len(cur) + 1)
        for j, c in enumerate(cur):
            nxt[j] -= 2 * c
            nxt[j + 1] += 4 * c
        for j, c in enumerate(prev):
            nxt[j] -= c
        prev, cur = cur, nxt
    return cur


def _basis_coefficients(base: str, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Ascending power coefficients of the scaling functions ``phi_i(x)`` and of ``sqrt(2) phi_i(2x)``.

    Legendre: ``phi_i(x) = sqrt(2i+1) P_i(2x-1)``. Chebyshev: ``phi_0 = sqrt(2/pi)``,
    ``phi_i(x) = 2/sqrt(pi) T_i(2x-1)``. Both as ``(k, k)`` tables. The wavelet Gram-Schmidt below is badly
    conditioned (coefficients reach 1e6 at k=8), so the tables are built exactly as the official code builds
    them from sympy: exact integer coefficients times the float norm, multiplied in the same order.
    """
    phi, phi_2x = np.zeros((k, k)), np.zeros((k, k))
    for i in range(k):
        ints = np.array(_shifted_integer_coefficients(base, i), dtype=np.float64)
        ints_2x = ints * np.power(2.0, np.arange(i + 1))  # P_i(2(2x)-1): exact powers of two
        if base == "legendre":
            phi[i, : i + 1] = np.sqrt(2 * i + 1) * ints
            phi_2x[i, : i + 1] = np.sqrt(2) * np.sqrt(2 * i + 1) * ints_2x
        elif i == 0:
            phi[i, 0] = np.sqrt(2 / np.pi)
            phi_2x[i, 0] = np.sqrt(2 / np.pi) * np.sqrt(2)
        else:
            phi[i, : i + 1] = 2 / np.sqrt(np.pi) * ints
            phi_2x[i, : i + 1] = np.sqrt(2) * 2 / np.sqrt(np.pi) * ints_2x
    return phi, phi_2x


def _poly(coef: np.ndarray, x: np.ndarray, lb: float | None = None, ub: float | None = None) -> np.ndarray:
    """Evaluate a coefficient row at ``x``, zero outside ``[lb, ub]`` when bounds are given."""
    value = Polynomial(coef)(x)
    if lb is None:
        return value
    return value * ~((x < lb) | (x > ub))


def _integral(prod: np.ndarray, upper_half: bool) -> float:
    """Exact integral of a power series over [0, 1/2] or [1/2, 1]."""
    n = np.arange(len(prod))
    low = np.power(0.5, n + 1)
    return float((prod / (n + 1) * ((1 - low) if upper_half else low)).sum())


def _legendre_wavelets(phi: np.ndarray, phi_2x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Wavelet coefficient tables on [0, 1/2] (``psi1``) and [1/2, 1] (``psi2``): exact Gram-Schmidt."""
    k = len(phi)
    psi1, psi2 = np.zeros((k, k)), np.zeros((k, k))
    for ki in range(k):
        psi1[ki] = phi_2x[ki]
        for i in range(k):  # remove the projection on phi_i (sqrt(2) phi_ki(2x) lives on [0, 1/2])
            proj = _integral(_zero_small(np.convolve(phi_2x[ki, : ki + 1], phi[i, : i + 1])), False)
            psi1[ki] -= proj * phi[i]
            psi2[ki] -= proj * phi[i]
        for j in range(ki):  # and on the wavelets found so far
            proj = _integral(_zero_small(np.convolve(phi_2x[ki, : ki + 1], psi1[j])), False)
            psi1[ki] -= proj * psi1[j]
            psi2[ki] -= proj * psi2[j]
        norm1 = _integral(_zero_small(np.convolve(psi1[ki], psi1[ki])), False)
        norm2 = _integral(_zero_small(np.convolve(psi2[ki], psi2[ki])), True)
        psi1[ki] /= math.sqrt(norm1 + norm2)
        psi2[ki] /= math.sqrt(norm1 + norm2)
        _zero_small(psi1)
        _zero_small(psi2)
    return psi1, psi2


def _chebyshev_wavelets(phi: np.ndarray, phi_2x: np.ndarray, x_m: np.ndarray, w_m: float):
    """As ``_legendre_wavelets`` with Gauss-Chebyshev quadrature inner products (official code)."""
    k = len(phi)
    psi1, psi2 = np.zeros((k, k)), np.zeros((k, k))
    for ki in range(k):
        psi1[ki] = phi_2x[ki]
        target = _poly(phi[ki], 2 * x_m, 0, 1)  # phi_ki(2 x_m); products below in the official order
        for i in range(k):
            proj = (w_m * _poly(phi[i], x_m, 0, 1) * np.sqrt(2) * target).sum()
            psi1[ki] -= proj * phi[i]
            psi2[ki] -= proj * phi[i]
        for j in range(ki):
            proj = (w_m * _poly(psi1[j], x_m, 0, 0.5 + 1e-16) * np.sqrt(2) * target).sum()
            psi1[ki] -= proj * psi1[j]
            psi2[ki] -= proj * psi2[j]
        low, high = _poly(psi1[ki], x_m, 0, 0.5), _poly(psi2[ki], x_m, 0.5, 1)
        norm1 = (w_m * low * low).sum()
        norm2 = (w_m * high * high).sum()
        psi1[ki] /= math.sqrt(norm1 + norm2)
        psi2[ki] /= math.sqrt(norm1 + norm2)
        _zero_small(psi1)
        _zero_small(psi2)
    return psi1, psi2


@functools.lru_cache(maxsize=8)
def _official_filters(base: str, k: int) -> tuple[np.ndarray, ...]:
    """The official tables (``layers/utils.get_filter``), round-off included (module docstring)."""
    phi, phi_2x = _basis_coefficients(base, k)
    if base == "legendre":
        nodes, weights = np.polynomial.legendre.leggauss(k)
        x_m, w_m = (nodes + 1) / 2, weights / 2  # Gauss-Legendre on [0, 1]
        psi1, psi2 = _legendre_wavelets(phi, phi_2x)
        bounds = {}
    else:
        # roots of T_2k(2x-1), ascending and correctly rounded like the official sympy roots (extended precision
        # where the platform has it): the Gram-Schmidt amplifies single-ulp differences in the nodes
        j = np.arange(2 * k, dtype=np.longdouble)
        x_m = np.sort(((np.cos((2 * j + 1) * np.arccos(np.longdouble(-1)) / (4 * k)) + 1) / 2).astype(np.float64))
        w_m = np.pi / (2 * k) / 2
        psi1, psi2 = _chebyshev_wavelets(phi, phi_2x, x_m, w_m)
        bounds = {"lb": 0, "ub": 1}
    lo = {"lb": 0, "ub": 0.5 + 1e-16} if bounds else {}
    hi = {"lb": 0.5 + 1e-16, "ub": 1} if bounds else {}

    def scaling(i, x):
        return _poly(phi[i], x, **bounds)

    def wavelet(i, x):
        return np.where(x <= 0.5, _poly(psi1[i], x, **lo), _poly(psi2[i], x, **hi))

    s = 1 / math.sqrt(2)
    rows = range(k)
    H0 = np.array([[s * (w_m * scaling(i, x_m / 2) * scaling(j, x_m)).sum() for j in rows] for i in rows])
    H1 = np.array([[s * (w_m * scaling(i, (x_m + 1) / 2) * scaling(j, x_m)).sum() for j in rows] for i in rows])
    G0 = np.array([[s * (w_m * wavelet(i, x_m / 2) * scaling(j, x_m)).sum() for j in rows] for i in rows])
    G1 = np.array([[s * (w_m * wavelet(i, (x_m + 1) / 2) * scaling(j, x_m)).sum() for j in rows] for i in rows])
    if base == "legendre":
        PHI0, PHI1 = np.eye(k), np.eye(k)
    else:
        PHI0 = np.array([[2 * (w_m * scaling(i, 2 * x_m) * scaling(j, 2 * x_m)).sum() for j in rows] for i in rows])
        PHI1 = np.array(
            [[2 * (w_m * scaling(i, 2 * x_m - 1) * scaling(j, 2 * x_m - 1)).sum() for j in rows] for i in rows]
        )
        _zero_small(PHI0)
        _zero_small(PHI1)
    return tuple(_zero_small(a) for a in (H0, H1, G0, G1)) + (PHI0, PHI1)


_DIGITS = 40  # working precision of the accurate filters (the Chebyshev basis change alone costs ~7 digits)


@functools.lru_cache(maxsize=8)
def _accurate_filters(base: str, k: int) -> tuple[np.ndarray, ...]:
    """The official construction without its round-off: the same definitions, evaluated in 40-digit arithmetic.

    A function of V1 (polynomials of degree < k on [0, 1/2] and on [1/2, 1]) is represented by its values at 2k
    nodes times the square roots of the quadrature weights, so that inner products are dot products. Legendre:
    Gauss-Legendre with k nodes on each half, exact L2 inner products (the official code integrates monomials
    exactly). Chebyshev: the official 2k Gauss-Chebyshev nodes on [0, 1], whose sums are the official inner
    products (the Chebyshev-weighted integral for polynomials on [0, 1]).

    The wavelets are the Gram-Schmidt of ``sqrt(2) phi_i(2x)``, in order, against ``phi`` and the earlier wavelets:
    a QR factorisation with a positive diagonal (the official signs). ``[[H0, H1], [G0, G1]]`` are the coordinates
    of ``phi`` and ``psi`` in the fine-scale basis ``sqrt(2) phi_i(2x), sqrt(2) phi_i(2x-1)`` (what the official
    quadratures compute) and ``PHI0``, ``PHI1`` that basis's Gram matrices. For Chebyshev this basis is nearly
    dependent (at k=8 PHI0's smallest eigenvalue is 2.6e-5 and wavelet coordinates reach 70), a change of basis
    that float64 cannot carry to full accuracy; mpmath (a dependency of sympy, hence of torch) does it once per
    ``(base, k)``.
    """
    import mpmath  # here, not at import: only corrected models need it

    with mpmath.workdps(_DIGITS):
        if base == "legendre":
            t, tw = mpmath.gauss_quadrature(k, "legendre")  # on [-1, 1], mapped to each half
            nodes, weights = [(ti + 1) / 4 for ti in t] + [(ti + 3) / 4 for ti in t], [wi / 4 for wi in tw] * 2
            norms, poly = [mpmath.sqrt(2 * i + 1) for i in range(k)], mpmath.legendre
        else:
            nodes = [(mpmath.cos((2 * j + 1) * mpmath.pi / (4 * k)) + 1) / 2 for j in range(2 * k)]
            weights = [mpmath.pi / (4 * k)] * (2 * k)
            norms, poly = [mpmath.sqrt(2 / mpmath.pi)] + [2 / mpmath.sqrt(mpmath.pi)] * (k - 1), mpmath.chebyt

        def sampled(stretch: int, shift: int) -> list[list]:
            """``(k, 2k)`` rows ``sqrt(stretch) phi_i(stretch x - shift)``, zero outside [0, 1], at the nodes."""
            return [
                [
                    mpmath.sqrt(stretch * w) * norms[i] * poly(i, 2 * (stretch * x - shift) - 1)
                    if 0 <= stretch * x - shift <= 1
                    else 0
                    for x, w in zip(nodes, weights)
                ]
                for i in range(k)
            ]

        phi, left, right = sampled(1, 0), sampled(2, 0), sampled(2, 1)
        Q, R = mpmath.qr(mpmath.matrix(phi + left).T)  # (2k, 2k): phi, then the wavelets in its last k columns
        psi = [[Q[m, c] * mpmath.sign(R[c, c]) for m in range(2 * k)] for c in range(k, 2 * k)]
        fine = mpmath.matrix(left + right)  # (2k, 2k) fine-scale basis
        bank = mpmath.matrix(phi + psi) * mpmath.inverse(fine)  # (2k, 2k) [[H0, H1], [G0, G1]]
        gram = fine * fine.T  # (2k, 2k) block diagonal: PHI0, PHI1
        bank, gram = (np.array(a.tolist(), dtype=np.float64) for a in (bank, gram))
    return bank[:k, :k], bank[:k, k:], bank[k:, :k], bank[k:, k:], gram[:k, :k], gram[k:, k:]


def multiwavelet_filters(base: str, k: int, *, accurate: bool = False) -> dict[str, np.ndarray]:
    """Two-scale filters ``H0, H1, G0, G1`` and Gram matrices ``PHI0, PHI1`` (``(k, k)`` float64 each).

    Args:
        base: ``"legendre"`` or ``"chebyshev"``.
        k: polynomial order.
        accurate: the same construction without round-off (quirk 3 of the module docstring; no thresholding).
            Default: the official tables, whose round-off defines the published FEDformer-w.

    Raises:
        ValueError: unknown ``base`` or ``k < 1``.
    """
    if base not in BASES:
        raise ValueError(f"wavelet base must be one of {BASES}, got {base!r}")
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"wavelet order k must be a positive integer, got {k!r}")
    names = ("H0", "H1", "G0", "G1", "PHI0", "PHI1")
    tables = _accurate_filters(base, k) if accurate else _official_filters(base, k)
    return {name: a.copy() for name, a in zip(names, tables)}


class _WaveletFilters(nn.Module):
    """Fixed decomposition/reconstruction matrices as non-persistent buffers (recomputable) of the default dtype
    (official: ``torch.Tensor``); ``accurate`` selects the filters without round-off (quirk 3)."""

    def __init__(self, base: str, k: int, accurate: bool = False):
        super().__init__()
        f = multiwavelet_filters(base, k, accurate=accurate)
        products = [f[a] @ f[b] for a, b in (("H0", "PHI0"), ("G0", "PHI0"), ("H1", "PHI1"), ("G1", "PHI1"))]
        if not accurate:  # the official code thresholds these products as well
            products = [_zero_small(a) for a in products]
        H0r, G0r, H1r, G1r = products
        tables = {
            "ec_s": np.concatenate([f["H0"].T, f["H1"].T]),  # (2k, k) smooth part
            "ec_d": np.concatenate([f["G0"].T, f["G1"].T]),  # (2k, k) detail part
            "rc_e": np.concatenate([H0r, G0r]),  # (2k, k) even samples
            "rc_o": np.concatenate([H1r, G1r]),  # (2k, k) odd samples
        }
        for name, table in tables.items():
            self.register_buffer(name, torch.tensor(table, dtype=torch.get_default_dtype()), persistent=False)
        self.k = k

    def decompose(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One level: ``(B, N, c, k) -> detail (B, N/2, c, k), smooth (B, N/2, c, k)``."""
        xa = torch.cat([x[:, ::2], x[:, 1::2]], dim=-1)  # (B, N/2, c, 2k)
        return xa @ self.ec_d, xa @ self.ec_s

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """One level: ``(B, n, c, 2k) -> (B, 2n, c, k)``, interleaving even and odd samples."""
        B, n, c, _ = x.shape
        return torch.stack([x @ self.rc_e, x @ self.rc_o], dim=2).reshape(B, 2 * n, c, self.k)


def _levels_and_padding(n: int) -> tuple[int, int]:
    """``floor(log2 n)`` decomposition levels and the padded power-of-two length ``2**ceil(log2 n)``."""
    return n.bit_length() - 1, 1 << (n - 1).bit_length()


def _mode_groups(kept: Sequence[int]) -> list[tuple[int, int, list[int]]]:
    """Split modes ``0..max(kept)`` into ranges ``[a, b)`` each kept by the same levels: ``(a, b, levels)``."""
    groups, a = [], 0
    for b in sorted(set(kept)):
        groups.append((a, b, [level for level, m in enumerate(kept) if m >= b]))
        a = b
    return groups


def _dft_basis(n: int, m: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``cos`` and ``sin`` of ``2 pi f t / n`` for bins ``f < m`` and times ``t < n``, ``(m, n)`` each, in ``like``'s
    dtype and device; the angles are reduced modulo ``n`` in integers, then evaluated in float64."""
    f = torch.arange(m, device=like.device)
    angle = (torch.outer(f, torch.arange(n, device=like.device)) % n).double() * (2 * math.pi / n)
    return angle.cos().to(like.dtype), angle.sin().to(like.dtype)


def _low_rfft(x: torch.Tensor, m: int) -> torch.Tensor:
    """The lowest ``m`` bins of ``rfft(x, dim=1)`` as one matrix product, modes first.

    Only a few of the ``n // 2 + 1`` bins are kept, so a product with the ``(2m, n)`` DFT rows costs less than
    the full FFT plus the slice (and, backward, the zero-padded inverse) at these sizes; same values up to
    round-off.

    Shapes:
        x: (B, n, F) real -> (m, B, F) complex
    """
    cos, sin = _dft_basis(x.shape[1], m, x)
    parts = torch.cat([cos, -sin]) @ x  # (B, 2m, F): real parts, then imaginary parts
    return torch.complex(parts[:, :m], parts[:, m:]).transpose(0, 1)


def _low_irfft(y: torch.Tensor, n: int) -> torch.Tensor:
    """``irfft`` of an ``n``-point spectrum whose bins from ``m`` on are zero, as one matrix product.

    The sine rows of the zero and Nyquist bins vanish (``sin 0``, ``sin pi t``), so their imaginary parts are
    ignored, as ``torch.fft.irfft`` does.

    Shapes:
        y: (m, B, F) complex, bins 0..m-1 -> (B, n, F) real
    """
    m = y.shape[0]
    cos, sin = _dft_basis(n, m, y.real)
    weight = torch.full((m, 1), 2.0 / n, dtype=cos.dtype, device=cos.device)  # bins f and n - f both count
    weight[0] = 1.0 / n
    if n % 2 == 0 and m > n // 2:  # the Nyquist bin counts once
        weight[n // 2] = 1.0 / n
    basis = torch.cat([cos * weight, -sin * weight]).T  # (n, 2m)
    return basis @ torch.cat([y.real, y.imag]).transpose(0, 1)  # (n, 2m) @ (B, 2m, F) -> (B, n, F)


class _ModeMix(torch.autograd.Function):
    """``[torch.bmm(x, w[:m]) for x in xs]`` for complex spectra ``xs[l]`` (m_l, B, i) and weights ``w`` (M, i, o).

    The decomposition levels that keep a mode are multiplied by its matrix in one product, and the weight gradient
    is written once, in place. Mode by mode and level by level, autograd zero-fills a full-size weight gradient per
    level and adds them up (16 x 1024 x 1024 complex per kernel at the paper size: ~15% of a FEDformer-w training
    step). The input gradient ``conj(conj(g) @ w^T)`` conjugates only the small tensors, not the weight.
    """

    @staticmethod
    def forward(ctx, w: torch.Tensor, *xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        groups = _mode_groups([x.shape[0] for x in xs])
        rows = [x.shape[1] for x in xs]
        stacked = [torch.cat([xs[level][a:b] for level in levels], dim=1) for a, b, levels in groups]  # (b-a, n*B, i)
        outs: list[list[torch.Tensor]] = [[] for _ in xs]
        for (a, b, levels), x in zip(groups, stacked):
            for level, y in zip(levels, torch.bmm(x, w[a:b]).split([rows[lv] for lv in levels], dim=1)):
                outs[level].append(y)
        ctx.save_for_backward(w, *stacked)
        ctx.groups, ctx.rows = groups, rows
        return tuple(torch.cat(parts) for parts in outs)

    @staticmethod
    def backward(ctx, *grads: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        w, *stacked = ctx.saved_tensors
        groups, rows = ctx.groups, ctx.rows
        used = groups[-1][1]
        grad_w = None
        if ctx.needs_input_grad[0]:
            grad_w = torch.empty_like(w)
            grad_w[used:].zero_()  # modes no level keeps
        grad_xs = [[] for _ in rows]
        for (a, b, levels), x in zip(groups, stacked):
            g = torch.cat([grads[level][a:b] for level in levels], dim=1)  # (b-a, n*B, o)
            if grad_w is not None:
                torch.bmm(x.mH, g, out=grad_w[a:b])
            gx = torch.bmm(g.conj(), w[a:b].transpose(1, 2)).conj()  # (b-a, n*B, i)
            for level, part in zip(levels, gx.split([rows[lv] for lv in levels], dim=1)):
                grad_xs[level].append(part)
        inputs = [torch.cat(parts) if ctx.needs_input_grad[1 + i] else None for i, parts in enumerate(grad_xs)]
        return (grad_w, *inputs)


class SparseKernelFT1d(nn.Module):
    """Complex channel mixing of the lowest ``alpha`` Fourier modes over time (official ``sparseKernelFT1d``).

    ``weights1`` is stored modes first, ``(alpha, c*k, c*k)``; the official tensor is ``(c*k, c*k, alpha)`` and
    ``convert_official_state_dict`` permutes it. With modes first each mode's matrix is contiguous, so the batched
    matmul reads the weights in place: in the official layout every call copied them, mode by mode, forward and
    backward (at the paper size, ``c*k = 1024``, those copies were ~60% of a FEDformer-w training step). The
    initial values are the official draw, permuted. ``levels`` applies the kernel to several decomposition levels
    in one pass over the weights (``_ModeMix``); it equals calling the block on each.

    Shapes:
        x: (B, N, c, k) -> (B, N, c, k)
    """

    def __init__(self, k: int, alpha: int, c: int):
        super().__init__()
        official = torch.rand(c * k, c * k, alpha, dtype=torch.cfloat) / (c * k * c * k)  # (in, out, modes)
        self.weights1 = nn.Parameter(official.permute(2, 0, 1).contiguous())  # (modes, in, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.levels([x])[0]

    def levels(self, xs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The block applied to each ``(B, N_l, c, k)`` tensor of ``xs``."""
        if not xs:
            return []
        spectra = []
        for x in xs:
            B, N, c, k = x.shape
            m = min(self.weights1.shape[0], N // 2 + 1)
            spectra.append(_low_rfft(x.reshape(B, N, c * k), m))  # (m, B, c*k)
        mixed = _ModeMix.apply(self.weights1, *spectra)  # (m_l, B, c*k) each
        return [_low_irfft(y, x.shape[1]).reshape(x.shape) for x, y in zip(xs, mixed)]


class MultiWaveletCore(nn.Module):
    """Multiwavelet neural operator over time (official ``MWT_CZ1d``).

    Decomposes ``floor(log2 N) - L`` levels (after wrap-padding to a power of two), transforms details and
    smooth parts with sparse Fourier kernels ``A, B, C``, the coarsest part with ``T0``, and reconstructs.

    ``accurate`` selects the filters without round-off (quirk 3).

    Shapes:
        x: (B, N, c, k) -> (B, N, c, k)
    """

    def __init__(self, k: int, alpha: int, levels: int, c: int, base: str, accurate: bool = False):
        super().__init__()
        self.levels = levels
        self.A = SparseKernelFT1d(k, alpha, c)
        self.B = SparseKernelFT1d(k, alpha, c)
        self.C = SparseKernelFT1d(k, alpha, c)
        self.T0 = nn.Linear(k, k)
        self.filters = _WaveletFilters(base, k, accurate=accurate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        N = x.shape[1]
        ns, padded = _levels_and_padding(N)
        x = torch.cat([x, x[:, : padded - N]], dim=1)  # wrap-around padding to a power of two
        ds, xs = [], []  # details and smooth parts, level by level: (B, N/2**l, c, k) each
        for _ in range(ns - self.levels):
            d, x = self.filters.decompose(x)
            ds.append(d)
            xs.append(x)
        details = [a + b for a, b in zip(self.A.levels(ds), self.B.levels(xs))]
        smooths = self.C.levels(ds)
        x = self.T0(x)  # coarsest scale
        for d, s in zip(reversed(details), reversed(smooths)):
            x = self.filters.reconstruct(torch.cat([x + s, d], dim=-1))
        return x[:, :N]


class MultiWaveletTransform(nn.Module):
    """FEB-w: ``Linear(D -> c*k)``, multiwavelet core, ``Linear(c*k -> D)`` on the values.

    ``corrected=True`` uses the filters without round-off (quirk 3).

    Shapes:
        v: (B, L, H, E) -> (B, L, D); queries and keys are ignored (official).
    """

    def __init__(
        self,
        d_model: int,
        *,
        k: int = 8,
        alpha: int = 16,
        c: int = 128,
        levels: int = 3,
        base: str,
        corrected: bool = False,
    ):
        super().__init__()
        self.c, self.k = c, k
        self.Lk0 = nn.Linear(d_model, c * k)
        self.Lk1 = nn.Linear(c * k, d_model)
        self.core = MultiWaveletCore(k, alpha, levels, c, base, accurate=corrected)

    def forward(self, q: torch.Tensor | None, k: torch.Tensor | None, v: torch.Tensor) -> torch.Tensor:
        B, L = v.shape[:2]
        x = self.Lk0(v.reshape(B, L, -1)).view(B, L, self.c, self.k)  # (B, L, H, E) -> (B, L, c, k)
        return self.Lk1(self.core(x).reshape(B, L, -1))  # (B, L, c*k) -> (B, L, D)


def _fourier_cross_w(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, modes: int, activation: str, scale: float | None
) -> torch.Tensor:
    """Parameter-free frequency attention on the lowest modes (official ``FourierCrossAttentionW``).

    ``v`` is used as values only when given (corrected); the official code uses the keys. ``scale`` divides the
    output spectrum (official: ``D**2``).

    Shapes:
        q, k, v: (B, N, c, k) -> (B, N, c, k)
    """
    N = q.shape[1]
    m = min(N // 2, modes)
    if m == 0:  # a length-1 level keeps no bin: the official output is zero
        return torch.zeros_like(q)
    B, _, c, k_order = q.shape

    def spectrum(x: torch.Tensor) -> torch.Tensor:  # (B, N, c, k) -> (m, B, c, k)
        return _low_rfft(x.reshape(B, N, c * k_order), m).view(m, B, c, k_order)

    q_ft, k_ft = spectrum(q), spectrum(k)
    scores = torch.einsum("xbeh,ybeh->bhxy", q_ft, k_ft)  # (B, k, m, m)
    if activation == "tanh":
        weights = scores.tanh()
    else:
        weights = torch.complex(torch.softmax(scores.abs(), dim=-1), torch.zeros_like(scores.real))
    values_ft = k_ft if v is None else spectrum(v)
    agg = torch.einsum("bhxy,ybeh->xbeh", weights, values_ft)  # (m, B, c, k)
    if scale is not None:
        agg = agg / scale / scale
    return _low_irfft(agg.reshape(m, B, c * k_order), N).view(B, N, c, k_order)


class MultiWaveletCross(nn.Module):
    """FEA-w: decompose projected queries/keys/values fully, attend per level in frequency, reconstruct.

    Args:
        d_model: model width ``D``.
        modes: kept low modes of the inner frequency attention.
        k, c, base: wavelet order, channels and basis.
        activation: ``"tanh"`` or ``"softmax"``.
        corrected: use the values (not the keys) as values, drop the ``1/D**2`` output scale, and use the
            filters without round-off (quirks 2 and 3).
        keep_unused: create the official module's unused ``T0`` (and, when not corrected, ``Lv``).

    Shapes:
        q: (B, N, H, E), k: (B, S, H, E), v: (B, S, H, E) or None -> (B, N, D)
    """

    def __init__(
        self,
        d_model: int,
        *,
        modes: int,
        k: int = 8,
        c: int = 64,
        base: str,
        activation: str = "tanh",
        corrected: bool = False,
        keep_unused: bool = False,
    ):
        super().__init__()
        if activation not in ("tanh", "softmax"):
            raise ValueError(f"cross activation must be 'tanh' or 'softmax', got {activation!r}")
        self.c, self.k, self.modes, self.activation = c, k, modes, activation
        self.corrected, self.d_model = corrected, d_model
        self.Lq = nn.Linear(d_model, c * k)
        self.Lk = nn.Linear(d_model, c * k)
        if corrected or keep_unused:
            self.Lv = nn.Linear(d_model, c * k)
        if keep_unused:
            self.T0 = nn.Linear(k, k)
        self.out = nn.Linear(c * k, d_model)
        self.filters = _WaveletFilters(base, k, accurate=corrected)

    def _attend(self, streams: list[torch.Tensor | None]) -> torch.Tensor:
        q, k, v = streams
        return _fourier_cross_w(q, k, v, self.modes, self.activation, None if self.corrected else self.d_model)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor | None = None) -> torch.Tensor:
        B, N = q.shape[:2]
        S = k.shape[1]
        ns, padded = _levels_and_padding(N)

        def prepare(x: torch.Tensor | None, proj: nn.Linear, is_query: bool) -> torch.Tensor | None:
            if x is None:
                return None
            x = proj(x.reshape(B, x.shape[1], -1)).view(B, x.shape[1], self.c, self.k)  # (B, ., c, k)
            if not is_query:  # keys and values are zero-padded or truncated to the query length N
                x = torch.cat([x, x.new_zeros(B, N - S, self.c, self.k)], 1) if N > S else x[:, :N]
            return torch.cat([x, x[:, : padded - N]], dim=1)  # wrap-pad to a power of two

        values = v if self.corrected else None  # official: keys as values, Lv unused
        streams = [
            prepare(q, self.Lq, True),
            prepare(k, self.Lk, False),
            prepare(values, getattr(self, "Lv", None), False),
        ]
        details, smooths = [], []
        for _ in range(ns):
            parts = [None if s is None else self.filters.decompose(s) for s in streams]  # (detail, smooth) each
            d_att = self._attend([None if p is None else p[0] for p in parts])
            streams = [None if p is None else p[1] for p in parts]
            details.append(d_att + self._attend(streams))
            smooths.append(d_att)  # official attn3 on the details equals attn1 (parameter-free, same input)
        x = self._attend(streams)
        for d, s in zip(reversed(details), reversed(smooths)):
            x = self.filters.reconstruct(torch.cat([x + s, d], dim=-1))
        return self.out(x[:, :N].reshape(B, N, -1))
