"""A small U-shaped SwinIR-style denoiser for masked image training (Chen, Gu et al., CVPR 2023).

Reference (``../shared/METHODS.md`` section 4): SwinIR with embedding 60, four residual
groups of six window-attention blocks, six heads, window 8 (about 0.8 M parameters and
1.7 MFLOP per pixel), predicting the clean image directly. Sized for a CPU here (about
a tenth of the cost), keeping what masked training relies on:

- window self-attention blocks (pre-norm, relative position bias, shifted windows in
  every second block) inside residual groups that end in a 3x3 convolution;
- tokens on a down-sampled grid: a 2x2 pixel-unshuffle in front (each token holds 2x2
  pixels, as FFDNet does), and a U-shaped layout with one more level at 1/4 resolution
  (strided convolution down, pixel-shuffle up, additive skip);
- the *attention mask*: in every attention layer a share ``drop`` of tokens is zeroed
  before the QKV projection (:meth:`SwinDenoiser.forward`'s ``drop``);
- the output is the clean image itself, not a residual (the training input is mostly
  masked pixels, so there is nothing to add a residual to).

The *input mask* (pixel-wise, 80-90% of pixels set to 0 during training) is applied by the
training code, not here. Layer norms act per token, so the output at a pixel depends only
on its receptive field; window partitions start at multiples of :attr:`align` of the
input, which the tiling engine keeps for every read region, so tiled runs equal untiled
ones.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SwinDenoiser"]


def _windows(x: torch.Tensor, w: int) -> torch.Tensor:
    """``(B, H, W, C)`` -> ``(B * nW, w * w, C)``."""
    b, h, wd, c = x.shape
    x = x.view(b, h // w, w, wd // w, w, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, w * w, c)


def _unwindows(x: torch.Tensor, w: int, b: int, h: int, wd: int) -> torch.Tensor:
    c = x.shape[-1]
    x = x.view(b, h // w, wd // w, w, w, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, wd, c)


def _shift_mask(h: int, wd: int, w: int, s: int, device) -> torch.Tensor:
    """The shifted-window attention mask ``(nW, w*w, w*w)``: 0 within a region, -inf-like
    between tokens that the cyclic shift brought together from opposite borders."""
    img = torch.zeros(1, h, wd, 1, device=device)
    cnt = 0
    for ys in (slice(0, -w), slice(-w, -s), slice(-s, None)):
        for xs in (slice(0, -w), slice(-w, -s), slice(-s, None)):
            img[:, ys, xs, :] = cnt
            cnt += 1
    win = _windows(img, w).squeeze(-1)
    diff = win[:, None, :] - win[:, :, None]
    return torch.zeros_like(diff).masked_fill(diff != 0, -100.0)


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
        self._cached = None  # (key, bias + shift mask) reused between inference calls

    def train(self, mode: bool = True):
        self._cached = None  # weights may change
        return super().train(mode)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None, batch: int, hw=None
    ) -> torch.Tensor:
        """``x``: windows ``(B * nW, N, C)``; ``mask``: the shifted-window mask of the token
        grid ``hw`` (``None`` for unshifted windows)."""
        bn, n, c = x.shape
        qkv = self.qkv(x).view(bn, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        bias = self.bias_table[self.rel_index.view(-1)].view(n, n, self.heads).permute(2, 0, 1)
        q, k, v = qkv[0], qkv[1], qkv[2]
        if mask is None:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.unsqueeze(0).to(x.dtype))
        else:  # one image at a time, so that the (nW, heads, N, N) mask is used as it is
            nw = mask.shape[0]
            key = (tuple(hw), mask.device, x.dtype, self.bias_table._version)
            if not torch.is_grad_enabled() and self._cached is not None and self._cached[0] == key:
                attn_mask = self._cached[1]  # inference: the bias is fixed, the sum can be reused
            else:
                attn_mask = (bias.unsqueeze(0) + mask.unsqueeze(1)).to(x.dtype).contiguous()
                self._cached = None if torch.is_grad_enabled() else (key, attn_mask)
            out = torch.cat(
                [
                    F.scaled_dot_product_attention(
                        q[i : i + nw], k[i : i + nw], v[i : i + nw], attn_mask=attn_mask
                    )
                    for i in range(0, bn, nw)
                ]
            )
        return self.proj(out.transpose(1, 2).reshape(bn, n, c))


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
        if s:
            t = torch.roll(t, (-s, -s), (1, 2))
        t = _windows(t, w)
        mask = _shift_mask(h, wd, w, s, x.device) if s else None
        t = _unwindows(self.attn(t, mask, b, (h, wd)), w, b, h, wd)
        if s:
            t = torch.roll(t, (s, s), (1, 2))
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


class _ConvRes(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c, c, 3, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(c, c, 3, padding=1),
        )

    def forward(self, x):
        return x + self.body(x)


class SwinDenoiser(nn.Module):
    """``(B, 1, H, W) -> (B, 1, H, W)``, H and W multiples of :attr:`align`.

    Layout (U-shaped): 2x2 pixel-unshuffle; a convolutional residual block at 1/2
    resolution (``conv`` channels); a strided convolution to tokens at 1/4 resolution
    (``dim`` channels, one token per 4x4 pixels); residual groups of window-attention
    blocks (``depths``); a 1x1 convolution and pixel-shuffle back to 1/2 resolution, an
    additive skip, a second convolutional residual block; a 3x3 convolution and
    pixel-shuffle to the output. Attention, the expensive part, runs on 16x fewer tokens
    than pixels.

    Parameters
    ----------
    conv : int
        Channels of the convolutional path at 1/2 resolution.
    dim : int
        Token width.
    depths : tuple of ints
        Blocks per residual group (one group per entry).
    heads : int
        Attention heads.
    window : int
        Window size in tokens (8 tokens = 32 pixels).
    mlp_ratio : float
        Hidden width of the blocks' MLP over ``dim``.
    """

    def __init__(
        self,
        conv: int = 16,
        dim: int = 48,
        depths=(2, 2),
        heads: int = 2,
        window: int = 8,
        mlp_ratio: float = 2.0,
    ):
        super().__init__()
        self.conv, self.dim, self.depths, self.heads, self.window = (
            conv,
            dim,
            tuple(depths),
            heads,
            window,
        )
        self.align = 4 * window  # windows of the token grid tile the input
        self.embed = nn.Conv2d(4, conv, 3, padding=1)
        self.enc = _ConvRes(conv)
        self.down = nn.Conv2d(conv, dim, 2, stride=2)
        self.groups = nn.ModuleList(_Group(dim, d, heads, window, mlp_ratio) for d in self.depths)
        self.up = nn.Conv2d(dim, 4 * conv, 1)
        self.dec = _ConvRes(conv)
        self.out = nn.Conv2d(conv, 4, 3, padding=1)

    @property
    def radius(self) -> int:
        """Receptive-field radius in pixels: a bound that no window phase exceeds.

        In tokens (4 pixels): a window lets a token see up to ``window - 1`` tokens away,
        a group's closing 3x3 convolution one more. The convolutional path at 1/2
        resolution adds 6 half-resolution pixels (2 pixels each) on the way in and out.
        """
        tokens = sum(d * (self.window - 1) + 1 for d in self.depths)
        return 4 * tokens + 3 + 2 * 6 + 2 + 1

    def forward(self, x: torch.Tensor, drop: float = 0.0, uniform=None) -> torch.Tensor:
        """The clean image predicted from ``x``.

        ``drop`` is the attention mask's share of zeroed tokens (0: no attention mask).
        ``uniform(layer, h, w)``, when given, supplies the random numbers of attention
        layer ``layer`` as a ``(B, h, w, 1)`` tensor on the token grid (a token is dropped
        where the number is below ``drop``), so that the draw can depend on the tokens'
        global positions; by default they come from ``torch.rand``.
        """
        e = self.enc(F.leaky_relu(self.embed(F.pixel_unshuffle(x, 2)), 0.2))
        t = self.down(e)
        first = 0
        for g, d in zip(self.groups, self.depths):
            t = g(t, drop, uniform, first)
            first += d
        return F.pixel_shuffle(self.out(self.dec(e + F.pixel_shuffle(self.up(t), 2))), 2)
