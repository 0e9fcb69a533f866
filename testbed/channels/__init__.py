"""Radio channel models: geometry (distance, elevation) → link quality (SNR, rate, loss).

Formulas, one module each: free_space (ITU-R P.525, log-distance), a2g (Al-Hourani
probabilistic LoS), v2x (3GPP TR 37.885 vehicular), satellite (link budget with
P.676/P.618-style losses), rate (Shannon with a gap, MCS tables, logistic PER).  config
holds the validated specs, model builds channels from them.
"""

from testbed.channels.config import ChannelSpec
from testbed.channels.model import Channel, LinkQuality, build_channel

__all__ = ["Channel", "ChannelSpec", "LinkQuality", "build_channel"]
