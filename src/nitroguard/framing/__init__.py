"""Length-prefixed framing, sans-IO (the wire format of every nitroguard service).

A frame is a u32 big-endian payload length followed by the payload. The codec
never does I/O; `nitroguard.transport` drives it over sockets.

Public API::

    from nitroguard.framing import FrameDecoder, encode_frame, MAX_FRAME_SIZE
    from nitroguard.framing import Frame, ConnectionClosed, NEED_DATA

    dec = FrameDecoder(max_frame_size=MAX_FRAME_SIZE)
    dec.receive_data(chunk)            # b"" means EOF
    while (ev := dec.next_event()) is not NEED_DATA:
        if isinstance(ev, ConnectionClosed):
            break
        handle(ev.payload)

Errors: an oversized length prefix raises `RemoteProtocolError` with reason
``frame_too_large`` before any payload is buffered; EOF inside a frame raises
`RemoteProtocolError` with reason ``truncated``.
"""

from nitroguard.framing._codec import (
    HEADER_SIZE as HEADER_SIZE,
)
from nitroguard.framing._codec import (
    MAX_FRAME_SIZE as MAX_FRAME_SIZE,
)
from nitroguard.framing._codec import (
    NEED_DATA as NEED_DATA,
)
from nitroguard.framing._codec import (
    ConnectionClosed as ConnectionClosed,
)
from nitroguard.framing._codec import (
    Frame as Frame,
)
from nitroguard.framing._codec import (
    FrameDecoder as FrameDecoder,
)
from nitroguard.framing._codec import (
    FrameEvent as FrameEvent,
)
from nitroguard.framing._codec import (
    encode_frame as encode_frame,
)

__all__ = [
    "HEADER_SIZE",
    "MAX_FRAME_SIZE",
    "NEED_DATA",
    "ConnectionClosed",
    "Frame",
    "FrameDecoder",
    "FrameEvent",
    "encode_frame",
]
