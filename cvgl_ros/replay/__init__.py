"""Bag replay through the real nodes: a player with /clock, a recorder, lockstep evaluation."""
from cvgl_ros.replay.session import ReplaySummary, replay_bag

__all__ = ["ReplaySummary", "replay_bag"]
