"""Speed and memory of seq_loss_util.ctc_loss against PyTorch's native CTC kernel.

    python benchmarks/bench.py [--repeats 15] [--device cpu|cuda] [--sizes B,T,C,U ...]
                               [--dtypes float32 bfloat16] [--no-tf] [--no-memory]
                               [--json FILE] [--smoke]

For each size (B, T, C, U) and logit dtype, the median over repeated runs of the
forward pass and of forward + backward, for ``torch.nn.functional.ctc_loss`` (the
native kernel) and this port. On CPU the port runs in the original's mode and with
exact=True, and the TF reference in ``tf.function`` is timed too when TensorFlow is
installed (forward + backward only). On CUDA (``--device cuda``) the port runs in
exact mode with its Triton kernels and with its pure PyTorch path, in float32 and
bfloat16, at the CPU sizes plus a wav2vec2-like (32, 1500, 32, 300), and a
determinism column says whether 10 runs gave bitwise equal gradients. Every
implementation starts from the same logits, so native's time includes the
``log_softmax`` it needs. Ratios are to native measured in the same run. The peak
memory of one forward + backward beyond the inputs comes from the profiler's memory
timeline on CPU or CUDA's peak allocated memory. It also times forced alignment
against the port's forward loss, and the cost in L. An implementation that would
take over a minute at a size is skipped, and the table says so.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

try:  # before TensorFlow: loaded after it (here by the memory profiler), triton's
    import triton  # noqa: F401  native library crashes the process. Both bundle LLVM.
except ImportError:
    pass

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import seq_loss_util as S  # noqa: E402

SMOKE_SIZES = [(2, 20, 6, 4)]
ALIGN_SIZES = [(8, 1000, 64, 200), (1, 20000, 32, 2000)]
ALIGN_GOALS = {(8, 1000, 64, 200): 2.0}
SCALING_BTC = (8, 1000, 64)
SCALING_U = (50, 100, 200, 400)
# Goals from the issues: the most this port may take, as a multiple of native (the
# third speed pass: no slower at the smallest size, at most 0.6x from the next up).
GOALS = {(4, 50, 10, 10): 1.0, (16, 200, 32, 40): 0.6, (32, 400, 32, 80): 0.6,
         (8, 1000, 64, 200): 0.6, (8, 200, 1000, 40): 0.6}
# On CUDA the Triton port must be at least 3x faster than native at these sizes.
CUDA_GOALS = {(32, 400, 32, 80): 1 / 3, (8, 1000, 64, 200): 1 / 3, (32, 1500, 32, 300): 1 / 3}
SIZES = list(GOALS)  # the sizes measured are the goals'
CUDA_SIZES = SIZES + [(32, 1500, 32, 300)]  # plus a wav2vec2-like batch
DETERMINISM_RUNS = 10
BUDGET_S = 60.0


def make_inputs(size, device, seed=0, dtype=torch.float32):
    """Full-length frames and labels of length U (no repeats forced), blank 0."""
    batch, frames, classes, width = size
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, frames, classes, generator=g).to(device=device, dtype=dtype)
    raw = torch.randint(1, classes, (batch, width), generator=g).to(device)
    raw_len = torch.full((batch,), width, dtype=torch.long, device=device)
    logits_len = torch.full((batch,), frames, dtype=torch.long, device=device)
    aug = S.to_blank_augmented_labels({"SEQ_DATA": raw - 1, "SEQ_LEN": raw_len}, 0)
    return dict(logits=logits, raw=raw, raw_len=raw_len, logits_len=logits_len,
                aug=aug["SEQ_DATA"], aug_len=aug["SEQ_LEN"])


def port(exact):
    def run(x, inp):
        return S.ctc_loss(inp["aug"], inp["aug_len"], x, inp["logits_len"], exact=exact)
    return run


def native(x, inp):
    # Native CTC takes float32 or float64 log-probabilities: bfloat16 logits are
    # upcast first (the cast is part of its cost, as autocast would do it).
    log_probs = x.float().log_softmax(-1) if x.dtype in (torch.float16, torch.bfloat16) \
        else x.log_softmax(-1)
    return torch.nn.functional.ctc_loss(log_probs.transpose(0, 1), inp["raw"],
                                        inp["logits_len"], inp["raw_len"], blank=0,
                                        reduction="none")


@contextlib.contextmanager
def backend(name):
    """SEQ_LOSS_UTIL_BACKEND=name around a call and its backward (None: unchanged)."""
    saved = os.environ.get("SEQ_LOSS_UTIL_BACKEND")
    if name is not None:
        os.environ["SEQ_LOSS_UTIL_BACKEND"] = name
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("SEQ_LOSS_UTIL_BACKEND", None)
        else:
            os.environ["SEQ_LOSS_UTIL_BACKEND"] = saved


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_it(fn, inp, device, repeats, backward, backend_name=None):
    """Median milliseconds of one call (and its backward), after a warm-up call."""
    def once():
        x = inp["logits"].detach().requires_grad_(backward)
        sync(device)
        start = time.perf_counter()
        with backend(backend_name):
            loss = fn(x, inp)
            if backward:
                loss.sum().backward()
        sync(device)
        return (time.perf_counter() - start) * 1e3
    first = once()
    if first / 1e3 * (repeats + 1) > BUDGET_S:
        return None
    return statistics.median(once() for _ in range(repeats))


def deterministic(fn, inp, backend_name=None, runs=DETERMINISM_RUNS) -> bool:
    """Whether ``runs`` forward + backward passes give bitwise equal gradients."""
    grads = []
    for _ in range(runs):
        x = inp["logits"].detach().requires_grad_(True)
        with backend(backend_name):
            fn(x, inp).sum().backward()
        grads.append(x.grad)
    return all(torch.equal(grads[0], g) for g in grads[1:])


def peak_memory_mb(impl, size, device, dtype=torch.float32):
    """Peak memory of one forward + backward beyond what existed before it, in MB.

    CUDA: the allocator's peak. CPU: the profiler's memory timeline, which records
    every allocation and free (torch.profiler._memory_profiler: a private API, used
    here because PyTorch's CPU allocator keeps no peak statistic).
    """
    inp = make_inputs(size, device, dtype=dtype)
    x = inp["logits"].detach().requires_grad_(True)
    fn, backend_name = {**impls("cuda"), **impls(device)}[impl]
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        with backend(backend_name):
            fn(x, inp).sum().backward()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    from torch.profiler import ProfilerActivity, profile
    from torch.profiler._memory_profiler import MemoryProfileTimeline

    from parity_tests.tf_side import quiet_native_stderr

    with quiet_native_stderr():  # the profiler logs its start and stop to fd 2
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True,
                     record_shapes=True, with_stack=True) as prof:
            with backend(backend_name):
                fn(x, inp).sum().backward()
    _, sizes = MemoryProfileTimeline(prof._memory_profile())._coalesce_timeline("cpu")
    totals = [sum(row) for row in sizes]
    return (max(totals) - totals[0]) / 2**20


def tf_runner():
    try:
        from parity_tests.tf_side import runner, tensorflow_available
    except ImportError:
        return None
    if not tensorflow_available():
        return None
    return runner()


def tf_time(runner, inp, repeats):
    args = [inp[k].cpu().numpy() for k in ("aug", "aug_len", "logits", "logits_len")]
    def once():
        start = time.perf_counter()
        runner.loss_and_grad(*args)
        return (time.perf_counter() - start) * 1e3
    once()  # the first call traces the tf.function
    second = once()
    if second / 1e3 * repeats > BUDGET_S:
        return None
    return statistics.median([second] + [once() for _ in range(repeats - 1)])


def align(x, inp):
    return S.forced_align(x, inp["raw"], inp["logits_len"], inp["raw_len"], blank=0).log_prob


def _cell(value, spec):
    """A table cell: None is a skipped measurement, text stands as it is."""
    if value is None:
        return "skipped"
    return value if isinstance(value, str) else format(value, spec)


IMPLS = {"native": native, "port": port(False), "port exact": port(True)}
# On CUDA: the Triton kernels and the pure PyTorch path, both in exact mode.
CUDA_IMPLS = {"native": native, "port triton": port(True), "port pytorch": port(True)}
CUDA_BACKENDS = {"port triton": "triton", "port pytorch": "pytorch"}


def impls(device):
    """``{name: (function, SEQ_LOSS_UTIL_BACKEND or None)}`` for the device."""
    if device.startswith("cuda"):
        return {name: (fn, CUDA_BACKENDS.get(name)) for name, fn in CUDA_IMPLS.items()}
    return {name: (fn, None) for name, fn in IMPLS.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--device", default="cpu")
    p.add_argument("--sizes", nargs="*", help="sizes as B,T,C,U (default: the issue's)")
    p.add_argument("--no-tf", action="store_true",
                   help="do not time the TF reference (timed when TensorFlow is installed)")
    p.add_argument("--no-memory", action="store_true", help="skip the memory column")
    p.add_argument("--smoke", action="store_true", help="one tiny size, 2 repeats")
    p.add_argument("--dtypes", nargs="*", choices=["float32", "bfloat16", "float16"],
                   help="logit dtypes (default: float32; on CUDA float32 and bfloat16)")
    p.add_argument("--json", metavar="FILE")
    p.add_argument("--cuda-table", action="store_true",
                   help="the CUDA table's rows on any device (on CPU tensors with "
                        "TRITON_INTERPRET=1: the GPU check's dry run)")
    args = p.parse_args(argv)
    cuda = args.device.startswith("cuda") or args.cuda_table
    dtypes = [getattr(torch, d) for d in (args.dtypes or (["float32", "bfloat16"] if cuda
                                                          else ["float32"]))]
    implementations = impls("cuda" if cuda else args.device)
    if args.sizes:
        sizes = [tuple(int(v) for v in s.split(",")) for s in args.sizes]
    elif args.smoke:
        sizes, args.repeats = SMOKE_SIZES, 2
    else:
        sizes = CUDA_SIZES if args.device.startswith("cuda") else SIZES
    goals = CUDA_GOALS if cuda else GOALS
    runner = None if args.no_tf or args.device.startswith("cuda") else tf_runner()

    device_name = (torch.cuda.get_device_name() if args.device.startswith("cuda")
                   else platform.processor() or platform.machine())
    tf_version = None
    if runner is not None:
        import tensorflow as tf
        tf_version = tf.__version__
    print(f"device {args.device} ({device_name}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, TF {tf_version or 'not timed'}, "
          f"port backend: {S.backend(args.device)}, median of {args.repeats}"
          + (f"; det.: bitwise equal gradients over {DETERMINISM_RUNS} runs" if cuda else ""))
    header = (f"{'(B, T, C, U)':<20} {'dtype':<9} {'impl':<14} {'fwd ms':>9} "
              f"{'fwd+bwd ms':>11} {'x native':>9} {'peak MB':>9} {'det.':>5}  goal")
    print(header)
    print("-" * len(header))
    rows = []
    for size, dtype in [(size, dtype) for size in sizes for dtype in dtypes]:
        inp = make_inputs(size, args.device, dtype=dtype)
        size_rows = [dict(size=list(size), dtype=str(dtype).replace("torch.", ""), impl=name,
                          fwd_ms=time_it(fn, inp, args.device, args.repeats, False, chosen),
                          fwd_bwd_ms=time_it(fn, inp, args.device, args.repeats, True, chosen),
                          peak_mb=None if args.no_memory else peak_memory_mb(
                              name, size, args.device, dtype),
                          deterministic=deterministic(fn, inp, chosen) if cuda else None)
                     for name, (fn, chosen) in implementations.items()]
        if runner is not None:
            size_rows.append(dict(size=list(size), dtype=str(dtype).replace("torch.", ""),
                                  impl="tf (tf.function)", fwd_ms="n/a",
                                  fwd_bwd_ms=tf_time(runner, inp, max(3, args.repeats // 3)),
                                  peak_mb="n/a", deterministic=None))
        native_ms = size_rows[0]["fwd_bwd_ms"]  # the implementations start with native
        for row in size_rows:
            ms = row["fwd_bwd_ms"]
            row["ratio"] = ms / native_ms if ms is not None and native_ms else None
            goal_impl = "port triton" if cuda else "port"
            row["goal"] = goals.get(size) if row["impl"].startswith(goal_impl) else None
            row["meets_goal"] = (None if row["goal"] is None or row["ratio"] is None
                                 else row["ratio"] <= row["goal"])
            mark = ("" if row["goal"] is None else
                    f"<= {row['goal']:.2g}x {'met' if row['meets_goal'] else 'MISSED'}")
            det = {None: "", True: "yes", False: "no"}[row["deterministic"]]
            print(f"{str(size):<20} {row['dtype']:<9} {row['impl']:<14} "
                  f"{_cell(row['fwd_ms'], '9.2f'):>9} {_cell(ms, '11.2f'):>11} "
                  f"{_cell(row['ratio'], '8.2f') + 'x':>9} {_cell(row['peak_mb'], '9.1f'):>9} "
                  f"{det:>5}  {mark}", flush=True)
        rows += size_rows
    scaling = []
    if not (args.sizes or args.smoke):
        # Cost in L: doubling U at fixed (B, T, C) should at most double the time.
        print(f"\ncost in L at (B, T, C) = {SCALING_BTC}, this port, fwd+bwd ms "
              "(ratio to the previous U; goal <= 2x)")
        previous = None
        for width in SCALING_U:
            size = (*SCALING_BTC, width)
            inp = make_inputs(size, args.device)
            ms = time_it(port(True), inp, args.device, args.repeats, backward=True)
            ratio = None if previous is None else ms / previous
            scaling.append(dict(size=list(size), fwd_bwd_ms=ms, ratio_to_previous=ratio))
            print(f"  U={width:<4} {ms:8.2f} ms" + ("" if ratio is None else f"  {ratio:.2f}x"))
            previous = ms
    alignment = []
    if not (args.sizes or args.smoke):
        # Forced alignment: at most twice this port's forward loss at (8, 1000, 64, 200).
        print("\nforced alignment (forward only; ratio to this port's forward loss; goal <= 2x)")
        for size in ALIGN_SIZES:
            inp = make_inputs(size, args.device)
            align_ms = time_it(align, inp, args.device, args.repeats, backward=False)
            loss_ms = time_it(port(False), inp, args.device, args.repeats, backward=False)
            ratio = align_ms / loss_ms
            goal = ALIGN_GOALS.get(size)
            alignment.append(dict(size=list(size), align_ms=align_ms, loss_fwd_ms=loss_ms,
                                  ratio=ratio, goal=goal))
            mark = "" if goal is None else f"  <= {goal:g}x {'met' if ratio <= goal else 'MISSED'}"
            print(f"  {str(size):<22} forced_align {align_ms:9.2f} ms, loss forward "
                  f"{loss_ms:9.2f} ms, {ratio:.2f}x{mark}")
    if any(r["fwd_bwd_ms"] is None for r in rows):
        print(f"skipped: would take over {BUDGET_S:.0f} s at that size")
    if args.json:
        Path(args.json).write_text(json.dumps(dict(
            device=args.device, device_name=device_name, torch=torch.__version__,
            tensorflow=tf_version, threads=torch.get_num_threads(),
            backend=S.backend(args.device), repeats=args.repeats, rows=rows,
            cost_in_L=scaling, forced_alignment=alignment), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
