/** Test models (libtorch), shaped like Accelerate's test fixtures. */
import * as torch from '../../../backend-libtorch/src/index.js';

const { nn } = torch;

/** BatchNorm over [N, C] (batch_norm accepts 2-D input; the class name is what matters to the tests). */
export class BatchNorm1d extends nn.BatchNorm2d {}

/** Accelerate's ModelForTest: Linear(3,4) -> BatchNorm1d(4) -> Linear(4,5). */
export class ModelForTest extends nn.Module {
  linear1 = new nn.Linear(3, 4);
  batchnorm = new BatchNorm1d(4);
  linear2 = new nn.Linear(4, 5);
  forward(x: torch.Tensor): torch.Tensor {
    return this.linear2.forward(this.batchnorm.forward(this.linear1.forward(x)));
  }
}

/** Named children layer1..3 (nn.Sequential(OrderedDict(...)) in the Python tests). */
export class ThreeLayers extends nn.Module {
  layer1 = new ModelForTest();
  layer2 = new ModelForTest();
  layer3 = new ModelForTest();
  forward(x: torch.Tensor): torch.Tensor {
    return this.layer3.forward(this.layer2.forward(this.layer1.forward(x)));
  }
}

/** Four named Linear layers of the given sizes. */
export class FourLinears extends nn.Module {
  linear1: torch.nn.Linear;
  linear2: torch.nn.Linear;
  linear3: torch.nn.Linear;
  linear4: torch.nn.Linear;
  constructor(a: number, b: number) {
    super();
    this.linear1 = new nn.Linear(a, a);
    this.linear2 = new nn.Linear(b, b);
    this.linear3 = new nn.Linear(a, a);
    this.linear4 = new nn.Linear(b, b);
  }
  forward(x: torch.Tensor): torch.Tensor {
    return x;
  }
}

/** A pre-norm transformer-like block: x + mlp(ln(x)), x + attn(ln(x)). */
export class Block extends nn.Module {
  ln1: torch.nn.LayerNorm;
  attn: torch.nn.MultiheadAttention;
  ln2: torch.nn.LayerNorm;
  fc1: torch.nn.Linear;
  fc2: torch.nn.Linear;
  constructor(d: number, heads: number) {
    super();
    this.ln1 = new nn.LayerNorm([d]);
    this.attn = new nn.MultiheadAttention(d, heads);
    this.ln2 = new nn.LayerNorm([d]);
    this.fc1 = new nn.Linear(d, 4 * d);
    this.fc2 = new nn.Linear(4 * d, d);
  }
  forward(x: torch.Tensor): torch.Tensor {
    const h = x.add(this.attn.forward(this.ln1.forward(x)));
    return h.add(this.fc2.forward(this.fc1.forward(this.ln2.forward(h)).relu()));
  }
}

/** Embedding -> n blocks -> final norm -> head tied to the embedding. */
export class TinyLM extends nn.Module {
  embed: torch.nn.Embedding;
  layers: torch.nn.ModuleList;
  norm: torch.nn.LayerNorm;
  head: torch.nn.Linear;
  constructor(vocab: number, d: number, n: number, heads = 2) {
    super();
    this.embed = new nn.Embedding(vocab, d);
    this.layers = new nn.ModuleList(Array.from({ length: n }, () => new Block(d, heads)));
    this.norm = new nn.LayerNorm([d]);
    this.head = new nn.Linear(d, vocab, { bias: false });
    this.head.weight = this.embed.weight;
  }
  forward(ids: torch.Tensor): torch.Tensor {
    let x = this.embed.forward(ids);
    for (const layer of this.layers) x = (layer as Block).forward(x);
    return this.head.forward(this.norm.forward(x));
  }
}

export { torch, nn };

/**
 * `backend` as seen on a machine with `n` GPUs (`cuda:0`..): only `devices()`
 * differs, so device maps can be planned for GPUs this machine lacks, as
 * Accelerate's own tests plan them on cpu-only runners.
 */
export function withGpus<B extends torch.LibtorchBackend>(backend: B, n: number): B {
  const gpus = Array.from({ length: n }, (_, i) => ({ name: `cuda:${i}`, kind: 'cuda' }));
  return Object.create(backend, { devices: { value: () => [...gpus, { name: 'cpu', kind: 'cpu' }] } }) as B;
}
