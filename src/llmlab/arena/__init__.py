"""The arena: two anonymous answers to one prompt, a vote, and a leaderboard rated as Chatbot Arena
rates it (``rating.py``). The web UI's arena page is built on this."""

from .rating import Standing, bootstrap, bradley_terry, leaderboard, online_elo, rank

__all__ = ["Standing", "bootstrap", "bradley_terry", "leaderboard", "online_elo", "rank"]
