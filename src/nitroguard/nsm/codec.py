"""The NSM wire codec: the public namespace ``nitroguard.nsm.codec``.

A logic-free re-export of the client side (`_codec`) and the device side
(`_device_codec`), so ``from nitroguard.nsm import codec`` then ``codec.encode_request``
and ``from nitroguard.nsm.codec import parse_request`` both work.
"""

from nitroguard.nsm import _codec, _device_codec
from nitroguard.nsm._codec import *  # noqa: F403
from nitroguard.nsm._device_codec import *  # noqa: F403

__all__ = _codec.__all__ + _device_codec.__all__
