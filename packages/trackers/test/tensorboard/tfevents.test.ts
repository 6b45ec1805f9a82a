import { describe, it, expect } from 'vitest';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { inflateSync } from 'node:zlib';
import { TrackerHub, TrackerRegistry } from '@accelerate/core/internal';
import { crc32c, maskedCrc32c } from '../../src/tensorboard/crc32c.js';
import { ProtoWriter } from '../../src/tensorboard/protobuf.js';
import { tfRecord } from '../../src/tensorboard/tfevents.js';
import { crc32, encodePng, pngInfo } from '../../src/tensorboard/png.js';
import { builtinTrackers } from '../../src/index.js';
import { runPython, tempDir, tensorboardPython } from '../helpers.js';

describe('tfevents building blocks', () => {
  it('CRC-32C matches the published check value and TFRecord framing is length|crc|data|crc', () => {
    expect(crc32c(new TextEncoder().encode('123456789'))).toBe(0xe3069283);
    expect(crc32(new TextEncoder().encode('123456789'))).toBe(0xcbf43926);
    const data = new Uint8Array([1, 2, 3]);
    const rec = tfRecord(data);
    const dv = new DataView(rec.buffer);
    expect(rec.length).toBe(19);
    expect(dv.getBigUint64(0, true)).toBe(3n);
    expect(dv.getUint32(8, true)).toBe(maskedCrc32c(rec.subarray(0, 8)));
    expect([...rec.subarray(12, 15)]).toEqual([1, 2, 3]);
    expect(dv.getUint32(15, true)).toBe(maskedCrc32c(data));
    const c = crc32c(data);
    expect(maskedCrc32c(data)).toBe((((c >>> 15) | (c << 17)) + 0xa282ead8) >>> 0);
  });

  it('protobuf varints, negative int64 and packed doubles are encoded as protobuf does', () => {
    expect([...new ProtoWriter().varint(1, 300).finish()]).toEqual([0x08, 0xac, 0x02]);
    const neg = new ProtoWriter().varint(2, -1).finish();
    expect(neg.length).toBe(11);
    expect([...neg]).toEqual([0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
    expect([...new ProtoWriter().string(1, 'hi').finish()]).toEqual([0x0a, 2, 0x68, 0x69]);
    expect([...new ProtoWriter().packedDoubles(6, [1]).finish()]).toEqual([0x32, 8, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f]);
  });

  it('encodePng writes a valid PNG whose pixels inflate back exactly', () => {
    const px = Uint8Array.from({ length: 3 * 2 * 3 }, (_, i) => (i * 37) % 256);
    const png = encodePng(px, 3, 2, 3);
    expect(pngInfo(png)).toEqual({ width: 3, height: 2, channels: 3 });
    // IDAT payload starts after signature (8) + IHDR chunk (25) + IDAT length/type (8).
    const idatLen = new DataView(png.buffer).getUint32(33);
    const raw = inflateSync(png.subarray(41, 41 + idatLen));
    expect([...raw]).toEqual([0, ...px.subarray(0, 9), 0, ...px.subarray(9)]);
    expect(() => encodePng(px, 3, 3, 3)).toThrow(/expected 27/);
  });
});

const READER = String.raw`
import sys, json, base64
from tensorboard.backend.event_processing import event_accumulator as ea
from tensorboard.plugins.hparams import plugin_data_pb2
from google.protobuf import json_format
acc = ea.EventAccumulator(sys.argv[1], size_guidance={ea.SCALARS: 0, ea.IMAGES: 0, ea.HISTOGRAMS: 0, ea.TENSORS: 0})
acc.Reload()
tags = acc.Tags()
out = {"tags": {k: sorted(v) for k, v in tags.items() if isinstance(v, list)}, "scalars": {}, "text": {}, "images": {}, "histograms": {}, "hparams": {}}
for t in tags["scalars"]:
    out["scalars"][t] = [[e.step, e.value] for e in acc.Scalars(t)]
for t in tags["images"]:
    out["images"][t] = [[e.step, e.width, e.height, base64.b64encode(e.encoded_image_string).decode()] for e in acc.Images(t)]
for t in tags["histograms"]:
    out["histograms"][t] = [[e.step, {k: (list(getattr(e.histogram_value, k)) if k.startswith("bucket") else getattr(e.histogram_value, k)) for k in ["min", "max", "num", "sum", "sum_squares", "bucket_limit", "bucket"]}] for e in acc.Histograms(t)]
for t in tags["tensors"]:
    md = acc.SummaryMetadata(t)
    plugin = md.plugin_data.plugin_name
    if plugin == "text":
        out["text"][t] = [[e.step, [s.decode() for s in e.tensor_proto.string_val]] for e in acc.Tensors(t)]
    elif plugin == "hparams":
        d = plugin_data_pb2.HParamsPluginData.FromString(md.plugin_data.content)
        out["hparams"][t] = json_format.MessageToDict(d, preserving_proto_field_name=True)
print(json.dumps(out))
`;

describe('TensorBoardTracker read back by TensorBoard itself', () => {
  const { python, reason } = tensorboardPython();

  it.skipIf(!python)(`TensorBoard's event reader reads every scalar, text, image, histogram and hparam back${reason ? ` (skipped: ${reason})` : ''}`, async () => {
    const dir = tempDir('tb');
    const hub = new TrackerHub({ logWith: ['tensorboard'], loggingDir: dir, registry: new TrackerRegistry(), loadBuiltins: async () => builtinTrackers, warn: () => {} });
    await hub.initTrackers('run', { lr: 0.001, optimizer: 'adam', warmup: true, model: { layers: 12 } });
    const losses = [2.5, 1.25, 0.6, 0.3333333333, 0.1];
    for (let s = 0; s < losses.length; s++) await hub.log({ loss: losses[s], ok: s % 2 === 0, acc: { train: s / 10, val: s / 20 } }, s);
    await hub.log({ note: 'hello tensorboard ✓' }, 2);
    await hub.log({ loss: NaN }, 5); // skipped for TensorBoard, kept in the JSONL stream
    const rgb = Uint8Array.from({ length: 4 * 3 * 3 }, (_, i) => (i * 53) % 256);
    await hub.logImages({ sample: { data: rgb, width: 4, height: 3, channels: 3 } }, 3);
    await hub.logHistograms({ weights: [0, 1, 1, 2, 3, 4] }, 4, 4);
    await hub.endTraining();

    const out = runPython(python!, READER, [join(dir, 'run')]) as {
      tags: Record<string, string[]>;
      scalars: Record<string, Array<[number, number]>>;
      text: Record<string, Array<[number, string[]]>>;
      images: Record<string, Array<[number, number, number, string]>>;
      histograms: Record<string, Array<[number, Record<string, unknown>]>>;
      hparams: Record<string, Record<string, unknown>>;
    };
    expect(out.scalars.loss).toEqual(losses.map((v, s) => [s, Math.fround(v)]));
    expect(out.scalars.ok).toEqual([[0, 1], [1, 0], [2, 1], [3, 0], [4, 1]]);
    // PyTorch's add_text (what Python Accelerate calls) tags text as '<key>/text_summary'.
    expect(out.text['note/text_summary']).toEqual([[2, ['hello tensorboard ✓']]]);
    expect(out.text.note).toBeUndefined();
    expect(out.images.sample.map(([s, w, h]) => [s, w, h])).toEqual([[3, 4, 3]]);
    expect(Buffer.from(out.images.sample[0][3], 'base64').equals(Buffer.from(encodePng(rgb, 4, 3, 3)))).toBe(true);
    expect(out.histograms.weights).toEqual([[4, { min: 0, max: 4, num: 6, sum: 11, sum_squares: 31, bucket_limit: [1, 2, 3, 4], bucket: [3, 1, 1, 1] }]]);
    expect(out.hparams['_hparams_/session_start_info'].session_start_info).toMatchObject({
      hparams: { lr: 0.001, optimizer: 'adam', warmup: true, 'model/layers': 12 },
    });
    expect(out.hparams['_hparams_/session_end_info']).toMatchObject({ session_end_info: { status: 'STATUS_SUCCESS' } });
    // Grouped scalars go to one sub-run per name, like add_scalars.
    const subRuns = readdirSync(join(dir, 'run')).filter((f) => f.startsWith('acc_')).sort();
    expect(subRuns).toEqual(['acc_train', 'acc_val']);
    const sub = runPython(python!, READER, [join(dir, 'run', 'acc_val')]) as { scalars: Record<string, Array<[number, number]>> };
    expect(sub.scalars.acc).toEqual([0, 1, 2, 3, 4].map((s) => [s, Math.fround(s / 20)]));
    expect(readFileSync(join(dir, 'run', 'hparams.yml'), 'utf8')).toBe('lr: 0.001\noptimizer: adam\nwarmup: true\nmodel:\n  layers: 12\n');
  });
});

describe('text tags match PyTorch SummaryWriter.add_text', () => {
  const { python } = tensorboardPython();
  const torch = python ? runPythonOk(python, 'import torch.utils.tensorboard') : false;

  it.skipIf(!torch)(`a logged string has the same tag as Python Accelerate's add_text writes${torch ? '' : ' (skipped: no torch in the TensorBoard Python)'}`, async () => {
    const dir = tempDir('tb-text');
    const hub = new TrackerHub({ logWith: ['tensorboard'], loggingDir: dir, registry: new TrackerRegistry(), loadBuiltins: async () => builtinTrackers, warn: () => {} });
    await hub.initTrackers('ours', {});
    await hub.log({ note: 'same tag' }, 1);
    await hub.endTraining();
    runPython(python!, `from torch.utils.tensorboard import SummaryWriter\nimport sys, json\nw = SummaryWriter(sys.argv[1]); w.add_text('note', 'same tag', 1); w.close(); print(json.dumps(1))`, [join(dir, 'py')]);
    const ours = runPython(python!, READER, [join(dir, 'ours')]) as { text: Record<string, unknown> };
    const theirs = runPython(python!, READER, [join(dir, 'py')]) as { text: Record<string, unknown> };
    expect(Object.keys(ours.text)).toEqual(Object.keys(theirs.text));
    expect(ours.text).toEqual(theirs.text);
  }, 120_000);
});

function runPythonOk(python: string, code: string): boolean {
  try {
    runPython(python, `${code}\nprint(1)`);
    return true;
  } catch {
    return false;
  }
}
