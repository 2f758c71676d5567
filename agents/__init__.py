"""Agents that learn or act in the imagined environment: Dreamer-style actor-critic, SB3 glue, policies."""
