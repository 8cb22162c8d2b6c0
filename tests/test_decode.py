"""greedy_decode: best path, repeats collapsed, blanks dropped, batched."""
import pytest
import torch
from hypothesis import given, settings, strategies as st

import seq_loss_util as S


def frames_to_logits(frames, classes):
    return torch.nn.functional.one_hot(torch.as_tensor(frames, dtype=torch.long), classes).float() * 5.0


def test_known_paths():
    logits = frames_to_logits([[1, 1, 0, 1, 2, 2, 0], [3, 0, 3, 3, 0, 0, 0],
                               [0, 0, 0, 0, 0, 0, 0]], 4)
    assert S.greedy_decode(logits).tolist() == [[1, 1, 2], [3, 3, -1], [-1, -1, -1]]
    lengths = torch.tensor([4, 1, 7])
    assert S.greedy_decode(logits, lengths).tolist() == [[1, 1], [3, -1], [-1, -1]]


def test_blank_elsewhere():
    logits = frames_to_logits([[0, 0, 3, 0, 1, 1, 3]], 4)
    assert S.greedy_decode(logits, blank=3).tolist() == [[0, 0, 1]]


def test_empty_shapes():
    assert S.greedy_decode(torch.zeros(0, 5, 3)).shape == (0, 0)
    assert S.greedy_decode(torch.zeros(2, 0, 3)).shape == (2, 0)


def test_errors():
    with pytest.raises(ValueError, match=r"blank must be a class id in \[0, 3\]"):
        S.greedy_decode(torch.zeros(1, 2, 4), blank=4)
    with pytest.raises(ValueError, match="time-first"):
        S.greedy_decode(torch.zeros(7, 2, 4), torch.tensor([7, 7]))


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_equals_decoding_one_example_at_a_time(data):
    batch, frames, classes = (data.draw(st.integers(1, 5)), data.draw(st.integers(0, 30)),
                              data.draw(st.integers(1, 6)))
    blank = data.draw(st.integers(0, classes - 1))
    best = torch.tensor(data.draw(st.lists(st.lists(st.integers(0, classes - 1), min_size=frames,
                                                    max_size=frames), min_size=batch,
                                           max_size=batch))).reshape(batch, frames)
    lengths = torch.tensor(data.draw(st.lists(st.integers(0, frames), min_size=batch,
                                              max_size=batch)))
    got = S.greedy_decode(frames_to_logits(best, classes), lengths, blank=blank)
    for b in range(batch):
        want, previous = [], None
        for c in best[b, : lengths[b]].tolist():
            if c != previous and c != blank:
                want.append(c)
            previous = c
        row = got[b]
        assert row[row >= 0].tolist() == want
        assert (row[len(want):] == -1).all()


def test_transcript_feeds_back_as_labels():
    torch.manual_seed(0)
    logits = torch.randn(3, 20, 6)
    decoded = S.greedy_decode(logits)
    loss = S.CtcLossModule(reduction="none")(logits, decoded)
    assert torch.isfinite(loss).all()
