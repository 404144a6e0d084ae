"""Graders turn a response into per-criterion outcomes. Deterministic checks live here now;
judge models and grounding plug in through the same registry (`CHECKS`)."""
