// FSDP units from auto-wrap policies, on real backend-libtorch modules: transformer classes,
// torch's size policy, function policies, ignored modules, tied parameters.
import { describe, expect, it } from 'vitest';
import * as torch from '@accelerate/backend-libtorch';
import { planUnits, type UnitPlan } from '../src/wrap-policy.js';
import { resolveFsdpPlan } from '../src/options.js';

const { nn } = torch;
type Module = torch.nn.Module;
type Tensor = torch.Tensor;

const backend = new torch.LibtorchBackend();
const models = backend.models;
const numel = (t: Tensor) => backend.shape(t).reduce((a, b) => a * b, 1);

/** Embedding -> 2 encoder layers (in a ModuleList) -> head whose weight is the embedding's (tied). */
class TinyEncoder extends nn.Module {
  embed = new nn.Embedding(10, 8);
  layers = new nn.ModuleList([0, 1].map(() => new nn.TransformerEncoderLayer(8, 2, { dimFeedforward: 16, dropout: 0 })));
  head = new nn.Linear(8, 10);
  constructor() {
    super();
    this.head.weight = this.embed.weight;
  }
  forward(x: Tensor): Tensor {
    let h = this.embed.forward(x);
    for (let i = 0; i < this.layers.length; i++) h = (this.layers.at(i) as torch.nn.TransformerEncoderLayer).forward(h);
    return this.head.forward(h);
  }
}

const none = () => false;

/** Every parameter once, across units and ignored, with exactly namedParameters' names. */
function expectPartition(model: Module, plan: UnitPlan<Module, Tensor>) {
  const got = [...plan.units.flatMap((u) => u.params), ...plan.ignored].map(({ name, param }) => [name, param] as const);
  const want = models.namedParameters(model);
  expect(got.map(([n]) => n).sort()).toEqual(want.map(([n]) => n).sort());
  const byName = new Map(want);
  for (const [n, p] of got) expect(byName.get(n)).toBe(p);
}

const unitNames = (plan: UnitPlan<Module, Tensor>) => plan.units.map((u) => u.name);

describe('planUnits', () => {
  it('NO_WRAP: the root alone holds every parameter (the tied one once)', () => {
    const model = new TinyEncoder();
    const plan = planUnits(model, models, { kind: 'none' }, none);
    expect(plan.units).toHaveLength(1);
    expect(plan.units[0]).toMatchObject({ name: '', className: 'TinyEncoder', module: model });
    expect(plan.units[0].params.map((p) => p.name)).not.toContain('head.weight');
    expectPartition(model, plan);
  });

  it('[B63] TRANSFORMER_BASED_WRAP wraps each listed layer; post-order, root last; names equal namedParameters', () => {
    const model = new TinyEncoder();
    const plan = planUnits(model, models, { kind: 'transformer', classes: ['TransformerEncoderLayer'] }, none);
    expect(unitNames(plan)).toEqual(['layers.0', 'layers.1', '']);
    expect(plan.units.map((u) => u.className)).toEqual(['TransformerEncoderLayer', 'TransformerEncoderLayer', 'TinyEncoder']);
    expect(plan.units[0].params.map((p) => p.name)).toEqual(
      models
        .namedParameters(model)
        .map(([n]) => n)
        .filter((n) => n.startsWith('layers.0.')),
    );
    expect(plan.units[2].params.map((p) => p.name)).toEqual(['embed.weight', 'head.bias']);
    expectPartition(model, plan);
  });

  it('[B63] TRANSFORMER_BASED_WRAP with a class the model does not contain: error naming it and the classes it has', () => {
    const model = new TinyEncoder();
    expect(() => planUnits(model, models, { kind: 'transformer', classes: ['LlamaDecoderLayer'] }, none)).toThrow(
      /no module of class "LlamaDecoderLayer" .*The model's module classes: .*Embedding, .*MultiheadAttention, .*TransformerEncoderLayer/,
    );
    expect(() => planUnits(model, models, { kind: 'transformer', classes: [] }, none)).toThrow(/needs the layer classes to wrap: set fsdp_transformer_layer_cls_to_wrap/);
  });

  it('[B63] the plan from the file wraps the same way (class list from fsdp_transformer_layer_cls_to_wrap)', () => {
    const fsdp = resolveFsdpPlan({
      numProcesses: 2,
      user: { autoWrapPolicy: 'TRANSFORMER_BASED_WRAP', transformerLayerClsToWrap: 'TransformerEncoderLayer' },
    });
    const model = new TinyEncoder();
    expect(unitNames(planUnits(model, models, fsdp.autoWrap, fsdp.isIgnored))).toEqual(['layers.0', 'layers.1', '']);
  });

  it('[B63] SIZE_BASED_WRAP with min_num_params 0 wraps nothing by size', () => {
    const model = new TinyEncoder();
    expect(unitNames(planUnits(model, models, { kind: 'size', minNumParams: 0 }, none, { numel }))).toEqual(['']);
    const fsdp = resolveFsdpPlan({ numProcesses: 2, user: { autoWrapPolicy: 'SIZE_BASED_WRAP', minNumParams: 0 } });
    expect(unitNames(planUnits(model, models, fsdp.autoWrap, none, { numel }))).toEqual(['']);
  });

  it('SIZE_BASED_WRAP follows torch: children first, wrap when the unwrapped rest reaches the threshold; not inside MultiheadAttention, never a ModuleList', () => {
    const model = new TinyEncoder();
    const layer = model.layers.at(0);
    const layerSize = layer.parameters().reduce((a, p) => a + numel(p), 0);
    const attn = (layer as torch.nn.TransformerEncoderLayer).self_attn.parameters().reduce((a, p) => a + numel(p), 0);
    expect([layerSize, attn]).toEqual([600, 288]);
    // A threshold of one layer: each layer is a unit, its pieces are not; the ModuleList (1200) is not wrapped.
    expect(unitNames(planUnits(model, models, { kind: 'size', minNumParams: 600 }, none, { numel }))).toEqual(['layers.0', 'layers.1', '']);
    // 100: linear1 (144) and linear2 (136) become units; self_attn (288) is a forced leaf; the layer's rest (320) makes it a unit;
    // head = tied weight (80, unwrapped) + bias (10) = 90 < 100.
    const plan = planUnits(model, models, { kind: 'size', minNumParams: 100 }, none, { numel });
    expect(unitNames(plan)).toEqual(['layers.0.linear1', 'layers.0.linear2', 'layers.0', 'layers.1.linear1', 'layers.1.linear2', 'layers.1', '']);
    expect(plan.units[2].params.reduce((a, p) => a + numel(p.param), 0)).toBe(320);
    expectPartition(model, plan);
    // Above the whole model: the root alone.
    expect(unitNames(planUnits(model, models, { kind: 'size', minNumParams: 10_000 }, none, { numel }))).toEqual(['']);
  });

  it('a function policy is asked per module (post-order) with the not-yet-wrapped parameters', () => {
    const model = new TinyEncoder();
    const calls: Array<[string, string, number, number]> = [];
    const plan = planUnits(
      model,
      models,
      {
        kind: 'function',
        fn: (info) => {
          calls.push([info.name, info.className, info.numParams, info.depth]);
          return info.className === 'Linear' && info.name.startsWith('layers.0');
        },
      },
      none,
      { numel },
    );
    expect(unitNames(plan)).toEqual(['layers.0.self_attn.out_proj', 'layers.0.linear1', 'layers.0.linear2', '']);
    expect(calls.find(([n]) => n === 'layers.0')).toEqual(['layers.0', 'TransformerEncoderLayer', 600 - 72 - 144 - 136, 2]);
    expect(calls.at(-1)?.[0]).toBe('head');
    expect(calls.some(([n]) => n === '')).toBe(false); // the root is a unit anyway
    expectPartition(model, plan);
  });

  it('a tied parameter goes to the first unit (post-order) that holds it, under its namedParameters name', () => {
    const model = new TinyEncoder();
    const plan = planUnits(model, models, { kind: 'function', fn: (i) => i.name === 'head' }, none, { numel });
    expect(unitNames(plan)).toEqual(['head', '']);
    expect(plan.units[0].params.map((p) => p.name)).toEqual(['embed.weight', 'head.bias']);
    expect(plan.units[0].params[0].param).toBe(model.embed.weight);
    expect(plan.units[1].params.map((p) => p.name)).not.toContain('embed.weight');
    expectPartition(model, plan);
  });

  it('ignored modules (names or a full-match regex) are left out with their subtree and never wrapped', () => {
    const model = new TinyEncoder();
    const byName = resolveFsdpPlan({ numProcesses: 2, user: { ignoredModules: ['layers.1'] } }).isIgnored;
    const plan = planUnits(model, models, { kind: 'transformer', classes: ['TransformerEncoderLayer'] }, byName);
    expect(unitNames(plan)).toEqual(['layers.0', '']);
    expect(plan.ignored.map((p) => p.name)).toEqual(
      models
        .namedParameters(model)
        .map(([n]) => n)
        .filter((n) => n.startsWith('layers.1.')),
    );
    expectPartition(model, plan);
    const byRegex = resolveFsdpPlan({ numProcesses: 2, user: { ignoredModules: 'layers\\.\\d\\.norm\\d' } }).isIgnored;
    const p2 = planUnits(model, models, { kind: 'none' }, byRegex);
    expect(p2.ignored.map((p) => p.name)).toEqual(['layers.0.norm1.weight', 'layers.0.norm1.bias', 'layers.0.norm2.weight', 'layers.0.norm2.bias', 'layers.1.norm1.weight', 'layers.1.norm1.bias', 'layers.1.norm2.weight', 'layers.1.norm2.bias']);
    expectPartition(model, p2);
    expect(() => planUnits(model, models, { kind: 'none' }, () => true)).toThrow(/root cannot be ignored/);
  });

  it('a backend without the module tree: the error names the missing method', () => {
    const { namedChildren: _n, ...rest } = models;
    expect(() => planUnits(new TinyEncoder(), rest, { kind: 'none' }, none)).toThrow(/needs models\.namedChildren\(\)/);
    expect(() => planUnits(new TinyEncoder(), models, { kind: 'size', minNumParams: 5 }, none)).toThrow(/needs the parameters' sizes/);
  });
});
