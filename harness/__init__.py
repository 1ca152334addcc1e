"""Benchmark harness for keypoint-aware animal re-identification."""
from .method import METHODS, Method, register_method

__all__ = ["METHODS", "Method", "register_method"]
__version__ = "0.1.0"
