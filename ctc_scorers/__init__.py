"""Prefix scorers for ctc_decoder's beam search: the interface (:mod:`.base`) and one
scorer per file. See :mod:`ctc_scorers.base` for how the searches call them."""
from .base import Scorer, TokenScorer, WordEvent, WordScorer
from .hotwords import HotwordScorer
from .token_lm import TokenLMScorer
from .unknown_words import PARTIAL_OOV_CHARS, UnknownWordScorer
from .word_bonus import WordBonusScorer
from .word_lm import WordLMScorer

__all__ = ["Scorer", "WordScorer", "TokenScorer", "WordEvent", "WordLMScorer",
           "WordBonusScorer", "HotwordScorer", "UnknownWordScorer", "TokenLMScorer",
           "PARTIAL_OOV_CHARS"]
