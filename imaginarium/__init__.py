"""Imaginarium: learned world models of real environments, served as Gymnasium environments.

Data flows one way: real env -> dataset -> world model -> imagined env -> agents / evaluation -> reports.
"""

from __future__ import annotations

from imaginarium.errors import ImaginariumError

__version__ = "0.1.0"

__all__ = ["ImaginariumError", "__version__"]
