"""A small SwinIR-style denoiser with per-pixel tokens, for masked image training
(Chen, Gu et al., CVPR 2023).

Reference (``../shared/METHODS.md`` section 4): SwinIR with embedding 60, four residual
groups of six window-attention blocks, six heads, window 8 (about 0.8 M parameters),
whose first layer is a 1x1 convolution, predicting the clean image directly. This keeps
that layout, at any size (``SwinDenoiser(60, 6, (6, 6, 6, 6))`` is the reference's):

- a **1x1 embedding**: every token is one pixel, and nothing before the first attention
  layer mixes neighbouring pixels, so a token's input does not depend on how many of its
  neighbours are masked (an earlier layout of 4x4-pixel tokens after convolutions saw
  85% zeros around each pixel in training and dense input at test, and collapsed);
- residual groups of window self-attention blocks (pre-norm, relative position bias,
  shifted windows in every second block) that end in a 3x3 convolution; a layer norm, a
  3x3 convolution plus the embedding, a 3x3 convolution to the output;
- the *attention mask*: in every attention layer a share ``drop`` of tokens is zeroed
  before the QKV projection (:meth:`SwinDenoiser.forward`'s ``drop``);
- the output is the clean image itself, not a residual (no long skip).

The *input mask* (pixel-wise, 80-90% of the pixels set to -0.1 during training) is applied
by the training code, not here. Layer norms act per token, so the output at a pixel
depends only on its receptive field; window partitions start at multiples of
:attr:`align` of the input, which the tiling engine keeps for every read region, so
tiled runs equal untiled ones.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SwinDenoiser"]


@functools.lru_cache(maxsize=16)
def _order(h: int, wd: int, w: int, s: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Window order of a cyclically shifted ``h x wd`` grid, as gather indices.

    ``(order, inverse)``: flat pixel index of every position of the windows (window by
    window, row-major inside; after a cyclic shift by ``-s`` in both axes), and its
    inverse. One gather partitions (and shifts), one gathers back: a single copy each way.
    """
    with torch.inference_mode(False):  # cached: usable by training after inference
        idx = torch.arange(h * wd, device=device).view(h, wd)
        if s:
            idx = torch.roll(idx, (-s, -s), (0, 1))
        order = idx.view(h // w, w, wd // w, w).permute(0, 2, 1, 3).reshape(-1)
        return order, torch.argsort(order)


def _windows(x: torch.Tensor, w: int) -> torch.Tensor:
    """``(B, H, W, C)`` -> ``(B * nW, w * w, C)``."""
    b, h, wd, c = x.shape
    x = x.view(b, h // w, w, wd // w, w, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, w * w, c)


@functools.lru_cache(maxsize=16)
def _shift_mask(h: int, wd: int, w: int, s: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """The shifted-window attention mask of the windows that need one.

    Returns ``(index, mask)``: the indices of the windows in the last window row or
    column (the only ones that the cyclic shift fills from opposite borders) and their
    masks ``(len(index), w*w, w*w)``, 0 within a region and -100 between regions. Every
    other window attends without a mask. Cached, as :func:`_order`.
    """
    with torch.inference_mode(False):
        img = torch.zeros(1, h, wd, 1, device=device)
        cnt = 0
        for ys in (slice(0, -w), slice(-w, -s), slice(-s, None)):
            for xs in (slice(0, -w), slice(-w, -s), slice(-s, None)):
                img[:, ys, xs, :] = cnt
                cnt += 1
        gh, gw = h // w, wd // w
        grid = torch.arange(gh * gw, device=device).view(gh, gw)
        index = torch.cat([grid[:-1, -1], grid[-1, :]])  # last column, then the last row
        win = _windows(img, w).squeeze(-1)[index]
        diff = win[:, None, :] - win[:, :, None]
        return index, torch.zeros_like(diff).masked_fill(diff != 0, -100.0)


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int, window: int):
        super().__init__()
        self.heads, self.window = heads, window
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.bias_table, std=0.02)
        ys, xs = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
        coords = torch.stack([ys.flatten(), xs.flatten()])  # 2, N
        rel = (coords[:, :, None] - coords[:, None, :]) + (window - 1)
        self.register_buffer("rel_index", rel[0] * (2 * window - 1) + rel[1], persistent=False)

    def forward(self, x: torch.Tensor, shift: tuple | None, batch: int) -> torch.Tensor:
        """``x``: windows ``(B * nW, N, C)``; ``shift``: ``(index, mask)`` of the windows
        of each image that need the shifted-window mask (``None`` for unshifted windows)."""
        bn, n, c = x.shape
        qkv = self.qkv(x).view(bn, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        bias = self.bias_table[self.rel_index.view(-1)].view(n, n, self.heads).permute(2, 0, 1)
        bias = bias.unsqueeze(0).to(x.dtype)
        q, k, v = qkv[0], qkv[1], qkv[2]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (B * nW, heads, N, hd)
        if shift is not None:  # redo the border windows with the mask
            index, mask = shift
            nw = bn // batch
            rows = (index[None, :] + nw * torch.arange(batch, device=x.device)[:, None]).flatten()
            attn_mask = (bias + mask.unsqueeze(1).to(x.dtype)).repeat(batch, 1, 1, 1)
            fixed = F.scaled_dot_product_attention(q[rows], k[rows], v[rows], attn_mask=attn_mask)
            out = out.index_copy(0, rows, fixed)
        out = out[:, 0] if self.heads == 1 else out.transpose(1, 2).reshape(bn, n, c)
        return self.proj(out)


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, window: int, shift: bool, mlp_ratio: float):
        super().__init__()
        self.window, self.shift = window, window // 2 if shift else 0
        self.norm1 = nn.LayerNorm(dim)
        self.attn = _Attention(dim, heads, window)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, drop: float, u: torch.Tensor | None = None) -> torch.Tensor:
        b, h, wd, c = x.shape
        w, s = self.window, self.shift
        t = self.norm1(x)
        if drop > 0:  # the attention mask: zero a share of tokens before the QKV projection
            if u is None:
                u = torch.rand(b, h, wd, 1, device=t.device)
            t = t * (u >= drop).to(t.dtype)
        order, inverse = _order(h, wd, w, s, x.device)
        t = t.reshape(b, h * wd, c)[:, order].view(-1, w * w, c)  # (B * nW, N, C)
        shift = _shift_mask(h, wd, w, s, x.device) if s else None
        t = self.attn(t, shift, b).view(b, h * wd, c)[:, inverse].view(b, h, wd, c)
        x = x + t
        return x + self.mlp(self.norm2(x))


class _Group(nn.Module):
    """Residual group: window-attention blocks (every second one shifted), a 3x3 conv."""

    def __init__(self, dim: int, depth: int, heads: int, window: int, mlp_ratio: float):
        super().__init__()
        self.blocks = nn.ModuleList(
            _Block(dim, heads, window, shift=bool(i % 2), mlp_ratio=mlp_ratio) for i in range(depth)
        )
        self.conv = nn.Conv2d(dim, dim, 3, padding=1)

    def forward(self, x: torch.Tensor, drop: float, uniform=None, first: int = 0) -> torch.Tensor:
        t = x.permute(0, 2, 3, 1).contiguous()  # B, H, W, C (a view for channels-last input)
        b, h, w, _ = t.shape
        for k, blk in enumerate(self.blocks):
            u = uniform(first + k, h, w) if (drop > 0 and uniform is not None) else None
            t = blk(t, drop, u)
        return x + self.conv(t.permute(0, 3, 1, 2))


class SwinDenoiser(nn.Module):
    """``(B, 1, H, W) -> (B, 1, H, W)``, H and W multiples of :attr:`align` (the window).

    Layout (SwinIR's, per-pixel tokens): a 1x1 convolution to ``dim`` channels; residual
    groups of window-attention blocks (``depths``), each closed by a 3x3 convolution; a
    layer norm, a 3x3 convolution plus the embedding; a 3x3 convolution to the output.

    Parameters
    ----------
    dim : int
        Token width.
    heads : int
        Attention heads (``dim`` must be a multiple).
    depths : tuple of ints
        Blocks per residual group (one group per entry).
    window : int
        Window size in pixels.
    mlp_ratio : float
        Hidden width of the blocks' MLP over ``dim``.
    """

    def __init__(
        self, dim: int = 24, heads: int = 2, depths=(2, 2), window: int = 8, mlp_ratio: float = 2.0
    ):
        super().__init__()
        if dim % heads:
            raise ValueError(f"token width {dim} is not a multiple of {heads} heads")
        self.dim, self.heads, self.depths, self.window = dim, heads, tuple(depths), window
        self.align = window  # windows tile the input
        self.embed = nn.Conv2d(1, dim, 1)
        self.groups = nn.ModuleList(_Group(dim, d, heads, window, mlp_ratio) for d in self.depths)
        self.norm = nn.LayerNorm(dim)
        self.after = nn.Conv2d(dim, dim, 3, padding=1)
        self.out = nn.Conv2d(dim, 1, 3, padding=1)

    @property
    def widths(self) -> tuple[int, ...]:
        """``(dim, heads, depths...)``, as the manifests and the method's ``widths`` read them."""
        return (self.dim, self.heads, *self.depths)

    @property
    def radius(self) -> int:
        """Receptive-field radius in pixels: a bound that no window phase exceeds.

        A window lets a pixel see up to ``window - 1`` pixels away; a group's closing 3x3
        convolution one more; the last two convolutions one each.
        """
        return sum(d * (self.window - 1) + 1 for d in self.depths) + 2

    def forward(self, x: torch.Tensor, drop: float = 0.0, uniform=None) -> torch.Tensor:
        """The clean image predicted from ``x``.

        ``drop`` is the attention mask's share of zeroed tokens (0: no attention mask).
        ``uniform(layer, h, w)``, when given, supplies the random numbers of attention
        layer ``layer`` as a ``(B, h, w, 1)`` tensor on the token grid (a token is dropped
        where the number is below ``drop``), so that the draw can depend on the tokens'
        global positions; by default they come from ``torch.rand``.
        """
        e = self.embed(x)
        t, first = e, 0
        for g, d in zip(self.groups, self.depths):
            t = g(t, drop, uniform, first)
            first += d
        t = self.norm(t.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return self.out(self.after(t) + e)
