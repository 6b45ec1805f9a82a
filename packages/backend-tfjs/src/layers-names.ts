/**
 * Stable parameter names for `tf.LayersModel`. tfjs names layers
 * `dense_Dense1`, `dense_Dense2`, … with a process-wide counter, so the same
 * architecture built twice gets different names. Here a layer keeps the name
 * the user gave it (`fc1`), and an auto-named layer is called by its position
 * (`layers.0`); the weight's own short name follows (`fc1.kernel`,
 * `layers.0.bias`, `bn.moving_mean`). Nested models nest the prefix.
 * @module
 */
import { tf } from './tf.js';

/** One weight of a LayersModel with its stable name. */
export interface LayersModelWeight {
  /** Stable dotted name (`fc1.kernel`). */
  name: string;
  /** The variable holding the value. */
  variable: tf.Variable;
  /** Class name of the layer that owns it (`Dense`, `Conv2D`, …). */
  layerClass: string;
  /** The weight's own name inside its layer (`kernel`, `bias`, `gamma`, …). */
  short: string;
  trainable: boolean;
}

function toSnakeCase(name: string): string {
  const s = name.replace(/(.)([A-Z][a-z0-9]+)/g, '$1_$2').replace(/([a-z])([A-Z])/g, '$1_$2').toLowerCase();
  return s[0] === '_' ? `private${s}` : s;
}

/** True when `layer.name` is one tfjs generated (`<snake_class>_<Class><n>`). */
export function isAutoNamed(layer: tf.layers.Layer): boolean {
  const cls = layer.getClassName();
  const name = layer.name;
  const prefix = `${toSnakeCase(cls)}_${cls}`;
  return name.startsWith(prefix) && /^\d+$/.test(name.slice(prefix.length));
}

/** Every weight of `model` (trainable and not), in layer order, with stable names. */
export function layersModelWeights(model: tf.LayersModel, prefix = ''): LayersModelWeight[] {
  const out: LayersModelWeight[] = [];
  const seen = new Set<string>();
  model.layers.forEach((layer, i) => {
    const layerPrefix = `${prefix}${isAutoNamed(layer) ? `layers.${i}` : layer.name}.`;
    if (layer instanceof tf.LayersModel) {
      for (const w of layersModelWeights(layer, layerPrefix)) push(w);
      return;
    }
    const trainable = new Set(layer.trainableWeights.map((w) => w.read()));
    for (const lv of layer.weights) {
      const short = lv.originalName.slice(lv.originalName.lastIndexOf('/') + 1);
      const variable = lv.read() as tf.Variable;
      push({ name: layerPrefix + short, variable, layerClass: layer.getClassName(), short, trainable: trainable.has(variable) });
    }
  });
  return out;

  function push(w: LayersModelWeight): void {
    let name = w.name;
    for (let k = 1; seen.has(name); k++) name = `${w.name}_${k}`;
    seen.add(name);
    out.push({ ...w, name });
  }
}
