"""Two processes with torch.distributed (gloo, CPU), each training a DDP-wrapped model
with CtcLossModule on its half of a batch; writes the all-reduced gradients and, for
comparison, the single-process gradients on the whole batch.

    python tests/ddp_worker.py OUT.pt REDUCTION
"""
import os
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import seq_loss_util as S  # noqa: E402

BATCH, FRAMES, FEATURES, CLASSES = 8, 30, 12, 7


def data():
    g = torch.Generator().manual_seed(0)
    features = torch.randn(BATCH, FRAMES, FEATURES, generator=g)
    labels = torch.randint(1, CLASSES, (BATCH, 6), generator=g)
    labels[torch.arange(6)[None, :] >= torch.randint(1, 7, (BATCH, 1), generator=g)] = -100
    lengths = torch.randint(16, FRAMES + 1, (BATCH,), generator=g)
    return features, labels, lengths


def model():
    torch.manual_seed(1)
    return torch.nn.Sequential(torch.nn.Linear(FEATURES, 16), torch.nn.Tanh(),
                               torch.nn.Linear(16, CLASSES)).double()


def grads(net):
    return [p.grad.detach().clone() for p in net.parameters()]


def worker(rank, world, port, out, reduction):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    features, labels, lengths = data()
    half = slice(rank * BATCH // world, (rank + 1) * BATCH // world)
    net = torch.nn.parallel.DistributedDataParallel(model())
    loss = S.CtcLossModule(reduction=reduction)(net(features[half].double()), labels[half],
                                                lengths[half])
    loss.backward()  # DDP all-reduces: every rank ends with the mean over ranks
    if rank == 0:
        single = model()
        S.CtcLossModule(reduction=reduction)(single(features.double()), labels,
                                             lengths).backward()
        torch.save({"ddp": grads(net.module), "single": grads(single)}, out)
    # Both ranks finish communicating before either leaves.
    dist.barrier()
    dist.destroy_process_group()
    # Then leave without interpreter finalization. Gloo's worker threads outlive
    # destroy_process_group (torch 2.13), and the one that ran DDP's all-reduce can drop
    # its last reference to that finished work a moment after the main thread has moved
    # on. The work holds Python objects (in a core dump of one abort, through the
    # thread-local state it captured in backward), so dropping it takes the GIL. If the
    # thread waits for the GIL before finalization starts and gets it after, CPython ends
    # it with a forced unwind through a noexcept destructor, and std::terminate aborts
    # the rank: "terminate called without an active exception". A barrier cannot rule
    # this out (gloo runs two worker threads; the other may run the barrier). Exiting
    # here, with the results saved, does: finalization never starts.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    out, reduction = sys.argv[1], sys.argv[2]
    import socket

    with socket.socket() as s:  # a free port on loopback
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(worker, args=(2, port, out, reduction), nprocs=2, join=True)
