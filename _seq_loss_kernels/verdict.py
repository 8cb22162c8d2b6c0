"""The verdict word that a backend's ``prepare_batch_first`` writes for
``CtcLossModule``: every check of the module's and the loss's inputs as one bit, so that
the call reads one word (one host read on a GPU) and takes the fused path only when no
bit says otherwise. Any fault bit sends the call to the general path, whose ATen checks
name the fault, so messages and warnings are the same on every backend."""
from __future__ import annotations

GAP = 1  # a negative (padding) id before a label id, with labels_len=None
LABELS_LEN = 2  # labels_len < 0 or > U
LOGITS_LEN = 4  # logits_len < 0 or > T
BAD_ID = 8  # a label id outside the vocabulary, or the blank
NOT_PROBABILITIES = 16  # some example's first frame has a negative (or NaN) score
INFEASIBLE = 32  # T_b < U_b + adjacent repeats: no alignment exists
# ctc_loss's own check of blank-augmented labels (check_augmented) adds:
EVEN_LENGTH = 64  # labels_len even: not 2U + 1
NOT_AUGMENTED = 128  # a non-blank at an even position, or the blank at an odd one


def fault_bits(warn_infeasible: bool) -> int:
    """The bits that send a call to the general path (NOT_PROBABILITIES aside: that one
    must be set)."""
    return (GAP | LABELS_LEN | LOGITS_LEN | BAD_ID | EVEN_LENGTH | NOT_AUGMENTED
            | (INFEASIBLE if warn_infeasible else 0))


def verdict_passes(bits: int, warn_infeasible: bool) -> bool:
    """Whether the word lets the call take the fused path: no fault, an infeasible
    example only where the loss would not warn of it, and a first frame that does not
    look like probabilities."""
    return not bits & fault_bits(warn_infeasible) and bool(bits & NOT_PROBABILITIES)
