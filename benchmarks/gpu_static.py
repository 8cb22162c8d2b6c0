"""What the Triton kernels cost on an H100-class GPU, read off the compiled code.

No GPU is needed: every kernel is compiled ahead of time for sm_90
(``triton_ctc.aot_compile``), and the cubin is disassembled with the ``nvdisasm``
and ``cuobjdump`` that triton ships. Per kernel and state block it prints the warps,
registers, spills (local memory), the largest loop's instruction count per iteration
(the serial frame loop, where one exists), and the barriers, global loads and stores
inside that loop. A loop is the range from a backward branch's target to the branch.

Then the wrapper: the host reads (each a device sync on CUDA) and the ATen compute
ops (each a kernel launch on CUDA) of one ``CtcLossModule`` forward + backward,
counted on CPU tensors, where the same Python runs, with the Triton kernels stubbed
out (they are launches of their own, not ATen ops).

    python benchmarks/gpu_static.py [--blocks 256 512 1024] [--json out.json]
    python benchmarks/gpu_static.py --model     # the cost model's step table instead

Exit status 1 if any kernel spills: CI runs it.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

INSTRUCTION = re.compile(r"^\s*/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;", re.M)
LABEL = re.compile(r"^(\.L_x_\d+):", re.M)
BRANCH = re.compile(r"\bBRA(?:\.\w+)*\s+`\((\.L_x_\d+)\)")


def tools():
    import triton

    folder = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
    return folder / "nvdisasm", folder / "cuobjdump"


def sass_of(cubin: bytes) -> tuple[str, str]:
    """The disassembly and the resource usage of a cubin."""
    nvdisasm, cuobjdump = tools()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "kernel.cubin"
        path.write_bytes(cubin)
        sass = subprocess.run([str(nvdisasm), "-c", str(path)], capture_output=True, text=True,
                              check=True).stdout
        usage = subprocess.run([str(cuobjdump), "-res-usage", str(path)], capture_output=True,
                               text=True, check=True).stdout
    return sass, usage


def parse(sass: str) -> tuple[list, dict]:
    """``[(address, text)]`` of the instructions, and each label's address (that of
    the instruction after it)."""
    instructions = [(int(a, 16), text) for a, text in INSTRUCTION.findall(sass)]
    labels = {}
    for match in LABEL.finditer(sass):
        following = INSTRUCTION.search(sass, match.end())
        if following:
            labels[match.group(1)] = int(following.group(1), 16)
    return instructions, labels


def analyse(sass: str, usage: str) -> dict:
    """Registers, spills, and the largest loop's instruction mix."""
    instructions, labels = parse(sass)
    loop = (0, -1)
    for address, text in instructions:
        branch = BRANCH.search(text)
        if branch and labels.get(branch.group(1), address + 1) <= address:
            start = labels[branch.group(1)]
            if address - start > loop[1] - loop[0]:
                loop = (start, address)
    body = [text for address, text in instructions if loop[0] <= address <= loop[1]]
    regs = re.search(r"REG:(\d+)", usage)
    local = re.search(r"LOCAL:(\d+)", usage)
    stack = re.search(r"STACK:(\d+)", usage)
    return dict(registers=int(regs.group(1)) if regs else None,
                spill_bytes=(int(local.group(1)) if local else 0) + (int(stack.group(1)) if stack else 0),
                instructions=len(instructions), loop_instructions=len(body),
                loop_barriers=sum("BAR." in t for t in body),
                loop_global_loads=sum(bool(re.search(r"\bLDG\b", t)) for t in body),
                loop_global_stores=sum(bool(re.search(r"\bSTG\b", t)) for t in body))


REGISTER = re.compile(r"\bR(\d+)(\.64)?\b")


def registers_of(operand: str) -> set:
    found = set()
    for number, wide in REGISTER.findall(operand):
        found.add(int(number))
        if wide:
            found.add(int(number) + 1)
    return found


def critical_loads(body: list) -> dict:
    """The global loads of a serial loop (one iteration's instructions, in order), split
    by whether a frame waits for them. The row stores mark the frames: a load whose
    first reader (a plain copy counts: it still waits) comes before the next row store
    costs a dependent round trip on its frame; one first read a frame or more later,
    in this iteration or the next, is prefetched. Per frame: the iteration's row stores
    count its frames; ``prefetch_frames``: the fewest row stores between a prefetched
    load and its reader."""
    def op_of(text):
        return re.sub(r"^@!?U?P\w+\s+", "", text)

    def is_store(text):
        return bool(re.search(r"\bSTG\b", text))

    dependent = prefetched = 0
    ahead = []
    n = len(body)
    for i, text in enumerate(body):
        op = op_of(text)
        if not re.match(r"LDG\b", op):
            continue
        dest = registers_of(op.split(",")[0])
        stores = 0
        for step in range(1, n + 1):  # to the end, then round to the load again
            later = body[(i + step) % n]
            later_op = op_of(later)
            head, _, rest = later_op.partition(" ")
            operands = rest.split(",")
            if dest & registers_of(",".join(operands[1:])) or (
                    head.startswith(("ST", "RED", "ATOM")) and dest & registers_of(rest)):
                if stores:
                    prefetched += 1
                    ahead.append(stores)
                else:
                    dependent += 1
                break
            if dest & registers_of(operands[0]) and not head.startswith(("ST", "BRA")):
                prefetched += 1  # overwritten before any read: nothing waits for it
                break
            stores += is_store(later)
        else:
            prefetched += 1
    frames = max(1, sum(is_store(t) for t in body))
    return dict(frames_per_iteration=frames, dependent_loads_per_frame=dependent / frames,
                prefetched_loads_per_frame=prefetched / frames,
                prefetch_frames=min(ahead) if ahead else None)


def serial_loops(sass: str) -> list:
    """Each loop with a barrier (a frame loop of a recursion), as its instructions."""
    instructions, labels = parse(sass)
    loops = []
    for address, text in instructions:
        branch = BRANCH.search(text)
        if branch and labels.get(branch.group(1), address + 1) <= address:
            body = [t for a, t in instructions if labels[branch.group(1)] <= a <= address]
            if any("BAR." in t for t in body):
                loops.append(body)
    return loops


def kernel_rows(blocks) -> list:
    from _seq_loss_kernels import triton_ctc

    rows = []
    for name, block, compiled in triton_ctc.aot_compile(blocks=blocks):
        sass, usage = sass_of(compiled.asm["cubin"])
        row = dict(kernel=name, block_s=block, warps=compiled.metadata.num_warps,
                   **analyse(sass, usage))
        if name in ("ctc_forward_kernel", "ctc_alpha_beta_kernel", "ctc_beta_kernel"):
            row["serial_loops"] = [critical_loads(body) for body in serial_loops(sass)]
        rows.append(row)
    return rows


def wrapper_counts(batch=4, frames=50, classes=12, width=6) -> dict:
    """Host reads and ATen compute ops of one CtcLossModule forward + backward on the
    Triton path, on CPU tensors, with the kernels stubbed out."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    import seq_loss_util as S
    from _seq_loss_kernels import triton_ctc, triton_wrapper

    # Ops that launch nothing on a GPU: views, metadata, allocation without a fill.
    free = ("view", "_unsafe_view", "expand", "t", "transpose", "permute", "select", "slice",
            "unsqueeze", "squeeze", "detach", "alias", "as_strided", "empty", "empty_like",
            "new_empty", "empty_strided", "lift_fresh", "_to_copy_noop", "unbind", "split",
            "split_with_sizes", "narrow", "diagonal", "_reshape_alias", "reshape")

    class Count(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.reads, self.ops = 0, []

        paused = False

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if self.paused:
                return func(*args, **(kwargs or {}))
            name = func.__name__.split(".")[0]
            if name in sized_by_data:  # the output's size is read back from the device
                self.reads += 1
            if name not in free and name != "_local_scalar_dense":
                self.ops.append(name)
            return func(*args, **(kwargs or {}))

    # What reads a tensor's values back to the host. On CPU, tolist() and friends read
    # memory without dispatching an op, so the Python methods are counted instead.
    readers = ("item", "tolist", "__bool__", "__int__", "__float__", "__index__", "numpy")
    sized_by_data = ("nonzero", "masked_select", "unique", "_unique2", "repeat_interleave")

    class Launch:
        """A kernel whose launches run (under the interpreter) uncounted: they are
        launches of their own on a GPU, not ATen ops or host reads."""

        def __init__(self, kernel):
            self.kernel = kernel

        def __getitem__(self, grid):
            def launch(*args, **kwargs):
                count.paused = True
                try:
                    return self.kernel[grid](*args, **kwargs)
                finally:
                    count.paused = False
            return launch

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(batch, frames, classes, generator=g, requires_grad=True)
    labels = torch.randint(1, classes, (batch, width), generator=g)
    labels[1, width // 2:] = -100  # Hugging Face's padding
    frames_of = torch.tensor([frames, frames - 7, frames, frames - 1][:batch])  # from a mask
    count = Count()
    saved = {(module, name): getattr(module, name) for module in (triton_ctc, triton_wrapper)
             for name in dir(module) if name.endswith("_kernel")}
    os.environ["SEQ_LOSS_UTIL_BACKEND"] = "triton"
    for (module, name), kernel in saved.items():
        setattr(module, name, Launch(kernel))
    try:
        module = S.CtcLossModule()
        module(logits, labels, frames_of).backward()  # warm: first-use set-up is not per step
        logits.grad = None
        originals = {name: getattr(torch.Tensor, name) for name in readers}

        def counted(method):
            def read(self, *args, **kwargs):
                count.reads += not count.paused
                with torch._C.DisableTorchFunction():
                    return method(self, *args, **kwargs)
            return read

        for name, method in originals.items():
            setattr(torch.Tensor, name, counted(method))
        try:
            with count:
                module(logits, labels, frames_of).backward()
        finally:
            for name, method in originals.items():
                setattr(torch.Tensor, name, method)
    finally:
        for (module, name), kernel in saved.items():
            setattr(module, name, kernel)
        del os.environ["SEQ_LOSS_UTIL_BACKEND"]
    return dict(host_reads=count.reads, aten_ops=len(count.ops), ops=count.ops)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--json", help="write the rows here")
    parser.add_argument("--ops", action="store_true", help="list the wrapper's ATen ops")
    parser.add_argument("--wrapper-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", action="store_true",
                        help="print the cost model's step table instead (gpu_step_model.py)")
    args = parser.parse_args(argv)
    if args.model:
        import gpu_step_model

        return gpu_step_model.main(["--json", args.json] if args.json else [])
    if args.wrapper_only:  # in a child with the interpreter on: print the counts as JSON
        print(json.dumps(wrapper_counts()))
        return 0
    # The kernels compile for sm_90 here; the wrapper runs them under the interpreter,
    # which triton reads when the kernels are defined: so in a child process.
    child = subprocess.run([sys.executable, __file__, "--wrapper-only"], capture_output=True,
                           text=True, env={**os.environ, "TRITON_INTERPRET": "1"}, check=True)
    wrapper = json.loads(child.stdout.strip().splitlines()[-1])
    os.environ.pop("TRITON_INTERPRET", None)  # compile for real, not for the interpreter
    rows = kernel_rows(args.blocks)
    print("| kernel | BLOCK_S | warps | registers | spills (B) | largest loop (SASS) "
          "| barriers | LDG | STG |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['kernel']} | {r['block_s']} | {r['warps']} | {r['registers']} "
              f"| {r['spill_bytes']} | {r['loop_instructions']} | {r['loop_barriers']} "
              f"| {r['loop_global_loads']} | {r['loop_global_stores']} |")
    print("\nSerial loops (per frame): global loads the frame waits for / prefetched ones")
    for r in rows:
        for i, loop in enumerate(r.get("serial_loops", [])):
            print(f"  {r['kernel']} BLOCK_S={r['block_s']} loop {i}: "
                  f"{loop['dependent_loads_per_frame']:g} / {loop['prefetched_loads_per_frame']:g}"
                  f" ({loop['frames_per_iteration']} frames an iteration; fetched at least "
                  f"{loop['prefetch_frames']} row stores before it is read)")
    print(f"\nOne CtcLossModule forward + backward on the Triton path: "
          f"{wrapper['host_reads']} host reads, {wrapper['aten_ops']} ATen compute ops")
    if args.ops:
        print(" ".join(wrapper["ops"]))
    if args.json:
        Path(args.json).write_text(json.dumps(dict(kernels=rows, wrapper=wrapper), indent=1))
    spills = [r for r in rows if r["spill_bytes"]]
    for r in spills:
        print(f"SPILLS: {r['kernel']} at BLOCK_S={r['block_s']}: {r['spill_bytes']} bytes")
    return 1 if spills else 0


if __name__ == "__main__":
    sys.exit(main())
