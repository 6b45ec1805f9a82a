"""Python reference of the FSDP benchmark and parity test (bench/fsdp.ts, tests/fsdp-python-parity.test.ts).

Launched once per rank with torchrun's variables (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), e.g.

    .venv-py/bin/torchrun --standalone --nproc_per_node 2 bench/python/fsdp_reference.py \
        --model mlp --mode fsdp1 --sharding FULL_SHARD --init init.safetensors --data data.safetensors \
        --steps 50 --warmup 5 --lr 1e-3 --out out.json

Models (parameter names are torch's, and those of the accelerate-ts models bench/fsdp-models.ts builds):
  mlp          Sequential(Linear(512,1024), ReLU, Linear(1024,1024), ReLU, Linear(1024,10)); cross entropy
               names 0.weight 0.bias 2.weight 2.bias 4.weight 4.bias
  transformer  input [B, 16, 64] floats -> layers: 2 x TransformerEncoderLayer(64, nhead 4, ff 128,
               dropout 0, batch_first, post-norm, relu) -> mean over the sequence -> head: Linear(64, 4);
               cross entropy. names layers.{0,1}.self_attn.in_proj_weight ..., head.weight, head.bias
Modes: ddp (DistributedDataParallel), fsdp1 (FullyShardedDataParallel, ShardingStrategy from --sharding,
device_id cpu, use_orig_params False; transformer: auto-wrap of TransformerEncoderLayer; mlp: one unit
for the whole model), fsdp2 (fully_shard on a cpu mesh of WORLD_SIZE; transformer: each layer then the root;
--sharding FULL_SHARD = reshard_after_forward True, SHARD_GRAD_OP = False, NO_SHARD = a 1-rank shard
group replicated over the world, i.e. replicate()/HSDP with shard size 1).

Every rank loads the same initial weights (--init), and at step s takes rows [r*b, (r+1)*b) of global batch
s % n of --data (inputs [n, G, ...] float32, targets [n, G] int64; b = G / world). AdamW(lr, betas (0.9,
0.999), eps 1e-8, weight_decay 0.01), or with --optim sgd SGD(lr, momentum 0.9, weight_decay 0.01). Writes --out (json): per-step global mean loss (mean over ranks of each
rank's mean loss, warmup steps included), steps/s over the timed steps, and --out with .safetensors in place
of .json: the final full parameters (gathered to rank 0).
"""
import argparse
import json
import os
import time

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

try:
    from safetensors.torch import load_file, save_file
except ImportError:  # e.g. Debian's python3-torch (the addon's libtorch) ships without safetensors
    _DTYPES = {"F32": torch.float32, "F64": torch.float64, "I64": torch.int64, "I32": torch.int32, "F16": torch.float16, "BF16": torch.bfloat16}

    def load_file(path):
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(n))
            data = f.read()
        out = {}
        for k, v in header.items():
            if k == "__metadata__":
                continue
            s, e = v["data_offsets"]
            t = torch.frombuffer(bytearray(data[s:e]), dtype=_DTYPES[v["dtype"]]) if e > s else torch.empty(0, dtype=_DTYPES[v["dtype"]])
            out[k] = t.reshape(v["shape"])
        return out

    def save_file(tensors, path):
        names = {v: k for k, v in _DTYPES.items()}
        header, blobs, at = {}, [], 0
        for k in sorted(tensors):
            b = tensors[k].contiguous().view(-1).view(torch.uint8).numpy().tobytes()
            header[k] = {"dtype": names[tensors[k].dtype], "shape": list(tensors[k].shape), "data_offsets": [at, at + len(b)]}
            blobs.append(b)
            at += len(b)
        h = json.dumps(header, separators=(",", ":")).encode()
        h += b" " * ((8 - len(h) % 8) % 8)
        with open(path, "wb") as f:
            f.write(len(h).to_bytes(8, "little"))
            f.write(h)
            for b in blobs:
                f.write(b)

MLP_SIZES = (512, 1024, 1024, 10)
TF = dict(d_model=64, nhead=4, dim_feedforward=128, seq=16, classes=4, layers=2)


class Transformer(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList(
            [
                nn.TransformerEncoderLayer(TF["d_model"], TF["nhead"], dim_feedforward=TF["dim_feedforward"], dropout=0.0, batch_first=True)
                for _ in range(TF["layers"])
            ]
        )
        self.head = nn.Linear(TF["d_model"], TF["classes"])

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return self.head(x.mean(dim=1))


def build(model_name):
    if model_name == "mlp":
        a, b, c, d = MLP_SIZES
        return nn.Sequential(nn.Linear(a, b), nn.ReLU(), nn.Linear(b, c), nn.ReLU(), nn.Linear(c, d))
    return Transformer()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=["mlp", "transformer"], required=True)
    ap.add_argument("--mode", choices=["ddp", "fsdp1", "fsdp2"], required=True)
    ap.add_argument("--sharding", choices=["FULL_SHARD", "SHARD_GRAD_OP", "NO_SHARD"], default="FULL_SHARD")
    ap.add_argument("--init", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--optim", choices=["adamw", "sgd"], default="adamw")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    rank = int(os.environ["RANK"])
    world = int(os.environ["WORLD_SIZE"])
    dist.init_process_group("gloo", rank=rank, world_size=world)

    model = build(args.model)
    init = load_file(args.init)
    missing, unexpected = model.load_state_dict(init, strict=True)
    assert not missing and not unexpected
    data = load_file(args.data)
    inputs, targets = data["inputs"], data["targets"]
    n_batches, global_batch = targets.shape[0], targets.shape[1]
    assert global_batch % world == 0, f"global batch {global_batch} is not divisible by {world} ranks"
    b = global_batch // world
    # This rank's rows of every global batch, sliced once (views are contiguous along dim 0).
    xs = [inputs[i, rank * b : (rank + 1) * b].contiguous() for i in range(n_batches)]
    ys = [targets[i, rank * b : (rank + 1) * b].contiguous() for i in range(n_batches)]

    if args.mode == "ddp":
        model = nn.parallel.DistributedDataParallel(model)
    elif args.mode == "fsdp1":
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP, ShardingStrategy

        kwargs = {}
        if args.model == "transformer":
            import functools
            from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy

            kwargs["auto_wrap_policy"] = functools.partial(transformer_auto_wrap_policy, transformer_layer_cls={nn.TransformerEncoderLayer})
        model = FSDP(model, device_id=torch.device("cpu"), sharding_strategy=ShardingStrategy[args.sharding], **kwargs)
    else:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        if args.sharding == "NO_SHARD":
            mesh = init_device_mesh("cpu", (world, 1), mesh_dim_names=("replicate", "shard"))
        else:
            mesh = init_device_mesh("cpu", (world,))
        reshard = args.sharding != "SHARD_GRAD_OP"
        if args.model == "transformer":
            for layer in model.layers:
                fully_shard(layer, mesh=mesh, reshard_after_forward=reshard)
        fully_shard(model, mesh=mesh, reshard_after_forward=reshard)

    if args.optim == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    else:  # SGD sees the gradients' scale (AdamW is invariant to it): catches a sum in place of a mean
        opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=0.01)
    losses = []

    def step(s):
        i = s % n_batches
        loss = F.cross_entropy(model(xs[i]), ys[i])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.detach())

    for s in range(args.warmup):
        step(s)
    dist.barrier()
    t0 = time.perf_counter()
    for s in range(args.warmup, args.warmup + args.steps):
        step(s)
    dist.barrier()
    secs = time.perf_counter() - t0

    # Global mean loss of each step: the mean over ranks (every rank has b rows).
    curve = torch.stack(losses)
    dist.all_reduce(curve)
    curve = (curve / world).tolist()

    # Final full parameters on rank 0.
    if args.mode == "ddp":
        full = {k: v.detach().clone() for k, v in model.module.state_dict().items()}
    elif args.mode == "fsdp1":
        from torch.distributed.fsdp import FullStateDictConfig, StateDictType

        with FSDP.state_dict_type(model, StateDictType.FULL_STATE_DICT, FullStateDictConfig(offload_to_cpu=False, rank0_only=True)):
            full = {k: v.detach().clone() for k, v in model.state_dict().items()}
    else:
        from torch.distributed.tensor import DTensor

        full = {k: (v.full_tensor() if isinstance(v, DTensor) else v).detach().clone() for k, v in model.state_dict().items()}

    if rank == 0:
        out = {
            "side": "python",
            "mode": args.mode,
            "model": args.model,
            "sharding": args.sharding,
            "optim": args.optim,
            "world": world,
            "steps": args.steps,
            "warmup": args.warmup,
            "stepsPerSec": args.steps / secs,
            "losses": curve,
            "torch": torch.__version__,
            "params": os.path.splitext(args.out)[0] + ".safetensors",
        }
        save_file({k: v.contiguous() for k, v in full.items()}, out["params"])
        with open(args.out, "w") as f:
            json.dump(out, f)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
