"""Real compression with a schedule: bitstreams made and read by the bundled base codec + a context model.

==================  ========================================================
``MultistageCodec``  one ANS stream per decoding stage of the schedule
``SerialCodec``      the serial raster baseline: H x W stages, one stream
``bitstream``        the format: header, stream table, CRC, parameter grid
==================  ========================================================

A codec is built from a schedule and its trained weights
(``MultistageCodec.from_state``); it never trains and never reads an
evaluation store (``run.stored_weights`` finds weights for a schedule file).
"""

from .bitstream import CodecError
from .multistage import Encoded, MultistageCodec
from .serial import SerialCodec

__all__ = ["CodecError", "Encoded", "MultistageCodec", "SerialCodec"]
