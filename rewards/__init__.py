"""Reward, success and continue heads (``heads``), and the success definitions of the real tasks.

Only the success definitions are imported here, so the real-task suite stays free of torch.
"""

from __future__ import annotations

from imaginarium.rewards.success import SUCCESS_DEFINITIONS, SuccessDefinition, episode_success

__all__ = ["SUCCESS_DEFINITIONS", "SuccessDefinition", "episode_success"]
