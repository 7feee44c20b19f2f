"""Real compression with a schedule: bitstreams made and read by the bundled base codec + a context model.

==================  ========================================================
``MultistageCodec``  one ANS stream per decoding stage of the schedule
``SerialCodec``      the serial raster baseline: H x W stages, one stream
``bitstream``        the format: header, stream table, CRC, parameter grid
``codec_file``       a fine-tuned codec in one file (``save_codec`` / ``load_codec``)
``rd``               real-file bpp and PSNR on photos, BD-rate with a bootstrap interval
==================  ========================================================

A codec is built from a schedule and its trained weights
(``MultistageCodec.from_weights``, a weights file's content;
``from_state``, a bare state dict); it never trains and never reads an
evaluation store (``run.stored_weights`` finds weights for a schedule file;
``evaluation.fine_tune`` makes the codec files).
"""

from .bitstream import CodecError
from .codec_file import load_codec, save_codec
from .multistage import Encoded, MultistageCodec
from .rd import bd_rate, bd_rate_table, measure
from .serial import SerialCodec

__all__ = ["CodecError", "Encoded", "MultistageCodec", "SerialCodec", "bd_rate", "bd_rate_table", "load_codec",
           "measure", "save_codec"]
