"""Recommenders: the semantic view, the collaborative view and the reference scorers."""
from .base import EmbeddingRecommender, Recommender

__all__ = ["EmbeddingRecommender", "Recommender"]
