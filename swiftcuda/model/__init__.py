"""The SwiftNet model: trunk, light-aggregation encoder, heads, decoder."""

from swiftcuda.model.config import CONFIGS, SwiftNetConfig, get_config
from swiftcuda.model.swiftnet import QueryEncoding, SwiftNet

__all__ = ["CONFIGS", "QueryEncoding", "SwiftNet", "SwiftNetConfig", "get_config"]
