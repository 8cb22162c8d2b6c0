"""The GPU cost model's training-step table for this checkout, without a GPU.

Runs the shared cost model (``../shared/tools/gpu_model``, its README; ``--tool`` or
``$CTC_GPU_MODEL`` elsewhere) on this checkout's kernels: compiles them for sm_90, then
simulates a block of each serial loop and of the gradient kernel on one SM from the SASS,
against native CUDA CTC's kernels expressed the same way, and prints a ``CtcLossModule``
step's time (forward + backward) at four shapes, lo / mid / hi latency sets, with the
ratio ours / native. An estimate: a real GPU run (``benchmarks/gpu_check.sh``) replaces it.

Where this design departs from what the tool's scripts assume, it is handled here:
* the serial loops run eight frames an iteration, the rescale on the first: a frame is
  an iteration over its 8 frames (the row stores count them);
* the gradient kernel loops over up to 16 frames a program: its executed path is the
  set-up plus that many passes of the loop body, the active branch (the one with the
  scan's shuffles) taken.

    python benchmarks/gpu_step_model.py [--json OUT]      (or gpu_static.py --model)
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BLOCKS = (128, 256, 512, 1024)


def tool_dir(given: str | None) -> Path:
    folder = Path(given or os.environ.get("CTC_GPU_MODEL")
                 or ROOT.parent / "shared" / "tools" / "gpu_model")
    if not (folder / "model.py").exists():
        raise SystemExit(f"the GPU cost model is not at {folder} (--tool or $CTC_GPU_MODEL)")
    return folder


def serial_frames(art: Path, V, FR) -> dict:
    """Cycles per frame of our two serial loops at each block and latency set."""
    from _seq_loss_kernels import triton_ctc

    out = {}
    for block in BLOCKS:
        sass = art / f"ctc_alpha_beta_kernel_{block}.sass"
        for role, paths in V.loop_paths(str(sass)):
            rescaling, plain = paths[0], paths[-1]
            warps = triton_ctc.num_warps(block)
            # A row's store is one STG a state a thread holds: the frames are the stores
            # over that (two states a thread store a row as two).
            per_thread = max(1, block // (32 * warps))
            stores = sum(bool(re.search(r"\bSTG\b", t)) for _, t in plain)
            frames = max(1, stores // per_thread)
            iterations = triton_ctc.RESCALE_FRAMES // frames
            sequence = [rescaling] + [plain] * (iterations - 1)
            out[f"ours_{role}_{block}"] = {
                scenario: dict(block=round(V.sim_block(sequence, warps,
                                                       FR.cfg_of(scenario, FR.ours_row))[0]
                                           / frames))
                for scenario in V.SCEN}
    return out


def gradient_us(art: Path, P, sim2, paths) -> dict:
    """Our gradient kernel's time per shape and latency set (us), as the tool's
    parallel.py costs a kernel: resident programs per SM, or HBM traffic."""
    from _seq_loss_kernels import triton_ctc

    out = {}
    for shape, (B, T, C, U) in P.SHAPES.items():
        block, block_c = P.block_s(U), P.block_c(C)
        name = f"ctc_grad_kernel_BLOCK_C={block_c}_{block}"
        ins, labels, _ = paths.parse(str(art / f"{name}.sass"))
        # The frame loop: the backward branch whose body holds the scan's shuffles.
        loop = None
        for i, (_, text) in enumerate(ins):
            m = re.search(r"BRA\s+`\((\.L_x_\d+)\)", text)
            if m and labels.get(m.group(1), 1 << 30) < i and any(
                    "SHFL" in t for _, t in ins[labels[m.group(1)]:i]):
                loop = m.group(1)
        start = labels[loop]
        first_shfl = next(i for i in range(start, len(ins)) if "SHFL" in ins[i][1])
        forks = {m.group(1) for _, t in ins[start:first_shfl]
                 if (m := re.search(r"^@!?P\d.*BRA.*`\((\.L_x_\d+)\)", t))}
        candidates = [paths.walk(ins, labels, start, taken={f}) for f in forks]
        candidates.append(paths.walk(ins, labels, start))
        body = max(candidates, key=lambda p: (sum("SHFL" in t for _, t in p), len(p)))
        setup = [x for x in paths.walk(ins, labels, 0, stop_at_backedge=False, max_len=start)
                 if x[0] < ins[start][0]]
        regs, warps = P.registers(str(art), name)
        assert warps == triton_ctc.grad_warps(block, block_c), (name, warps)
        resident = P.resident(warps, regs)
        per = triton_ctc.grad_frames(B, T)
        programs = B * math.ceil(T / per)
        path = setup + body * per
        row = dict(warps=warps, registers=regs, resident=resident, frames_per_program=per,
                   body_instructions=len(body))
        for scenario, lat in P.LAT.items():
            cfg = dict(ldg=lambda t, lat=lat: lat["i64"] if "LDG.E.64" in t else lat["f32"],
                       bar=lat["bar"], alu=lat["alu"])
            steady = sim2.simulate([path] * (warps * resident), iters=2, cfg=cfg,
                                   groups=[w // warps for w in range(warps * resident)])
            one = sim2.simulate([path] * warps, iters=1, cfg=cfg)["per_iter"]
            compute = max(math.ceil(programs / P.SMS) * steady["per_iter"] / resident,
                          math.ceil(programs / (P.SMS * resident)) * one) / P.F * 1e6
            hbm = B * T * (2 * (2 * U + 1) * 4 + 8 * C) / P.BW[scenario] * 1e6
            row[scenario] = dict(us=round(max(compute, hbm), 1))
        out[shape] = row
    return out


def run(tool: Path, keep: Path | None = None) -> dict:
    work = Path(keep or tempfile.mkdtemp(prefix="gpu_model_"))
    art = work / "art"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    subprocess.run([sys.executable, str(tool / "compile.py"), str(ROOT), str(art),
                    *map(str, BLOCKS)], check=True, env=env, stdout=subprocess.DEVNULL)
    shutil.copy(tool / "native_like.sass", art / "native_like.sass")
    sys.path.insert(0, str(tool))
    import frames as FR  # noqa: E402  (the tool's modules)
    import model as M
    import parallel as P
    import paths
    import sim2
    import variants as V

    FR.ART = str(art)
    frames: dict = {}
    FR.run_native(frames)
    frames.update(serial_frames(art, V, FR))
    grads = gradient_us(art, P, sim2, paths)
    parallel = {shape: dict(ours_grad=grads[shape], ours_glue=P.ours_glue(str(art), shape),
                            native=P.native_parallel(str(art), shape)) for shape in P.SHAPES}
    rows = M.table(frames, parallel)
    if keep is None:
        shutil.rmtree(work, ignore_errors=True)
    return dict(rows=rows, grads=grads, model=M)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tool", help="the gpu_model folder (default ../shared/tools/gpu_model)")
    parser.add_argument("--json", help="write the table here")
    parser.add_argument("--keep", help="keep the compiled code and SASS in this folder")
    args = parser.parse_args(argv)
    result = run(tool_dir(args.tool), Path(args.keep) if args.keep else None)
    rows = result["rows"]
    result["model"].show(rows)
    print("\ngradient kernel:", ", ".join(
        f"{shape} {g['warps']} warps, {g['frames_per_program']} frames a program, "
        f"{g['mid']['us']} us mid" for shape, g in result["grads"].items()))
    worst = max(v["ratio_mid"] for v in rows.values())
    print(f"\nours / native (mid): worst {worst:.2f} over the four shapes")
    if args.json:
        Path(args.json).write_text(json.dumps(dict(rows=rows, grads=result["grads"]), indent=1,
                                              default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
