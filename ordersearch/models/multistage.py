"""The multistage spatial context model of Lin et al. (ICASSP 2023), for any schedule.

Every patch position p has its own masked KxK convolution (mask from
``Schedule.masks``) that turns already-decoded neighbours into context
features; one shared 1x1 entropy-parameters network maps [prior features,
context features] to the Gaussian (or Gaussian-mixture) parameters of each
latent. Decoding a 2x2 raster schedule ``[[0, 1], [2, 3]]``::

    stage 0        stage 1        stage 2        stage 3
    0 . 0 .       x 1 x 1       x x x x       x x x x
    . . . .       . . . .       2 . 2 .       x 3 x 3
    0 . 0 .       x 1 x 1       x x x x       x x x x
    . . . .       . . . .       2 . 2 .       x 3 x 3

(digits: decoded at this stage from the x's; all patches at once).

Two ways to compute the same likelihoods:

- ``forward`` (training): all stages in one parallel pass. Position p's
  convolution is evaluated only on its own sub-lattice (a stride-n
  convolution from offset p), so the whole pass costs one full convolution.
  Its mask hides every latent not yet decoded at p's stage.
- ``stagewise`` (decoding): stage by stage, each stage reading a copy of y in
  which every latent not yet decoded is zeroed, exactly what a decoder has.

The image border: a window that reaches past the image reads zeros there,
which a model cannot tell from decoded zeros. So every convolution also reads
an *outside* channel, 1 at window offsets past the image and 0 inside, under
the same mask (``edge``, one more input channel per position): a latent at
the border knows which of its decoded neighbours are missing and can predict
with the ones it has. Inside the image the channel is all zeros and the model
is the paper's; weights saved without ``edge`` load with it at zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import OrdersearchError
from ..schedule import Schedule
from .entropy import SCALE_BOUND, gaussian_likelihood, gaussian_mixture_likelihood


@dataclass(frozen=True)
class ModelConfig:
    """Model shape: kernel, mixture components, context channels, hidden width of the entropy network.

    ``context_channels`` defaults to twice the latent channels, as in the paper
    (M -> 2M): the features carry both the prediction and, through each
    position's own bias, how sure it is. ``hidden`` defaults to 3/4 of the
    entropy network's input width.
    """

    kernel: int = 5
    mixture: int = 1
    context_channels: int | None = None
    hidden: int | None = None
    #: The prior holds the hyperprior's scale of each latent channel (prior channels = channels): the
    #: context convolutions read y / scale and the means come out in units of the scale, the form in
    #: which neighbours predict each other linearly (see ``linear_gaussian``). The entropy network
    #: learns that product poorly: on the built-in latents (600 training steps) the best 2x2 orders
    #: saved 0.4% over no context without it; with it, the full 2x2 context set saves 6.5%
    #: (1.0248 -> 0.9584 bits/latent, per-set models). None: the evaluator decides from the data
    #: (``prior_is_scale``); a model built directly reads None as False.
    prior_scale: bool | None = None
    #: Every convolution reads the outside channel (1 past the image): border latents know which neighbours
    #: they lack. False: the official code's model, whose zeros past the image look like decoded zeros (the
    #: channel's weights stay zero).
    outside: bool = True


def prior_is_scale(channels: int, prior: list | tuple | None) -> bool:
    """The convention the toolkit reads priors by: one positive value per latent channel is a scale."""
    return prior is not None and len(prior) > 0 and prior[0].shape[0] == channels and all(
        float(p.min()) > 0 for p in prior)


def inner(t: torch.Tensor, border: int) -> torch.Tensor:
    """``t`` without its outer ``border`` rows and columns (its last two dimensions)."""
    return t[..., border:t.shape[-2] - border, border:t.shape[-1] - border] if border else t


def outside_map(height: int, width: int, pad: int, like: torch.Tensor) -> torch.Tensor:
    """(1, 1, height + 2 pad, width + 2 pad): 1 on the ``pad`` rows and columns around the image, 0 on it."""
    inside = torch.ones(1, 1, height, width, dtype=like.dtype, device=like.device)
    return 1 - F.pad(inside, (pad, pad, pad, pad))


def translated_state(state: dict[str, torch.Tensor], shift: tuple[int, int] | None) -> dict[str, torch.Tensor]:
    """A multistage model's state dict with its per-position tensors rolled by ``shift`` over the patch.

    The weights of a schedule serve any translate of it (``Schedule.translation_to``).
    """
    if shift is None:
        raise OrdersearchError("the weights belong to a schedule that is not a translate of this one")
    if shift == (0, 0):
        return state
    n = round(state["masks"].shape[0] ** 0.5)
    moved = dict(state)
    for k in ("weight", "edge", "bias", "masks"):
        if k not in state:  # weights saved before the outside channel
            continue
        t = state[k].reshape(n, n, *state[k].shape[1:])
        moved[k] = torch.roll(t, shift, dims=(0, 1)).reshape(state[k].shape)
    return moved


def fitted_state(state: dict[str, torch.Tensor], schedule: Schedule) -> dict[str, torch.Tensor]:
    """``state`` moved to ``schedule``'s positions, whichever translate of it the weights were trained for.

    The masks the weights carry say which schedule they belong to: weights
    of another schedule are an error here, not a codec that cannot decode.
    """
    bad = [k for k, v in state.items() if isinstance(v, torch.Tensor) and v.is_floating_point()
           and not bool(torch.isfinite(v).all())]
    if bad:
        raise OrdersearchError(f"weights with non-finite values ({', '.join(sorted(bad)[:3])})")
    masks = state.get("masks")
    if not isinstance(masks, torch.Tensor) or masks.ndim != 5:
        raise OrdersearchError("not the weights of a multistage context model (no per-position masks)")
    n = schedule.patch
    if masks.shape[0] != n * n:
        raise OrdersearchError(f"weights for {masks.shape[0]} patch positions, the schedule has {n * n}")
    k = int(masks.shape[-1])
    want = torch.from_numpy(schedule.masks(k)).reshape(n * n, 1, 1, k, k) != 0
    if tuple(masks.shape[1:3]) != (1, 1):
        raise OrdersearchError(f"not the weights of a multistage context model (masks of shape {tuple(masks.shape)})")
    for shift in [(r, c) for r in range(n) for c in range(n)]:
        if torch.equal(torch.roll(masks.reshape(n, n, 1, 1, k, k), shift, dims=(0, 1)).reshape(want.shape) != 0, want):
            try:
                return translated_state(state, shift)
            except (KeyError, RuntimeError) as e:
                raise OrdersearchError(f"weights do not fit the schedule ({str(e)[:200]})") from None
    raise OrdersearchError("the weights belong to another schedule: what each position reads fits no translate of it")


def _edge_at_zero(state: dict, prefix: str, *_args) -> None:
    """Load hook: weights saved before the outside channel existed read nothing from it."""
    weight = state.get(prefix + "weight")
    if prefix + "edge" not in state and isinstance(weight, torch.Tensor) and weight.ndim == 5:
        state[prefix + "edge"] = weight.new_zeros(*weight.shape[:2], 1, *weight.shape[3:])


class MultistageContextModel(nn.Module):
    """Per-position masked convolutions + a shared entropy-parameters network."""

    def __init__(self, schedule: Schedule, channels: int, prior_channels: int = 0,
                 config: ModelConfig = ModelConfig()):
        super().__init__()
        if config.mixture < 1:
            raise OrdersearchError(f"mixture must be at least 1 component, got {config.mixture}")
        self.schedule = schedule
        self.channels = channels
        self.prior_channels = prior_channels
        self.config = config
        n, k = schedule.patch, config.kernel
        ctx = config.context_channels or 2 * channels
        masks = torch.from_numpy(schedule.masks(k)).float().reshape(n * n, 1, 1, k, k)
        self.register_buffer("masks", masks)
        # zero-initialized: training starts from the prior-only model, so context can only be learned as it
        # helps, not first as noise (more context never starts out scoring worse)
        self.weight = nn.Parameter(torch.zeros(n * n, ctx, channels, k, k))
        # what each position's convolution reads from the outside channel (see the module docstring); zero: the
        # paper's model, which a model trained before the channel existed is
        edge = torch.zeros(n * n, ctx, 1, k, k)
        if config.outside:
            self.edge = nn.Parameter(edge)
        else:
            self.register_buffer("edge", edge)
        self._register_load_state_dict_pre_hook(_edge_at_zero)
        self.bias = nn.Parameter(torch.zeros(n * n, ctx))
        out = 2 * channels if config.mixture == 1 else 3 * config.mixture * channels
        width = prior_channels + ctx
        hidden = config.hidden or max(32, width * 3 // 4)
        self.entropy_parameters = nn.Sequential(
            nn.Conv2d(width, hidden, 1), nn.LeakyReLU(),
            nn.Conv2d(hidden, hidden * 3 // 4, 1), nn.LeakyReLU(),
            nn.Conv2d(hidden * 3 // 4, out, 1),
        )
        self._positions = [(r, c) for r in range(n) for c in range(n)]

    # ---------------------------------------------------------------- pieces
    def _context_at(self, y_pad: torch.Tensor, index: int, shape: tuple[int, int],
                    at: tuple[int, int] | None = None,
                    params: tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]] | None = None) -> torch.Tensor:
        """Context features of position ``index`` on its sub-lattice (stride-n convolution).

        The sub-lattice starts at the position's own row and column, or at
        ``at``. ``params``: the per-position weights and biases, unbound once
        per pass (``_per_position``).
        """
        r, c = at or self._positions[index]
        n = self.schedule.patch
        h, wd = -(-(shape[0] - r) // n), -(-(shape[1] - c) // n)
        weights, biases = params or self._per_position()
        if not bool(self.masks[index].any()):  # nothing decoded around it (stage 0, the prior-only warm start)
            return biases[index].view(1, -1, 1, 1).expand(y_pad.shape[0], -1, h, wd)
        out = F.conv2d(y_pad[:, :, r:, c:], weights[index] * self.masks[index], biases[index], stride=n)
        return out[:, :, :h, :wd]

    def _per_position(self) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        """Per position (ctx, C + 1, k, k) weights (the outside channel last) and (ctx,) biases."""
        # one unbind per pass: indexing the stacked weight per position makes autograd allocate and fill a
        # gradient of the whole stack for every position (measured: about a third of a 4x4 training step)
        return self.reads().unbind(0), self.bias.unbind(0)

    def reads(self) -> torch.Tensor:
        """(n*n, ctx, C + 1, k, k): every position's context weights, the outside channel last."""
        return torch.cat([self.weight, self.edge], dim=2)

    def _entropy_params(self, prior: torch.Tensor | None, ctx: torch.Tensor) -> torch.Tensor:
        """Raw entropy parameters from [prior, context] features."""
        return self.entropy_parameters(ctx if prior is None else torch.cat([prior, ctx], dim=1))

    def _scaled(self, y: torch.Tensor, prior: torch.Tensor | None) -> torch.Tensor:
        """What the context convolutions read: y, or y in units of its prior scale."""
        return y / prior.clamp_min(SCALE_BOUND) if self.config.prior_scale and prior is not None else y

    def _likelihood(self, y: torch.Tensor, prior: torch.Tensor | None, ctx: torch.Tensor) -> torch.Tensor:
        return self._likelihood_from_params(y, prior, self._entropy_params(prior, ctx))

    def _likelihood_from_params(self, y: torch.Tensor, prior: torch.Tensor | None, params: torch.Tensor
                                ) -> torch.Tensor:
        unit = prior.clamp_min(SCALE_BOUND) if self.config.prior_scale and prior is not None else 1.0
        if self.config.mixture == 1:
            mean, raw = params.chunk(2, dim=1)
            return gaussian_likelihood(y, mean * unit, F.softplus(raw))
        n, _, h, w = params.shape
        means, raw, logits = params.view(n, 3, self.config.mixture, self.channels, h, w).unbind(1)
        unit = unit.unsqueeze(1) if torch.is_tensor(unit) else unit
        return gaussian_mixture_likelihood(y, means * unit, F.softplus(raw), logits)

    def _window(self, y: torch.Tensor, prior: torch.Tensor | None, border: int, outside: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(what the context convolutions read, padded by kernel // 2; the scored y; its prior) for ``forward``.

        What the convolutions read is y (or y / scale) with the outside
        channel after its C channels. ``border`` rows and columns of ``y``
        only serve as neighbours (see ``forward``); 0: the whole ``y`` is
        scored, the image ends at its edges (zeros around it, outside).
        ``outside`` (..., 1, H, W): where ``y`` itself lies past the image
        (zeros there), for a crop that reaches past it; None: nowhere. Works on
        any leading dimensions.
        """
        h = self.config.kernel // 2
        scaled = self._scaled(y, prior)
        if not border:
            return self.padded_with_outside(scaled, outside), y, prior
        if border < h or min(y.shape[-2:]) <= 2 * border:
            raise OrdersearchError(f"border {border}: needs at least {h} and something inside it")
        out = scaled.new_zeros(*scaled.shape[:-3], 1, *scaled.shape[-2:]) if outside is None else outside
        read = inner(torch.cat([scaled, out.to(scaled.dtype)], dim=-3), border - h)
        return read, inner(y, border), None if prior is None else inner(prior, border)

    def _check(self, y: torch.Tensor, prior: torch.Tensor | None) -> None:
        if y.ndim != 4 or y.shape[1] != self.channels:
            raise OrdersearchError(f"expected y of shape (N, {self.channels}, H, W), got {tuple(y.shape)}")
        n = self.schedule.patch
        if y.shape[2] < n or y.shape[3] < n:
            raise OrdersearchError(f"latent of {y.shape[2]}x{y.shape[3]} is smaller than the {n}x{n} patch")
        if (prior is None) != (self.prior_channels == 0):
            raise OrdersearchError(f"model expects {self.prior_channels} prior channels, got "
                                   f"{0 if prior is None else prior.shape[1]}")
        if self.config.prior_scale and self.prior_channels != self.channels:
            raise OrdersearchError(f"prior_scale needs one prior scale per latent channel ({self.channels}), "
                                   f"got {self.prior_channels} prior channels")
        if prior is not None and (prior.shape[1] != self.prior_channels or prior.shape[2:] != y.shape[2:]):
            raise OrdersearchError(f"prior of shape {tuple(prior.shape)} does not fit y of shape {tuple(y.shape)} "
                                   f"with {self.prior_channels} prior channels")

    def padded_with_outside(self, scaled: torch.Tensor, outside: torch.Tensor | None = None) -> torch.Tensor:
        """What the convolutions read of a whole image (..., C, H, W): it padded by kernel // 2 with zeros, and
        after its channels the outside channel (1 on the padding, and where ``outside`` says)."""
        h = self.config.kernel // 2
        padded = F.pad(scaled, (h, h, h, h))
        out = outside_map(*scaled.shape[-2:], h, padded)
        out = out.view(*[1] * (padded.dim() - 3), *out.shape[1:]).expand(*padded.shape[:-3], 1, *padded.shape[-2:])
        if outside is not None:
            out = torch.maximum(out, F.pad(outside.to(padded.dtype), (h, h, h, h)))
        return torch.cat([padded, out], dim=-3)

    def _decoded(self, y: torch.Tensor, prior: torch.Tensor | None, decoded: torch.Tensor) -> torch.Tensor:
        """What a decoder's convolutions read: the ``decoded`` latents (scaled), zeros elsewhere, padded, and the
        outside channel."""
        return self.padded_with_outside(self._scaled(y, prior) * decoded)

    # ---------------------------------------------------------------- the two paths
    def forward(self, y: torch.Tensor, prior: torch.Tensor | None = None, border: int = 0,
                scored: torch.Tensor | None = None, outside: torch.Tensor | None = None) -> torch.Tensor:
        """Likelihood of every element of integer-valued ``y`` (N, C, H, W): all stages in parallel.

        ``border`` (at least kernel // 2): the outer ``border`` rows and columns
        only serve as neighbours; the likelihoods of the inner part alone come
        back (equal to the inner part of the full result), and nothing is
        computed for the border: training crops need a third less work.
        ``scored``: the values whose likelihood is returned, if not ``y``
        itself (joint training: context from rounded y, likelihood of y + noise).
        ``outside`` (N, 1, H, W): 1 where ``y`` lies past the image (a training
        crop at the image border; see ``_window``).
        """
        self._check(y, prior)
        n = self.schedule.patch
        y_pad, y, prior = self._window(y, prior, border, outside)
        if scored is not None:
            y = inner(scored, border)
        ctx = y.new_zeros(y.shape[0], self.bias.shape[1], *y.shape[2:])
        params = self._per_position()
        for index, (r, c) in enumerate(self._positions):
            r, c = (r - border) % n, (c - border) % n  # the patch grid stays where the full tensor puts it
            if r < y.shape[2] and c < y.shape[3]:  # (an inner part smaller than the patch lacks some positions)
                ctx[:, :, r::n, c::n] = self._context_at(y_pad, index, y.shape[2:], (r, c), params)
        return self._likelihood(y, prior, ctx)

    def stagewise(self, y: torch.Tensor, prior: torch.Tensor | None = None) -> torch.Tensor:
        """The same likelihoods computed stage by stage from only the latents decoded so far."""
        self._check(y, prior)
        n = self.schedule.patch
        stage_map = torch.from_numpy(self.schedule.stage_map(*y.shape[2:])).to(y.device)
        out = torch.empty_like(y)
        for stage, group in enumerate(self.schedule.groups()):
            y_pad = self._decoded(y, prior, stage_map < stage)
            for r, c in group:
                index = r * n + c
                ctx = self._context_at(y_pad, index, y.shape[2:])
                sub_prior = None if prior is None else prior[:, :, r::n, c::n]
                out[:, :, r::n, c::n] = self._likelihood(y[:, :, r::n, c::n], sub_prior, ctx)
        return out

    def parameters_at_stage(self, y: torch.Tensor, prior: torch.Tensor | None, stage: int) -> torch.Tensor:
        """Raw entropy parameters of the latents decoded at ``step``, from what a decoder has then.

        Returns (N, out, H, W) with zeros at positions of other stages.
        """
        self._check(y, prior)
        n = self.schedule.patch
        stage_map = torch.from_numpy(self.schedule.stage_map(*y.shape[2:])).to(y.device)
        y_pad = self._decoded(y, prior, stage_map < stage)
        out_ch = self.entropy_parameters[-1].out_channels
        out = y.new_zeros(y.shape[0], out_ch, *y.shape[2:])
        for r, c in self.schedule.groups()[stage]:
            ctx = self._context_at(y_pad, r * n + c, y.shape[2:])
            out[:, :, r::n, c::n] = self._entropy_params(None if prior is None else prior[:, :, r::n, c::n], ctx)
        return out

    def gaussian_at_stage(self, y: torch.Tensor, prior: torch.Tensor | None, stage: int
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, scale) of the latents decoded at ``step`` from what a decoder has then (Gaussian models).

        Both are (N, C, H, W), zero at positions of other stages; the scale is
        already bounded below by the entropy model's ``SCALE_BOUND``.
        """
        if self.config.mixture != 1:
            raise OrdersearchError("only single-Gaussian context models (mixture=1) can be entropy coded")
        params = self.parameters_at_stage(y, prior, stage)
        mean, raw = params.chunk(2, dim=1)
        on = torch.from_numpy(self.schedule.stage_map(*y.shape[2:]) == stage).to(y.device)
        if self.config.prior_scale and prior is not None:
            mean = mean * prior.clamp_min(SCALE_BOUND)
        return mean * on, F.softplus(raw).clamp_min(SCALE_BOUND) * on
