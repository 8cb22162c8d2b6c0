"""A mutation run: does the suite notice small, deliberate bugs?

Each mutant below is a one-line change to a copy of the project (this checkout stays
as it is): a comparison loosened, a guard or a clean-up dropped, a block size halved.
For each, the tests that cover that place run in the copy; the mutant is *caught* when
at least one of them fails, and *survives* when all pass. Every mutant listed here
must be caught: a survivor means a rule that no test checks.

    python tests/mutants.py            # every mutant
    python tests/mutants.py -k viterbi # those whose name contains "viterbi"
    python tests/mutants.py --list

Exit status 0 when every mutant run was caught, 1 when any survived. See tests/README.md.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KNOWN = "tests/test_known_answers.py"


@dataclass
class Mutant:
    name: str
    path: str  # relative to the project's root
    old: str  # must occur exactly once in the file
    new: str
    tests: list  # pytest arguments, relative to the project's root
    env: dict = field(default_factory=dict)  # e.g. the backend the mutant lives in


PYTORCH = {"SEQ_LOSS_UTIL_BACKEND": "pytorch"}
TRITON = {"SEQ_LOSS_UTIL_BACKEND": "triton"}  # on CPU tensors: the root conftest interprets
FUZZ = "tests/test_fuzz_faults.py"
ARPA = "tests/test_ngram_lm.py"
RULES = "tests/test_decoder_rules.py"
KERNEL_OFF = {"SEQ_LOSS_UTIL_KERNEL": "0"}  # the tensor search
UNK = "tests/test_unknown_words.py"
TOKEN_LM = "tests/test_token_lm.py"
WILDCARD = "tests/test_wildcard.py"
TIES = [KNOWN, "-k", "tie or uniform or repeated or one_hot or advance_beats"]

MUTANTS = [
    # Viterbi's documented tie rules, in each of the three backends.
    Mutant("c viterbi: ties advance instead of stay", "_seq_loss_kernels/cpu.c",
           "if (s >= 1 && prev[s - 1] > best)", "if (s >= 1 && prev[s - 1] >= best)",
           TIES),
    Mutant("c viterbi: ties skip instead of advance", "_seq_loss_kernels/cpu.c",
           "l[s] != l[s - 2] && prev[s - 2] > best", "l[s] != l[s - 2] && prev[s - 2] >= best",
           TIES),
    Mutant("c viterbi: the state before the last wins a final tie", "_seq_loss_kernels/cpu.c",
           "if (Lb >= 2 && prev[Lb - 2] > prev[Lb - 1])",
           "if (Lb >= 2 && prev[Lb - 2] >= prev[Lb - 1])",
           TIES),
    Mutant("pytorch viterbi: ties prefer the skip", "seq_loss_util.py",
           "best, choice = candidates.max(dim=1)  # (B, L); the first maximum on ties",
           "best, choice = candidates.flip(1).max(dim=1); choice = 2 - choice",
           TIES),
    Mutant("pytorch viterbi: the state before the last wins a final tie", "seq_loss_util.py",
           "use_before = (labels_len >= 2) & (before_score > end_score)",
           "use_before = (labels_len >= 2) & (before_score >= end_score)",
           TIES),
    Mutant("triton viterbi: ties advance instead of stay", "_seq_loss_kernels/triton_ctc.py",
           "take = advance > best  # strict: ties keep stay", "take = advance >= best",
           TIES),
    Mutant("triton viterbi: ties skip instead of advance", "_seq_loss_kernels/triton_ctc.py",
           "take = skip > best", "take = skip >= best",
           TIES),
    Mutant("triton viterbi: the state before the last wins a final tie",
           "_seq_loss_kernels/triton_ctc.py",
           "use_before = (n_states >= 2) & (before_score > end_score)",
           "use_before = (n_states >= 2) & (before_score >= end_score)",
           TIES),
    # The kernel cache's trust rules.
    Mutant("cache: load the checked library by its name, not its descriptor",
           "_seq_loss_kernels/cpu.py",
           'fd_path = f"/proc/self/fd/{fd}"', "fd_path = str(path)",
           ["tests/test_kernel_loader.py", "-k", "swapped"]),
    Mutant("cache: a folder others can write is trusted", "_seq_loss_kernels/cpu.py",
           "if st.st_mode & 0o022:", "if st.st_mode & 0o000:",
           ["tests/test_kernel_loader.py", "-k", "others_can_write"]),
    # Empty targets.
    Mutant("mean reduction divides by a zero target length", "seq_loss_util.py",
           "return (loss / target_len.clamp(min=1).to(loss.dtype)).mean()",
           "return (loss / target_len.to(loss.dtype)).mean()",
           [KNOWN, "-k", "empty_targets"]),
    # Label padding in the backward.
    Mutant("backward keeps the label padding (-100)", "seq_loss_util.py",
           "        labels = _clean_labels(labels, labels_len)\n"
           "        grad_loss = grad_loss.to(log_probs.dtype)",
           "        labels = labels.long()\n"
           "        grad_loss = grad_loss.to(log_probs.dtype)",
           [KNOWN, "-k", "label_padding"]),
    # The PyTorch backend's normaliser: order-dependent again.
    Mutant("pytorch gradient normalised by logsumexp (depends on the padded width)",
           "seq_loss_util.py",
           "total = (log_gamma - m).exp().cumsum(dim=2)[:, :, -1:]  # (B, T', 1)",
           "total = (log_gamma - m).exp().sum(dim=2, keepdim=True)",
           ["seq_loss_util_test.py", "-k", "padding_wider"], PYTORCH),
    # Triton's state blocks.
    Mutant("triton state block halved", "_seq_loss_kernels/triton_ctc.py",
           "return max(16, triton.next_power_of_2(max(width, 1)))",
           "return max(16, triton.next_power_of_2(max(width, 1)) // 2)",
           ["tests/test_triton.py", "-k", "every_state_block"]),
    Mutant("triton forward skips between repeated labels", "_seq_loss_kernels/triton_ctc.py",
           "tl.where(may_skip, s - 2, BLOCK_S - 1)",
           "tl.where(valid & (s >= 2) & (s % 2 == 1), s - 2, BLOCK_S - 1)",
           ["tests/test_triton.py", "-k", "every_state_block or native"]),
    Mutant("triton beta skips between repeated labels", "_seq_loss_kernels/triton_ctc.py",
           "may_skip_out = valid & (s % 2 == 1) & (s + 2 < n_states) & (label != label_p2)  # s -> s + 2",
           "may_skip_out = valid & (s % 2 == 1) & (s + 2 < n_states)",
           ["tests/test_triton.py", "-k", "every_state_block or native"]),
    Mutant("triton gradient: every state starts its own class segment",
           "_seq_loss_kernels/triton_ctc.py",
           "seg_start = ((k == 0) | (cls_sorted != cls_before)).to(tl.int32)",
           "seg_start = (k >= 0).to(tl.int32)",
           ["tests/test_triton.py", "-k", "every_state_block or native"]),
    Mutant("triton gradient: a state that cannot emit gets -inf - -inf", "_seq_loss_kernels/triton_ctc.py",
           "emits = valid & (emit > float(\"-inf\"))", "emits = valid",
           [KNOWN, "-k", "no_state_can_emit"]),
    # A wrong C gradient: alignment_targets must notice (they are built from it).
    Mutant("c gradient: posteriors scaled by e^-0.001", "_seq_loss_kernels/cpu.c",
           "const REAL w = sc / sum;", "const REAL w = sc / sum * (REAL)0.999000499833375;",
           ["tests/test_alignment.py", "-k", "targets"]),
    # Precision: the per-frame shifts summed in float32 again.
    Mutant("c forward sums the shifts in float32", "_seq_loss_kernels/cpu.c",
           "double total = 0;", "float total = 0;",
           ["tests/test_misuse.py", "-k", "float16"]),
    Mutant("c forward skips between repeated labels", "_seq_loss_kernels/cpu.c",
           "skip_add[s] = (s < Lb && s >= 2 && (s & 1) && l[s] != l[s - 2]) ? 0 : NEG_INF;",
           "skip_add[s] = (s < Lb && s >= 2 && (s & 1)) ? 0 : NEG_INF;",
           ["tests/test_exact.py", "-k", "equals_native"]),
    # ctc_loss's checks in C, the C log-softmax, the third Triton design.
    Mutant("c check: the blank at an odd position passes", "_seq_loss_kernels/cpu.c",
           "if ((id == blank) != (j % 2 == 0)) bits |= V_NOT_AUGMENTED;", "(void)blank;",
           ["tests/test_cpu_step.py", "-k", "fault"]),
    Mutant("c check: adjacent repeats not counted", "_seq_loss_kernels/cpu.c",
           "if (j >= 2 && (j & 1) && id == row[(j - 2) * slu]) ++repeats;", "(void)repeats;",
           ["tests/test_cpu_step.py", "-k", "one_kernel_call"]),
    Mutant("c log_softmax: a +inf logit's row is not all NaN", "_seq_loss_kernels/cpu.c",
           "if (nan || m == (REAL)INFINITY || m == -(REAL)INFINITY) {",
           "if (nan || m == -(REAL)INFINITY) {",
           ["tests/test_cpu_step.py", "-k", "log_softmax"]),
    Mutant("c log_softmax (few classes): a +inf logit's row is not all NaN",
           "_seq_loss_kernels/cpu.c",
           "nan[k] |= m[k] == (REAL)INFINITY || m[k] == NEG_INF;", "nan[k] |= m[k] == NEG_INF;",
           ["tests/test_cpu_step.py", "-k", "log_softmax"]),
    Mutant("c one-call forward skips ctc_loss's checks", "_seq_loss_kernels/cpu.c",
           "    if (check) {\n        FN(ctc_check_augmented)",
           "    if (0) {\n        FN(ctc_check_augmented)",
           ["tests/test_cpu_step.py", "-k", "fault"]),
    Mutant("c gradient: the blank's summed posterior off by half", "_seq_loss_kernels/cpu.c",
           "soft[l[0]] -= even * w;", "soft[l[0]] -= even * w * (REAL)0.5;",
           ["tests/test_cpu_step.py", "-k", "any_labels"]),
    Mutant("c gradient: any labels taken as blank at every even state",
           "_seq_loss_kernels/cpu.c",
           "blank_even &= l[s] == l[0];", "blank_even &= 1;",
           ["tests/test_cpu_step.py", "-k", "any_labels"]),
    Mutant("c stream commits one frame past where the beams agree",
           "_seq_loss_kernels/ctc_beam.c",
           "if (n == 1) { agreed = t - 1; slot = set[0]; }",
           "if (n == 1) { agreed = t; slot = set[0]; }",
           ["tests/test_stream.py", "-k", "both_searches"]),
    Mutant("c stream's horizon drops no beam", "_seq_loss_kernels/ctc_beam.c",
           "if (set[k] != set[0]) ex->cur[k].pb", "if (0) ex->cur[k].pb",
           ["tests/test_stream.py", "-k", "horizon"]),
    Mutant("c stream never walks its history for a commit", "_seq_loss_kernels/ctc_beam.c",
           "if (ex->frames - ex->tried < every && (horizon <= 0 || held <= horizon)) return 0;",
           "return 0;",
           ["tests/test_stream.py", "-k", "horizon"]),
    Mutant("c stream walks the history of an example with no beam left",
           "_seq_loss_kernels/ctc_beam.c",
           "    if (ex->live <= 0) {\n        ex->best_len = ex->best_upto = 0;",
           "    if (0) {\n        ex->best_len = ex->best_upto = 0;",
           ["tests/test_stream.py", "-k", "no_beam or all_die"]),
    Mutant("c stream: threads sharing a chunk skip every other example",
           "_seq_loss_kernels/ctc_beam.c", "b0 + __atomic_fetch_add(next, 1, __ATOMIC_RELAXED)",
           "b0 + __atomic_fetch_add(next, 2, __ATOMIC_RELAXED)",
           ["tests/test_stream.py", "-k", "threads"]),
    Mutant("c log_softmax (narrow rows) rounds at the max's magnitude",
           "_seq_loss_kernels/cpu.c",
           "lp[r * C + c] = (buf[c * 16 + k] - m[k]) - lg[k];",
           "lp[r * C + c] = buf[c * 16 + k] - (m[k] + lg[k]);",
           ["tests/test_ctc_decoder.py", "-k", "log_softmax_from"]),
    Mutant("c log_softmax (wide rows) rounds at the max's magnitude",
           "_seq_loss_kernels/cpu.c", "out[c] = (row[c] - m) - lg;", "out[c] = row[c] - (m + lg);",
           ["tests/test_ctc_decoder.py", "-k", "log_softmax_from"]),
    Mutant("c log_softmax for the searches names the frame after the bad one",
           "_seq_loss_kernels/cpu.c", "if (bad[b * T + t]) first = b * T + t;",
           "if (bad[b * T + t]) first = b * T + t + 1;",
           ["tests/test_ctc_decoder.py", "-k", "log_softmax"]),
    Mutant("the searches' log_softmax names the last thread's bad frame",
           "_seq_loss_kernels/cpu.py", "divmod(min(found), frames)", "divmod(max(found), frames)",
           ["tests/test_ctc_decoder.py", "-k", "log_softmax"]),
    Mutant("the searches' log_softmax reads a slice's later examples contiguously",
           "_seq_loss_kernels/cpu.py", "first = run(x.data_ptr() + b0 * x.stride(0) * size_of,",
           "first = run(x.data_ptr() + b0 * frames * classes * size_of,",
           ["tests/test_ctc_decoder.py", "-k", "log_softmax"]),
    Mutant("stream chunk names its last bad frame", "_seq_loss_kernels/ctc_beam.c",
           "    for (int64_t b = 0; b < B; ++b)\n        for (int64_t t = 0; t < frames[b]; ++t)",
           "    for (int64_t b = B - 1; b >= 0; --b)\n        for (int64_t t = 0; t < frames[b]; ++t)",
           ["tests/test_stream.py", "-k", "bad_chunk_on_threads"]),
    Mutant("stream chunk with a bad frame is searched all the same",
           "_seq_loss_kernels/ctc_beam.c", "if (bad[b * T + t]) return 1 + b * T + t;",
           "if (bad[b * T + t]) return 1 + b * T + t + 0 * FN(ctc_beam_stream_feed)(stream, "
           "lp, T, frames, horizon, 0, B, &shared[2]);",
           ["tests/test_stream.py", "-k", "bad_chunk_on_threads"]),
    Mutant("stream chunk: a thread coming late returns no verdict",
           "_seq_loss_kernels/ctc_beam.c",
           "verdict = __atomic_load_n(&shared[6], __ATOMIC_ACQUIRE);", "verdict = 0;",
           ["tests/test_stream.py", "-k", "coming_after"]),
    Mutant("stream chunk: a thread coming late reads the chunk again",
           "_seq_loss_kernels/ctc_beam.c",
           "if (__atomic_fetch_add(&shared[4], 1, __ATOMIC_ACQ_REL) & BEAM_CHUNK_DONE) {",
           "if (__atomic_fetch_add(&shared[4], 1, __ATOMIC_ACQ_REL) & 0) {",
           ["tests/test_stream.py", "-k", "coming_after"]),
    Mutant("stream pool: a chunk's counters left from the last chunk",
           "_seq_loss_kernels/ctc_beam.c",
           "    memset(beam_pool.shared, 0, sizeof(beam_pool.shared));\n", "",
           ["tests/test_stream.py", "-k", "two_threads or two_python_threads"]),
    Mutant("stream pool: two threads asked, the chunk runs alone",
           "_seq_loss_kernels/ctc_beam.c",
           "    if (threads <= 1) return job->run(job, alone);",
           "    if (threads <= 2) return job->run(job, alone);",
           ["tests/test_stream.py", "-k", "two_threads"]),
    Mutant("stream pool: a forked child counts the parent's workers as its own",
           "_seq_loss_kernels/ctc_beam.c",
           "    beam_pool.workers = beam_pool.sleepers = beam_pool.busy = 0;",
           "    beam_pool.sleepers = beam_pool.busy = 0;",
           ["tests/test_kernel_loader.py", "-k", "streams_on_two_threads"]),
    Mutant("stream chunk reads past a chunk's frames", "_seq_loss_kernels/ctc_beam.c",
           "if (frames[b] < 0 || frames[b] > T || (finished[b] && frames[b] > 0))",
           "if (frames[b] < 0 || frames[b] > T + 1 || (finished[b] && frames[b] > 0))",
           ["tests/test_stream.py", "-k", "clear_errors"]),
    Mutant("stream chunk feeds a finished example", "_seq_loss_kernels/ctc_beam.c",
           "if (frames[b] < 0 || frames[b] > T || (finished[b] && frames[b] > 0))",
           "if (frames[b] < 0 || frames[b] > T)",
           ["tests/test_stream.py", "-k", "clear_errors"]),
    Mutant("stream spelling closes an empty word", "_seq_loss_kernels/ctc_beam.c",
           "if (starts[c] && letters) split = 1, letters = 0;",
           "if (starts[c]) split = 1, letters = 0;",
           ["tests/test_stream.py", "-k", "spells"]),
    Mutant("stream spelling joins two words into one", "_seq_loss_kernels/ctc_beam.c",
           "if (split) out[written++] = 0, split = 0;", "if (split) split = 0;",
           ["tests/test_stream.py", "-k", "spells"]),
    Mutant("c stream shows an example only once", "_seq_loss_kernels/ctc_beam.c",
           "return ex->frames != ex->shown;", "return ex->shown < 0;",
           ["tests/test_stream.py", "-k", "asked"]),
    Mutant("c stream reset leaves its example shown", "_seq_loss_kernels/ctc_beam.c",
           "    ex->shown = -1;\n", "\n",
           ["tests/test_stream.py", "-k", "restarted_example_is_walked"]),
    Mutant("c stream's best path joins the last one at any slot",
           "_seq_loss_kernels/ctc_beam.c",
           "if (t < kept && ex->best_slot[t] == slot) break;", "if (t < kept) break;",
           ["tests/test_stream.py", "-k", "overtakes"]),
    Mutant("c stream's best path keeps a committed token", "_seq_loss_kernels/ctc_beam.c",
           "while (first < ex->best_len && ex->best_time[first] < ex->base) ++first;",
           "while (first < ex->best_len && ex->best_time[first] < ex->base - 1) ++first;",
           ["tests/test_stream.py", "-k", "both_searches"]),
    Mutant("c stream walks the best path only after long chunks",
           "_seq_loss_kernels/ctc_beam.c",
           "if (!failed && frames[b] > 0) failed = FN(example_best)(ex, K);",
           "if (!failed && frames[b] > 8) failed = FN(example_best)(ex, K);",
           ["tests/test_stream.py", "-k", "both_searches"]),
    Mutant("c stream's history moved back a frame off", "_seq_loss_kernels/ctc_beam.c",
           "memmove(ex->hist_mem, ex->hist, sizeof(beam_link) * held * K);",
           "memmove(ex->hist_mem, ex->hist + K, sizeof(beam_link) * (held - 1) * K);",
           ["tests/test_stream.py", "-k", "both_searches"]),
    Mutant("c stream sends every partial whole", "_seq_loss_kernels/ctc_beam.c",
           "    return k;\n}", "    return 0 * k;\n}",
           ["tests/test_stream.py", "-k", "only_from_where"]),
    Mutant("c stream's partial keeps a token where the paths part",
           "_seq_loss_kernels/ctc_beam.c",
           "    return k;\n}", "    return k + (k < now && k < then);\n}",
           ["tests/test_stream.py", "-k", "asked or only_from_where or overtakes"]),
    Mutant("stream partial interrupted keeps what the kernel sent", "ctc_stream.py",
           "                    self._c.unseen()  # the kernel sends every whole path next time",
           "                    pass",
           ["tests/test_stream.py", "-k", "interrupted"]),
    Mutant("stream partial cuts any text at its byte offsets", "ctc_stream.py",
           "ascii_text = whole is not None and whole.isascii()",
           "ascii_text = whole is not None",
           ["tests/test_stream.py", "-k", "any_script"]),
    Mutant("stream partial hands out the tokens it keeps", "ctc_stream.py",
           "(tokens[:], times[:], words[:], text, final)",
           "(tokens, times[:], words[:], text, final)",
           ["tests/test_stream.py", "-k", "asked"]),
    Mutant("stream partial hands out the words it keeps", "ctc_stream.py",
           "(tokens[:], times[:], words[:], text, final)",
           "(tokens[:], times[:], words, text, final)",
           ["tests/test_stream.py", "-k", "asked"]),
    Mutant("tensor stream's reset keeps the old utterance's tokens", "ctc_stream.py",
           "self._start_row[b] = self._tensors.rows()", "self._start_row[b] = 0",
           ["tests/test_stream.py", "-k", "restarted"]),
    Mutant("triton beta stores the odd frames of an iteration a row early",
           "_seq_loss_kernels/triton_ctc.py",
           "tl.store(row + (s - j * L), log_beta, mask=s < L)",
           "tl.store(row + (s - (j + j % 2) * L), log_beta, mask=s < L)",
           ["tests/test_triton.py", "-k", "native"]),
    Mutant("triton forward drops the rescale's shift", "_seq_loss_kernels/triton_ctc.py",
           "    total += shift.to(tl.float64)\n                tl.store(row + (s + j * L)",
           "    total += 0.0 * shift.to(tl.float64)\n                tl.store(row + (s + j * L)",
           ["tests/test_triton.py", "-k", "native"]),
    Mutant("triton forward drops the rescale's shift in the last frames",
           "_seq_loss_kernels/triton_ctc.py",
           "    total += shift.to(tl.float64)\n                tl.store(row + s, log_alpha",
           "    total += 0.0 * shift.to(tl.float64)\n                tl.store(row + s, log_alpha",
           ["tests/test_triton.py", "-k", "native"]),
    Mutant("triton forward leaves out its last frame after the unrolled ones",
           "_seq_loss_kernels/triton_ctc.py",
           "if n_main + j < n_frames:", "if n_main + j + 1 < n_frames:",
           ["tests/test_triton.py", "-k", "native"]),
    Mutant("triton beta leaves out its last frame after the unrolled ones",
           "_seq_loss_kernels/triton_ctc.py",
           "if n_main + 1 + j < n_run:", "if n_main + 2 + j < n_run:",
           ["tests/test_triton.py", "-k", "native"]),
    Mutant("triton: a closed skip read from the tile's second-last state",
           "_seq_loss_kernels/triton_ctc.py",
           "tl.where(may_skip, s - 2, BLOCK_S - 1)", "tl.where(may_skip, s - 2, BLOCK_S - 2)",
           ["tests/test_triton.py", "-k", "full_tile"]),
    Mutant("triton beta: a closed step read from the tile's second-last state",
           "_seq_loss_kernels/triton_ctc.py",
           "tl.where(valid & (s + 1 < n_states), s + 1, BLOCK_S - 1)",
           "tl.where(valid & (s + 1 < n_states), s + 1, BLOCK_S - 2)",
           ["tests/test_triton.py", "-k", "full_tile"]),
    Mutant("triton gradient: no carry across the tile's columns",
           "_seq_loss_kernels/triton_ctc.py",
           "summed = tl.where(started != 0, down, down + carry[None, :])",
           "summed = down",
           ["tests/test_triton.py", "-k", "every_state_block"]),
    Mutant("triton gradient: every frame of a program reads its first frame's emissions",
           "_seq_loss_kernels/triton_ctc.py",
           "emit = tl.load(lp_row + cls_at)",
           "emit = tl.load(lp_ptr + (b * T + t0) * C + cls_at)",
           ["tests/test_triton.py", "-k", "several"]),
    Mutant("triton gradient: a program's last frame left out", "_seq_loss_kernels/triton_ctc.py",
           "t_end = tl.minimum(t0 + frames_per_program, T)",
           "t_end = tl.minimum(t0 + frames_per_program - 1, T)",
           ["tests/test_triton.py", "-k", "several"]),
    Mutant("pytorch forward: an unreachable frame's shift is -inf", "seq_loss_util.py",
           "n = x.amax(dim=1, keepdim=True).clamp(min=torch.finfo(x.dtype).min)  # (B, 1)",
           "n = x.amax(dim=1, keepdim=True)  # (B, 1)",
           ["tests/test_exact.py", KNOWN, "-k", "equals_native or no_state_can_emit"], PYTORCH),
    # What the kernels trust, checked at every operator and compiled entry (issue 25).
    Mutant("viterbi operator runs unchecked", "seq_loss_util.py",
           "_check_operator_inputs(\n        log_probs, labels, labels_len, logits_len)\n"
           "    run = _select_backend(log_probs.device, log_probs.dtype, labels.shape[1])\n"
           "    return run.viterbi(",
           "(\n        log_probs, labels, labels_len, logits_len)\n"
           "    run = _select_backend(log_probs.device, log_probs.dtype, labels.shape[1])\n"
           "    return run.viterbi(",
           [FUZZ, "-k", "each_operator and logits_len"], PYTORCH),
    Mutant("backward operator takes a state of another width", "seq_loss_util.py",
           "if tuple(alpha.shape) not in (state, (2, *state)) or alpha.dtype != log_probs.dtype:",
           "if alpha.dim() not in (3, 4):", [FUZZ, "-k", "state_against"]),
    Mutant("compiled forced_align skips its value checks", "seq_loss_util.py",
           "checking = deferred is None or not _compiling()", "checking = not _compiling()",
           [FUZZ, "-k", "compiled_alignment"]),
    Mutant("decoder: no upper bound on the beam", "ctc_decoder.py",
           "1 <= value <= MAX_BEAM", "1 <= value", [FUZZ, "-k", "beam_sizes_past"]),
    Mutant("decoder: a negative beam_threshold is taken", "ctc_decoder.py",
           "if beam_threshold is not None and beam_threshold < 0:",
           "if beam_threshold is not None and beam_threshold < -1e9:",
           [FUZZ, "-k", "empty_the_output"]),
    Mutant("decoder: a positive token_min_logp is taken", "ctc_decoder.py",
           "if token_min_logp is not None and token_min_logp > 0:",
           "if token_min_logp is not None and token_min_logp > 1e9:",
           [FUZZ, "-k", "empty_the_output"]),
    Mutant("decoder: a non-finite frame is decoded", "seq_loss_util.py",
           "return torch.isnan(log_probs.sum(2)) & frame_ok",
           "return torch.isinf(log_probs).all(2) & frame_ok",
           [FUZZ, "-k", "non_finite"]),
    Mutant("tensor search: an empty batch reaches the search", "ctc_decoder.py",
           "if not log_probs.shape[0]:  # an empty batch", "if False:  # an empty batch",
           [FUZZ, "-k", "empty_batch"]),
    Mutant("c beam: a negative hotword weight lowers the bound", "_seq_loss_kernels/ctc_beam.c",
           "double hot = w->hotword_weight > 0 ? w->hotword_weight : 0;",
           "double hot = w->hotword_weight;", [FUZZ, "-k", "negative_hotword"]),
    Mutant("c beam: the bound ignores positive backoffs", "_seq_loss_kernels/ctc_beam.c",
           "double lm = w->lm_max > 0 ? w->lm_weight * w->lm_max : 0;", "double lm = 0;",
           [FUZZ, "-k", "positive_backoffs"]),
    Mutant("triton glue: an example of zero frames vouches against probabilities",
           "_seq_loss_kernels/triton_wrapper.py",
           "mask=(c < C) & (n_frames > 0), other=1.0)", "mask=(c < C) & (n_frames > 0), other=-1.0)",
           ["tests/test_misuse.py", "-k", "zero_frames_does_not_hide"], TRITON),
    Mutant("triton epilogue: zero_infinity leaves infeasible examples at inf",
           "_seq_loss_kernels/triton_wrapper.py",
           "            if ZERO_INFINITY:\n                loss = tl.where(counted, -log_like, 0.0)",
           "            if ZERO_INFINITY:\n                loss = tl.where(counted, -log_like, "
           "float(\"inf\"))",
           ["tests/test_triton_glue.py", "-k", "infeasible_examples_on_the_fused_path"]),
    Mutant("triton module: a blank past C reaches the fused path", "seq_loss_util.py",
           "if not batch or self.blank >= classes:", "if not batch:",
           ["tests/test_module.py", "-k", "errors"], TRITON),
    # Decoder and alignment rules that random data reached rarely (issue 25).
    Mutant("from_hf: blank is class 0, not the pad token", "ctc_decoder.py", 'options.setdefault("blank", tokenizer.pad_token_id if', 'options.setdefault("blank", 0 if', [RULES, "-k", "from_hf"]),
    Mutant("from_hf: a processor is taken as the tokenizer", "ctc_decoder.py", 'tokenizer = getattr(processor_or_tokenizer, "tokenizer", processor_or_tokenizer)', 'tokenizer = processor_or_tokenizer', [RULES, "-k", "from_hf"]),
    Mutant("hotwords: a string is one hotword per letter", "ctc_decoder.py", "if isinstance(hotwords, str):", "if isinstance(hotwords, bytes):", [RULES, "-k", "string"]),
    Mutant("c hotwords: earlier words read from the row's start", "_seq_loss_kernels/ctc_beam.c", "int64_t earlier = recent[H - (length - 1) + j];", "int64_t earlier = recent[j];", [RULES, "-k", "phrases_of_three"]),
    Mutant("c hotwords: recent words shifted the wrong way", "_seq_loss_kernels/ctc_beam.c", "memmove(drow + depth, drow + depth + 1, sizeof(int64_t) * (H - 1));", "memmove(drow + depth + 1, drow + depth, sizeof(int64_t) * (H - 1));", [RULES, "-k", "phrases_of_three"]),
    Mutant("c hotwords: one bonus per word end however many phrases end there", "_seq_loss_kernels/ctc_beam.c", "if (ok && beam_find(w->phrases, w->n_phrases, h) >= 0) bonus += 1;", "if (ok && beam_find(w->phrases, w->n_phrases, h) >= 0) bonus = 1;", [RULES, "-k", "phrases_of_three"]),
    Mutant("tensor hotwords: earlier words read from the row's start", "ctc_scorers/hotwords.py", "earlier = recent[..., n - (length - 1) + j]", "earlier = recent[..., j]", [RULES, "-k", "phrases_of_three"], KERNEL_OFF),
    Mutant("tensor hotwords: the oldest recent word kept instead of dropped", "ctc_decoder.py", 'shifted = torch.cat([new["recent"][..., 1:], new["partial_hash"][..., None]], -1)', 'shifted = torch.cat([new["recent"][..., :-1], new["partial_hash"][..., None]], -1)', [RULES, "-k", "phrases_of_three"], KERNEL_OFF),
    Mutant("tensor hotwords: one bonus per word end however many phrases end there", "ctc_scorers/hotwords.py", "count = count + (ok & member(self.phrases, h)).to(count.dtype)", "count = torch.maximum(count, (ok & member(self.phrases, h)).to(count.dtype))", [RULES, "-k", "phrases_of_three"], KERNEL_OFF),
    Mutant("c lse2: float's shortcut threshold in float64", "_seq_loss_kernels/ctc_beam.c", "(REAL)-18 : (REAL)-38)", "(REAL)-18 : (REAL)-18)", [RULES, "-k", "float64"]),
    Mutant("c lse2: log1p in float for float64", "_seq_loss_kernels/ctc_beam.c", "log1pf((float)(x)) : log1p((double)(x))", "log1pf((float)(x)) : log1pf((float)(x))", [RULES, "-k", "float64"]),
    Mutant("tensor search: prefix totals rounded to float32", "ctc_decoder.py", "total = torch.logaddexp(pb, pnb)\n", "total = torch.logaddexp(pb, pnb).float()\n", [RULES, "-k", "float64"], KERNEL_OFF),
    Mutant("c bound: one hotword per word end", "_seq_loss_kernels/ctc_beam.c", "double bound = w->word_score + hot * (double)w->phrase_len + lm + unk;", "double bound = w->word_score + hot + lm + unk;", [RULES, "-k", "overlapping"]),
    Mutant("c candidates: SentencePiece word starts lifted", "_seq_loss_kernels/ctc_beam.c", "return w && !w->prefix_mode && V < C - 1 && w->boundary[c];", "return w && V < C - 1 && w->boundary[c];", [RULES, "-k", "sentencepiece"]),
    Mutant("tensor candidates: SentencePiece word starts lifted", "ctc_decoder.py", "if words is not None and not words.prefix_mode and width < classes - 1:", "if words is not None and width < classes - 1:", [RULES, "-k", "sentencepiece"], KERNEL_OFF),
    Mutant("c candidates: K tokens per frame, not K + 1", "ctc_decoder.py", "beam, _candidates(beam, log_probs.shape[2]), nbest,", "beam, _candidates(beam - 1, log_probs.shape[2]), nbest,", [RULES, "-k", "sentencepiece"]),
    # Caught only by the comparison with the kernel, so with it on.
    Mutant("tensor candidates: K tokens per frame, not K + 1", "ctc_decoder.py", "width = _candidates(beam, classes)", "width = _candidates(beam - 1, classes)", [RULES, "-k", "sentencepiece"]),
    Mutant("segments: example 0's states for every example", "seq_loss_util.py", "states = alignment.states[example].tolist()", "states = alignment.states[0].tolist()", ["tests/test_alignment.py", "-k", "every_example"]),
    Mutant("segments: example 0's labels for every example", "seq_loss_util.py", "labels = alignment.labels[example].tolist()", "labels = alignment.labels[0].tolist()", ["tests/test_alignment.py", "-k", "every_example"]),
    Mutant("segments: padded frames (state -1) read as a label's", "seq_loss_util.py", "if state < 0 or state % 2 == 0:", "if state % 2 == 0:", ["tests/test_alignment.py", "-k", "every_example"]),
    # The ARPA reader refuses what KenLM refuses and reads the rest as KenLM does.
    Mutant("arpa: an order the header counts needs no section", "ngram_lm.py",
           "if following <= len(counts):", "if following < len(counts):",
           [ARPA, "-k", "without_section"]),
    Mutant("arpa: a header order may repeat", "ngram_lm.py",
           "if int(count[1]) != len(counts) + 1:", "if int(count[1]) > len(counts) + 1:",
           [ARPA, "-k", "header_line_twice or header_order_skipped"]),
    Mutant("arpa: a section may hold more lines than the header counts", "ngram_lm.py",
           "if held == expected:", "if held > expected:",
           [ARPA, "-k", "count_too_small"]),
    Mutant("arpa: a section may end one line short of its count", "ngram_lm.py",
           "if held < counts[order - 1]:", "if held + 1 < counts[order - 1]:",
           [ARPA, "-k", "count_too_large"]),
    Mutant("arpa: a backoff on the highest order passes", "ngram_lm.py",
           "if backoff and order == len(counts):", "if backoff and order > len(counts):",
           [ARPA, "-k", "backoff_on_highest_order"]),
    Mutant("arpa: a zero backoff on the highest order is refused", "ngram_lm.py",
           "if backoff and order == len(counts):", "if order == len(counts):",
           [ARPA, "-k", "zero_backoff_on_highest_order"]),
    Mutant("arpa: the 1-grams need no <s>", "ngram_lm.py",
           'for marker in ("<s>", "</s>"):', 'for marker in ("</s>",):',
           [ARPA, "-k", "no_bos"]),
    Mutant("arpa: the 1-grams need no </s>", "ngram_lm.py",
           'for marker in ("<s>", "</s>"):', 'for marker in ("<s>",):',
           [ARPA, "-k", "no_eos"]),
    Mutant("arpa: a positive log10 probability passes", "ngram_lm.py",
           "if prob > 0.0:", "if prob > 1.0:",
           [ARPA, "-k", "positive"]),
    Mutant("arpa: the probability is read by float() alone (nan, 1_0 pass)", "ngram_lm.py",
           "if _NUMBER.fullmatch(fields[0]) is None:", "if not fields[0]:",
           [ARPA, "-k", "nan_probability or underscore_in_number or infinity_spelled_out"]),
    Mutant("arpa: numbers take non-ASCII digits", "ngram_lm.py",
           r'_NUMBER = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)',
           r'_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)',
           [ARPA, "-k", "arabic_indic_digits"]),
    Mutant("arpa: -inf is not a number", "ngram_lm.py",
           '(?:[eE][-+]?[0-9]+)?|[-+]?inf")', '(?:[eE][-+]?[0-9]+)?")',
           [ARPA, "-k", "minus_inf or inf_probability"]),
    Mutant("arpa: the backoff is read by float() alone", "ngram_lm.py",
           "if _NUMBER.fullmatch(fields[-1]) is None:", "if not fields[-1]:",
           [ARPA, "-k", "nan_backoff or underscore_in_backoff"]),
    Mutant("arpa: an infinite backoff passes", "ngram_lm.py",
           "if not -_FLOAT32_OVERFLOW < backoff < _FLOAT32_OVERFLOW:",
           "if backoff != backoff:",
           [ARPA, "-k", "inf_backoff"]),
    Mutant("arpa: a backoff beyond float32 passes", "ngram_lm.py",
           "if not -_FLOAT32_OVERFLOW < backoff < _FLOAT32_OVERFLOW:",
           "if not -math.inf < backoff < math.inf:",
           [ARPA, "-k", "backoff_beyond_float32"]),
    Mutant("arpa: a probability below float32 stays finite", "ngram_lm.py",
           "if prob < -_FLOAT32_OVERFLOW:", "if prob < -math.inf:",
           [ARPA, "-k", "below_float32"]),
    Mutant("arpa: extra fields pass", "ngram_lm.py",
           "elif width == order + 2:", "elif width >= order + 2:",
           [ARPA, "-k", "too_many_fields"]),
    Mutant("arpa: a missing word passes", "ngram_lm.py",
           "if width == order + 1:", "if width <= order + 1:",
           [ARPA, "-k", "too_few_words or no_probability"]),
    Mutant("arpa: the words of a longer n-gram need not be 1-grams", "ngram_lm.py",
           "if order > 1 and not vocab.issuperset(words):",
           "if order > 2 and not vocab.issuperset(words):",
           [ARPA, "-k", "word_not_a_unigram"]),
    Mutant("arpa: text after \\end\\ passes", "ngram_lm.py",
           'fail(number, "text after \\\\end\\\\", line)', "continue",
           [ARPA, "-k", "after_end"]),
    Mutant("arpa: reading stops at \\end\\ (a damaged gzip tail goes unseen)", "ngram_lm.py",
           'stage, order = "end", 0', 'stage, order = "end", 0; break',
           [ARPA, "-k", "damaged_gzip"]),
    Mutant("arpa: sections may come out of order", "ngram_lm.py",
           "if int(section[1]) != following:", "if int(section[1]) < following:",
           [ARPA, "-k", "section_out_of_order"]),
    Mutant("arpa: a zlib error escapes", "ngram_lm.py",
           "except (OSError, EOFError, zlib.error) as e:", "except (OSError, EOFError) as e:",
           [ARPA, "-k", "damaged_gzip"]),
    Mutant("arpa: a read error names the last line read", "ngram_lm.py",
           'line {number + 1}: cannot be read', 'line {number}: cannot be read',
           [ARPA, "-k", "damaged_gzip"]),
    Mutant("arpa: gzip told by the file's name", "ngram_lm.py",
           'gzipped = probe.read(2) == b"\\x1f\\x8b"', 'gzipped = path.endswith(".gz")',
           [ARPA, "-k", "gzip_is_told_by_content"]),
    Mutant("arpa: a repeated n-gram replaces the first", "ngram_lm.py",
           "if table.setdefault(words, value) is not value and words == _UNK:",
           "if table.setdefault(words, value) is not value:",
           [ARPA, "-k", "repeated_ngrams"]),
    Mutant("arpa: a repeated <unk> keeps the first", "ngram_lm.py",
           "if table.setdefault(words, value) is not value and words == _UNK:",
           "if table.setdefault(words, value) is not value and False:",
           [ARPA, "-k", "repeated_unk"]),
    Mutant("arpa: <UNK> is a word of its own", "ngram_lm.py",
           'if "<UNK>" in words:', 'if "<UNKNOWN>" in words:',
           [ARPA, "-k", "upper_case_unk"]),
    Mutant("arpa: comment lines before \\data\\ are refused", "ngram_lm.py",
           'if text.startswith("#"):', 'if text.startswith("##"):',
           [ARPA, "-k", "comments_and_blank_lines"]),
    Mutant("arpa: a form feed line is not blank", "ngram_lm.py",
           'line = text.strip(" \\t\\r\\n\\v\\f")', 'line = text.strip(" \\t\\r\\n")',
           [ARPA, "-k", "comments_and_blank_lines"]),
    Mutant("arpa: any white space splits words", "ngram_lm.py",
           'fields = line.replace("\\t", " ").split(" ")', "fields = line.split()",
           [ARPA, "-k", "odd_characters_in_words"]),
    Mutant("ngram: an empty order's context is looked up", "ngram_lm.py",
           "if length and not self._keys[length - 1].numel():", "if False:",
           [ARPA, "-k", "empty"]),
    Mutant("ngram: an empty order is searched", "ngram_lm.py",
           "if self._keys[length].numel():", "if True:",
           [ARPA, "-k", "empty"]),
    Mutant("ngram: score_sentence starts from <s> even with bos=False", "ngram_lm.py",
           "context = self.start(1) if bos else torch.full(",
           "context = self.start(1) if True else torch.full(",
           [ARPA, "-k", "sentence_ends"]),
    # Unknown words, the lexicon, the token LM and the compact LM file (#26).
    Mutant("c unknown words: the part past 6 letters dropped from a completed word",
           "_seq_loss_kernels/ctc_beam.c",
           "ucost = w->unk_score + w->partial_oov * (excess > 0 ? excess : 0);",
           "ucost = w->unk_score;", [UNK, "-k", "runaway or stated_sum"]),
    Mutant("tensor unknown words: the part past 6 letters dropped from a completed word",
           "ctc_scorers/unknown_words.py", "return unk_score + partial_oov * excess",
           "return unk_score + 0.0 * excess", [UNK, "-k", "runaway or stated_sum"]),
    Mutant("c unknown words: the rank penalty flat, not growing with the word",
           "_seq_loss_kernels/ctc_beam.c",
           "return (REAL)(w->partial_oov * (scale > 1 ? scale : 1));",
           "return (REAL)w->partial_oov;", [UNK, "-k", "agree"]),
    Mutant("tensor unknown words: unk_score left out of a completed word's delta",
           "ctc_scorers/unknown_words.py",
           "return ucost, {\"total\": state[\"total\"] + ucost}",
           "return 0.0 * ucost, {\"total\": state[\"total\"] + ucost}",
           [UNK, "-k", "stated_sum or runaway or short_unknown"]),
    Mutant("c lexicon: words are unknown only with an LM", "_seq_loss_kernels/ctc_beam.c",
           "if (w->lm.order > 0 || w->n_words > 0) s->oov",
           "if (w->lm.order > 0) s->oov", [UNK, "-k", "lexicon_forbids"]),
    Mutant("lexicon: the blank spells words", "ctc_decoder.py",
           "lexicon = _read_lexicon(lexicon, lm, [t for i, t in enumerate(tokens) if i != blank],",
           "lexicon = _read_lexicon(lexicon, lm, list(tokens),", [UNK, "-k", "lexicon_errors"]),
    Mutant("auto pruning: the threshold not widened by an unknown word's cost", "ctc_decoder.py",
           "LM_BEAM_THRESHOLD + max(0.0, -charged)", "LM_BEAM_THRESHOLD + 0.0 * charged",
           [UNK, "-k", "auto_pruning or runaway"]),
    Mutant("c token LM: its score left out of the rank", "_seq_loss_kernels/ctc_beam.c",
           "rank += (REAL)(w->tlm_weight * FN(beam_token_lp)(w, f->rows + k * f->row",
           "rank += (REAL)(0 * FN(beam_token_lp)(w, f->rows + k * f->row",
           [TOKEN_LM, "-k", "near_tie or agree"]),
    Mutant("c token LM: the context not shifted", "_seq_loss_kernels/ctc_beam.c",
           "drow[tofs + tdepth - 1] = w->tlm_ids[c];", "drow[tofs + tdepth - 1] = w->tlm.bos;",
           [TOKEN_LM, "-k", "stated_sum or agree"]),
    Mutant("c token LM: no </s> at the end", "_seq_loss_kernels/ctc_beam.c",
           "rank += (REAL)(w->tlm_weight * t_end);", "rank += 0;",
           [TOKEN_LM, "-k", "stated_sum"]),
    Mutant("tensor token LM: its score left out of the rank", "ctc_decoder.py",
           "                rank_ext = rank_ext + step\n", "                rank_ext = rank_ext\n",
           [TOKEN_LM, "-k", "near_tie or agree"]),
    Mutant("token LM: a word LM accepted as a token LM", "ctc_decoder.py",
           "    if strangers:\n        raise ValueError(f\"the token LM's",
           "    if False:\n        raise ValueError(f\"the token LM's", [TOKEN_LM, "-k", "errors"]),
    # The scorer interface: the search's side of it (issue 26).
    Mutant("scorers: a word scorer's closed state taken by every beam, word or not",
           "ctc_decoder.py", "new[k] = _where(ends, _take(v, src), new[k])",
           "new[k] = _take(v, src)", [UNK, "-k", "agree"]),
    Mutant("scorers: a token scorer's state moved where no token was appended",
           "ctc_decoder.py", "{k: _where(appended, after[k], v) for k, v in before.items()}",
           "after", [TOKEN_LM, "-k", "agree"]),
    Mutant("scorers: a scorer's end of utterance left out", "ctc_decoder.py",
           "            end = end + add.to(dtype)\n", "\n",
           ["tests/test_scorers.py", "-k", "events"], KERNEL_OFF),
    # The wildcard (issue 27): skips only into label states, and the loss's constant.
    Mutant("pytorch skip: a gap may be skipped into (a wildcard over a label)",
           "seq_loss_util.py",
           "skip_in[:, 2:] = torch.where((labels[:, 2:] != labels[:, :-2]) & odd, 0.0, -math.inf)",
           "skip_in[:, 2:] = torch.where(labels[:, 2:] != labels[:, :-2], 0.0, -math.inf)",
           [WILDCARD, "-k", "brute"], KERNEL_OFF),
    Mutant("c viterbi: a gap may be skipped into", "_seq_loss_kernels/cpu.c",
           "if (s >= 2 && (s & 1) && l[s] != l[s - 2] && prev[s - 2] > best)",
           "if (s >= 2 && l[s] != l[s - 2] && prev[s - 2] > best)", [WILDCARD, "-k", "brute"]),
    Mutant("c backward: a gap may be skipped into", "_seq_loss_kernels/cpu.c",
           "skip_back[s] = ((s & 1) && s + 2 < Lb && l[s + 2] != l[s]) ? 0 : NEG_INF;",
           "skip_back[s] = (s + 2 < Lb && l[s + 2] != l[s]) ? 0 : NEG_INF;",
           [WILDCARD, "-k", "gradcheck or targets"]),
    Mutant("triton: a gap may be skipped into", "_seq_loss_kernels/triton_ctc.py",
           "may_skip = valid & (s >= 2) & (s % 2 == 1) & (label != label_2)",
           "may_skip = valid & (s >= 2) & (label != label_2)",
           [WILDCARD, "-k", "brute and triton"]),
    Mutant("wildcard loss: the per-frame constant not given back", "seq_loss_util.py",
           "loss - shift.to(loss.dtype))", "loss)",
           [WILDCARD, "-k", "brute and pytorch"]),
    Mutant("wildcard: a gap with a wildcard keeps its blank", "seq_loss_util.py",
           "aug[:, 0::2] = torch.where(gaps, classes, aug[:, 0::2])",
           "aug[:, 0::2] = aug[:, 0::2]", [WILDCARD, "-k", "brute and pytorch"]),
    Mutant("torchaudio compat: blank runs kept as spans", "torchaudio_compat.py",
           "keep = tokens[begin] != blank", "keep = tokens[begin] >= 0",
           ["tests/test_torchaudio_compat.py", "-k", "every_example"]),
    Mutant("torchaudio compat: padded frames score their log-probability", "torchaudio_compat.py",
           "scores = torch.where(path >= 0, lp.gather(2, labels[:, :, None])[:, :, 0], 0.0)",
           "scores = lp.gather(2, labels[:, :, None])[:, :, 0]",
           ["tests/test_torchaudio_compat.py", "-k", "every_example"]),
    Mutant("timestamps: a run's end is its last frame, not one past it", "ctc_timestamps.py",
           "out.append(Timed(a * step, z * step, tokens[label], score))",
           "out.append(Timed(a * step, (z - 1) * step, tokens[label], score))",
           ["tests/test_timestamps.py"]),
    Mutant("long align: the band's path taken without the proof", "_seq_loss_kernels/cpu.py",
           "    return bound < score", "    return True",
           ["tests/test_long_align.py"]),
    Mutant("long align: the callable entered by both threads at once", "_seq_loss_kernels/cpu.py",
           "        with lock:\n            item = next(items, _DONE)",
           "        item = next(items, _DONE)",
           ["tests/test_long_align.py", "-k", "callable"]),
    Mutant("band backward: skips into a label not followed back", "_seq_loss_kernels/cpu.c",
           "if (skip2[s] && q[2] > best) best = q[2];", "",
           ["tests/test_long_align.py", "-k", "definitions"]),
    Mutant("band backward: the entry just above the band missed", "_seq_loss_kernels/cpu.c",
           "for (int64_t j = plo + W - clo > 0 ? plo + W - clo : 0; j < n; ++j)",
           "for (int64_t j = plo + W - clo + 1 > 0 ? plo + W - clo + 1 : 0; j < n; ++j)",
           ["tests/test_long_align.py", "-k", "definitions"]),
    Mutant("band backward: a skip from two slots below a moved band dropped",
           "_seq_loss_kernels/cpu.c",
           "const int64_t j0 = d - W - 2 > 0 ? (d - W - 2 < n ? d - W - 2 : n) : 0;",
           "const int64_t j0 = d - W > 0 ? (d - W < n ? d - W : n) : 0;",
           ["tests/test_long_align.py", "-k", "definitions"]),
    Mutant("band forward: a band moved by its width reaches nothing", "_seq_loss_kernels/cpu.c",
           "if (d >= W + 2) n = 0;", "if (d >= W) n = 0;",
           ["tests/test_long_align.py", "-k", "definitions"]),
    Mutant("kernel build: no portable build without -march=native", "_seq_loss_kernels/cpu.py",
           "                if portable == flags:\n                    raise",
           "                if True:\n                    raise",
           ["tests/test_kernel_loader.py", "-k", "march"]),
    # The C kernel's glue around the recursions (CtcLossModule's fused step on CPU).
    Mutant("c prepare: an infeasible example not flagged", "_seq_loss_kernels/cpu.c",
           "if (n_frames < n + repeats) bits |= V_INFEASIBLE;", "",
           ["tests/test_misuse.py", "tests/test_module.py"]),
    Mutant("c prepare: the blank accepted as a label", "_seq_loss_kernels/cpu.c",
           "(id < 0 || id >= C || id == blank))", "(id < 0 || id >= C))",
           ["tests/test_misuse.py", "tests/test_module.py"]),
    Mutant("c loss: the original's rule counts every example", "_seq_loss_kernels/cpu.c",
           "c = frames[b] >= states[b] && !p;", "c = !p;",
           ["seq_loss_util_test.py", "tests/test_module.py"]),
    Mutant("c scale: a poisoned example's gradient not NaN", "_seq_loss_kernels/cpu.c",
           "scale[b] = poisoned[b] && g != 0 ? (REAL)NAN : (counted[b] ? g : 0);",
           "scale[b] = counted[b] ? g : 0;", ["tests/test_cpu_step.py", "tests/test_misuse.py"]),
    # Not listed: the GAP bit and the bad-frame scan's t < T_b are each redundant (a gap
    # puts a negative id among the first n, which BAD_ID flags; the epilogue reads bad
    # frames only within T_b), so mutants of them cannot fail a test.
    Mutant("vector exp: exp(-inf) not 0", "_seq_loss_kernels/cpu.c",
           "return x < lo ? 0.0f : y;  /* -inf", "return y;  /* -inf", ["tests/test_vector_math.py"]),
    Mutant("vector log: the mantissa's range not halved", "_seq_loss_kernels/cpu.c",
           "const int small = m < 0.707106781186547524f;", "const int small = 0;",
           ["tests/test_vector_math.py"]),
    Mutant("lse3: the middle term taken as the smallest", "_seq_loss_kernels/cpu.c",
           "const REAL m = hi > c ? hi : c, mid = hi > c ? c : hi;",
           "const REAL m = hi > c ? hi : c, mid = lo;",
           ["tests/test_exact.py", "-k", "equals_native"]),
    Mutant("band forward: a skip into a gap", "_seq_loss_kernels/cpu.c",
           "skip_add[s] = s >= 2 && (s & 1) && l[s] != l[s - 2] ? 0 : NEG_INF;",
           "skip_add[s] = s >= 2 && l[s] != l[s - 2] ? 0 : NEG_INF;",
           ["tests/test_long_align.py", "-k", "definitions"]),
    Mutant("band forward: no exit from the band's top", "_seq_loss_kernels/cpu.c",
           "if (j >= 0 && plo + j + 1 < L && prev[j] > out) out = prev[j];",
           "if (j >= 1 && plo + j + 1 < L && prev[j] > out) out = prev[j];",
           ["tests/test_long_align.py", "-k", "definitions"]),
    Mutant("long alignment plot: the run after the last segment dropped", "ctc_plot.py",
           "    if num_frames > at:\n        gaps.append((at, num_frames))",
           "    if False:\n        gaps.append((at, num_frames))",
           ["tests/test_plot.py", "-k", "long"]),
    Mutant("timed segments: the confidence dropped", "ctc_timestamps.py",
           "out.append(Timed(seg.start_s, seg.end_s, str(texts[seg.segment]), seg.score))",
           "out.append(Timed(seg.start_s, seg.end_s, str(texts[seg.segment])))",
           ["tests/test_timestamps.py", "-k", "long"]),
    Mutant("distinct texts: repeats kept", "ctc_decoder.py",
           "                if text in texts:\n                    continue",
           "                if False:\n                    continue",
           [RULES, "-k", "distinct"]),
    Mutant("compact LM: a file for another digest trusted", "ngram_lm.py",
           'if saved.get("format") != self._CACHE_FORMAT or saved.get("digest") != digest:',
           'if saved.get("format") != self._CACHE_FORMAT:', [ARPA, "-k", "damaged_compact"]),
    Mutant("children table: a silent token not a continuation", "_seq_loss_kernels/ctc_beam.c",
           "uint8_t known = len[i] == 0;", "uint8_t known = 0;",
           ["tests/test_ctc_decoder.py", "-k", "kernels_rule"]),
    Mutant("prefix hashes: the last column's prefixes dropped", "ngram_lm.py",
           "            live = lengths > n\n", "            live = lengths > n + 1\n",
           [ARPA, "-k", "prefix_hashes"]),
]


def copy_project(dest: Path) -> None:
    """The tracked and untracked-but-not-ignored files, as they are in the work tree."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, files):
        src = ROOT / name.decode()
        if src.is_file():
            (dest / name.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name.decode())


def run_mutant(mutant: Mutant, base: Path, timeout: int) -> tuple[str, float]:
    """'caught', 'survived', or 'error: ...' (the mutation does not apply)."""
    with tempfile.TemporaryDirectory(prefix="mutant-") as tmp:
        work = Path(tmp) / "project"
        shutil.copytree(base, work)
        target = work / mutant.path
        text = target.read_text()
        if text.count(mutant.old) != 1:
            return f"error: the line to mutate occurs {text.count(mutant.old)} times", 0.0
        target.write_text(text.replace(mutant.old, mutant.new))
        env = {**os.environ, **mutant.env, "PYTHONPATH": str(work),
               "SEQ_LOSS_UTIL_CACHE": str(Path(tmp) / "cache"),  # the mutated C builds here
               "PYTHONDONTWRITEBYTECODE": "1"}
        env.pop("CI", None)  # a skip must not count as a catch, nor CI's rules as one
        start = time.monotonic()
        try:
            result = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-rf", "-p",
                                     "no:cacheprovider", *mutant.tests], cwd=work, env=env,
                                    capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return "caught (timed out)", float(timeout)
        took = time.monotonic() - start
        if result.returncode == 1:
            failed = [line.split()[1] for line in result.stdout.splitlines()
                      if line.startswith("FAILED ")]
            return "caught" + (f" by {failed[0]}" if failed else ""), took
        if result.returncode == 0:
            return "survived", took
        if result.returncode < 0:  # killed by a signal: a test crashed the process
            return f"caught (the tests crashed: signal {-result.returncode})", took
        return f"error: pytest exited {result.returncode}: {result.stdout[-500:]}", took


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", default="", help="only mutants whose name contains this")
    parser.add_argument("--list", action="store_true", help="list the mutants and stop")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per mutant")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTANTS if args.k in m.name]
    if args.list:
        for m in chosen:
            print(f"{m.name}  [{m.path}]  tests: {' '.join(m.tests)}")
        return 0
    with tempfile.TemporaryDirectory(prefix="mutants-base-") as base:
        base = Path(base)
        copy_project(base)
        # The unmutated copy must pass the same tests, or a catch proves nothing.
        failures, baselines = 0, {}
        for mutant in chosen:
            key = (tuple(mutant.tests), tuple(sorted(mutant.env.items())))
            if key not in baselines:
                baseline = Mutant("baseline", mutant.path, mutant.old, mutant.old,
                                  mutant.tests, mutant.env)
                baselines[key] = run_mutant(baseline, base, args.timeout)[0]
            state = baselines[key]
            if state != "survived":
                print(f"BASELINE FAILS  {mutant.name}: {state}")
                failures += 1
                continue
            state, took = run_mutant(mutant, base, args.timeout)
            print(f"{took:6.1f}s  {mutant.name}: {state}", flush=True)
            failures += not state.startswith("caught")
    print(f"{len(chosen) - failures} of {len(chosen)} mutants caught")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
