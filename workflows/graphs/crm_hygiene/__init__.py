from .graph import SPEC

__all__ = ["SPEC"]
