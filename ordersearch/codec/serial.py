"""The serial autoregressive codec: the baseline a multistage schedule is measured against.

Same base codec, bitstream and z coding as :class:`~ordersearch.codec.multistage.MultistageCodec`;
y is one ANS stream decoded one latent position (all channels) per step in
raster order, H x W stages::

    for (i, j) in raster order:
        window = decoded latents around (i, j)      (K x K, causal taps only)
        (mean, scale) = SerialContextModel.gaussian_at(window, prior[:, i, j])
        y[:, i, j] = ANS-decode C values with the quantized Gaussian

Its header says patch 0 (no schedule grid), so a multistage codec refuses its
streams and it refuses theirs.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import OrdersearchError
from ..models.entropy import SCALE_BOUND
from ..models.serial import SerialContextModel
from ..models.hyperprior import BaseCodec
from .bitstream import decode_exactly, quantize
from .multistage import MultistageCodec


class SerialCodec(MultistageCodec):
    """Base codec + serial raster autoregressive context model."""

    def __init__(self, model: SerialContextModel, base: BaseCodec | None = None):
        if not isinstance(model, SerialContextModel):
            raise OrdersearchError("SerialCodec needs a SerialContextModel")
        super().__init__(model.schedule, model, base)
        self._weights = self.model.decoder_weights()

    @property
    def y_streams(self) -> int:
        return 1

    def decoding_stages(self, yh: int, yw: int) -> int:
        return yh * yw

    @property
    def _layout(self) -> tuple[int, np.ndarray]:
        return 0, np.zeros((0, 0), dtype=np.uint8)

    def _unit(self, prior: torch.Tensor) -> torch.Tensor | None:
        return prior.clamp_min(SCALE_BOUND) if self.model.config.prior_scale else None

    def _params(self, buf: torch.Tensor, prior: torch.Tensor, i: int, j: int) -> tuple[torch.Tensor, torch.Tensor]:
        k = self.model.config.kernel
        return self.model.gaussian_at(self._weights, buf[:, i:i + k, j:j + k], prior[:, i, j])

    def _encode_y(self, y: torch.Tensor, prior: torch.Tensor, y_rng: int) -> list[bytes]:
        import constriction

        unit = self._unit(prior)
        # the encoder knows every latent; the window reads only causal taps, which the decoder has too
        buf = self.model.padded_with_outside(y[0] if unit is None else y[0] / unit[0])
        means, scales = [], []
        for i in range(y.shape[2]):
            for j in range(y.shape[3]):
                mean, scale = self._params(buf, prior[0], i, j)
                means.append(mean)
                scales.append(scale)
        m, s = quantize(torch.stack(means).numpy().ravel(), torch.stack(scales).numpy().ravel())
        symbols = y[0].permute(1, 2, 0).numpy().ravel().astype(np.int32)  # raster positions, channels within
        coder = constriction.stream.stack.AnsCoder()
        coder.encode_reverse(symbols, constriction.stream.model.QuantizedGaussian(-y_rng, y_rng), m, s)
        return [coder.get_compressed().tobytes()]

    def _decode_y(self, streams: list[np.ndarray], prior: torch.Tensor, shape: tuple[int, int, int],
                  y_rng: int) -> torch.Tensor:
        import constriction

        yc, yh, yw = shape
        h = self.model.config.kernel // 2
        unit = self._unit(prior)
        buf = self.model.padded_with_outside(torch.zeros(yc, yh, yw, dtype=torch.float64))
        y = torch.zeros(1, yc, yh, yw, dtype=torch.float64)
        gauss = constriction.stream.model.QuantizedGaussian(-y_rng, y_rng)
        coder = constriction.stream.stack.AnsCoder(streams[0])
        for i in range(yh):
            for j in range(yw):
                mean, scale = self._params(buf, prior[0], i, j)
                m, s = quantize(mean.numpy(), scale.numpy())
                last = i == yh - 1 and j == yw - 1  # the stream must end exactly with the last latent
                v = torch.from_numpy((decode_exactly(coder, gauss, m, s) if last else
                                      coder.decode(gauss, m, s)).astype(np.float64))
                y[0, :, i, j] = v
                buf[:yc, i + h, j + h] = v if unit is None else v / unit[0, :, i, j]
        return y
