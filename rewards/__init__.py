"""Reward, success and continue heads, and the success definitions of the real tasks."""

from __future__ import annotations

from imaginarium.rewards.success import SUCCESS_DEFINITIONS, SuccessDefinition, episode_success

__all__ = ["SUCCESS_DEFINITIONS", "SuccessDefinition", "episode_success"]
