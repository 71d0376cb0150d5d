"""Can learner rank 0 and an engine (rank 1) form vLLM's NCCL weight-transfer communicator on
ONE GPU? (Why the NCCL checksum test in tests/test_gpu.py needs two GPUs.) Each of two spawned
processes joins ``stateless_init_process_group`` on device 0 and broadcasts 4 floats.

    python benchmarks/nccl_one_gpu.py     # H200, session 5: both ranks "NCCL error: invalid usage"
"""

import multiprocessing as mp
import queue
import socket
import time


def member(rank: int, port: int, q) -> None:
    try:
        import torch
        from vllm.distributed.weight_transfer.nccl_common import stateless_init_process_group

        torch.cuda.set_device(0)
        comm = stateless_init_process_group("127.0.0.1", port, rank, 2, device=0)
        t = torch.full((4,), float(rank + 1), device="cuda")
        comm.broadcast(t, src=0, stream=torch.cuda.current_stream())
        torch.cuda.synchronize()
        q.put((rank, "ok", t.tolist()))
    except Exception as e:  # report, do not hang the parent
        q.put((rank, "error", repr(e)[:400]))


def main() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=member, args=(r, port, q)) for r in (0, 1)]
    for p in procs:
        p.start()
    t0, got = time.time(), []
    while len(got) < 2 and time.time() - t0 < 90:
        try:
            got.append(q.get(timeout=5))
        except queue.Empty:
            pass
    for p in procs:
        p.join(timeout=5)
        if p.is_alive():
            p.kill()
    print("NCCL two ranks on one GPU:", got or "no answer in 90 s (hang)", flush=True)


if __name__ == "__main__":
    main()
