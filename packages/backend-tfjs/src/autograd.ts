/**
 * Gradients for tfjs, stored the way PyTorch stores `.grad`.
 *
 * tfjs has no `.grad` on variables: `tf.variableGrads(f)` runs `f` under a
 * gradient tape and returns fresh gradient tensors. This module keeps one
 * accumulated gradient per `tf.Variable` (a process-wide store, like tfjs's
 * own engine), so the Accelerate loop works unchanged:
 *
 * - `backward(loss)` adds `scale * d loss / d v` to the stored gradient of
 *   every trainable variable the loss depends on (accumulating across calls);
 * - an optimizer step applies the stored gradients of its variables
 *   (`optimizer.applyGradients`) and leaves them in place;
 * - `zeroGrad` drops them (or zero-fills them).
 *
 * The loss may be given two ways:
 *
 * 1. **A closure** (recommended): `backward(() => lossOf(model(x), y))`. The
 *    forward pass runs inside `tf.variableGrads`; its intermediates are freed
 *    at once. Works with any model, including `tf.LayersModel`.
 * 2. **A tensor**, as with PyTorch: `backward(loss)`. tfjs only records a tape
 *    inside a gradient scope, so the forward pass must have been recorded:
 *    a {@link TfjsModule} in training mode starts recording when its `forward`
 *    runs, and {@link startRecording} starts it by hand (e.g. before calling a
 *    LayersModel). The recording stops, and its saved tensors are freed, at the
 *    next `backward`, optimizer step or `zeroGrad`, or at
 *    {@link discardRecording}. Inside {@link noGrad} nothing is recorded — use
 *    it (or `model.eval()`) for evaluation, otherwise the tape grows until one
 *    of those calls.
 * @module
 */
import { engine, tf } from './tf.js';

const store = new Map<tf.Variable, tf.Tensor>();
let recordingOpen = false;
let warnedLongTape = false;
/**
 * Gradient depths saved by the active {@link noGrad} calls, outermost first.
 * A tape started or ended inside noGrad must adjust the depth noGrad restores,
 * or tfjs's `gradientDepth` ends off by one (−1 breaks every later `minimize`).
 */
const noGradSaved: number[] = [];

/** Tape nodes after which a warning suggests `noGrad` / `model.eval()`. */
export const LONG_TAPE_WARNING = 200_000;

/** The accumulated gradient of `v`, or null. */
export function gradOf(v: tf.Tensor): tf.Tensor | null {
  return store.get(v as tf.Variable) ?? null;
}

/** Replace the gradient of `v` (null drops it); the store takes ownership of `g`. */
export function setGrad(v: tf.Variable, g: tf.Tensor | null): void {
  const prev = store.get(v);
  if (prev === g) return;
  if (g) store.set(v, tf.keep(g));
  else store.delete(v);
  prev?.dispose();
}

/** Variables that currently have a gradient. */
export function variablesWithGrad(): tf.Variable[] {
  return [...store.keys()];
}

/** Drop the gradients of `vars` (all when omitted), or zero-fill them. */
export function clearGrads(vars?: Iterable<tf.Variable>, setToNone = true): void {
  for (const v of vars ?? [...store.keys()]) {
    const g = store.get(v);
    if (!g) continue;
    if (setToNone) setGrad(v, null);
    else setGrad(v, tf.zerosLike(g));
  }
}

/** True while a tape opened by {@link startRecording} is recording. */
export function isRecording(): boolean {
  return recordingOpen;
}

/**
 * Start recording operations so a later `backward(lossTensor)` can
 * differentiate them. No-op when already recording or inside another
 * gradient scope (`tf.grads`, `variableGrads`), which records anyway.
 */
export function startRecording(): void {
  const e = engine();
  if (recordingOpen) {
    const n = e.state.activeTape?.length ?? 0;
    if (n > LONG_TAPE_WARNING && !warnedLongTape) {
      warnedLongTape = true;
      process.emitWarning(
        `The tfjs gradient tape holds ${n} operations and keeps their inputs alive: forward passes ran in training mode without a backward. Evaluate inside noGrad(...) or after model.eval(), or pass backward a loss closure.`,
        'AccelerateWarning',
      );
    }
    return;
  }
  // Inside noGrad nothing may be recorded (gradientDepth is 0 only because noGrad zeroed it).
  if (noGradSaved.length > 0) return;
  if (e.state.gradientDepth > 0) return;
  e.startTape();
  recordingOpen = true;
}

/** Stop recording and free every tensor the tape kept for backpropagation. */
export function discardRecording(): void {
  if (!recordingOpen) return;
  const e = engine();
  recordingOpen = false;
  if (noGradSaved.length > 0) {
    // The tape's depth is held by the outermost noGrad, which restores it on exit: close it there.
    noGradSaved[0]--;
    if (noGradSaved[0] > 0 || !e.state.activeTape) return;
  } else {
    e.endTape();
  }
  if ((noGradSaved.length > 0 || e.state.gradientDepth === 0) && e.state.activeTape) {
    for (const node of e.state.activeTape) for (const t of node.saved ?? []) t.dispose();
    e.state.activeTape = null;
  }
}

/** Run `fn` (synchronous) without recording gradients, like `torch.no_grad()`. */
export function noGrad<R>(fn: () => R): R {
  const st = engine().state;
  noGradSaved.push(st.gradientDepth);
  st.gradientDepth = 0;
  try {
    return fn();
  } finally {
    // Restored even when fn throws; a tape ended inside fn lowered the saved depth. Nested
    // noGrads saved 0 and leave the depth at 0 for the outer one.
    st.gradientDepth = noGradSaved.pop()!;
  }
}

function isOnTape(t: tf.Tensor): boolean {
  const tape = engine().state.activeTape;
  return !!tape && tape.some((n) => n.outputs.some((o) => o.id === t.id));
}

function asScalar(loss: unknown): tf.Scalar {
  if (!(loss instanceof tf.Tensor)) {
    throw new TypeError(`backward: the loss must be a tf.Tensor (or a function returning one), got ${loss === null ? 'null' : typeof loss}.`);
  }
  if (loss.size !== 1) {
    throw new Error(`backward: the loss must have exactly one element, got shape [${loss.shape.join(', ')}]. Reduce it first (e.g. tf.mean(loss)).`);
  }
  return (loss.rank === 0 ? loss : loss.reshape([])) as tf.Scalar;
}

/** What {@link accumulateGradients} did. */
export interface GradientResult {
  /** Variables that received a gradient. */
  variables: tf.Variable[];
  /** The loss value a closure returned (the caller owns it); undefined for a tensor loss. */
  value?: tf.Scalar;
}

/**
 * Differentiate `loss` with respect to the trainable variables it depends on
 * (all registered trainable variables, or `vars`) and add `scale` times the
 * result to their stored gradients.
 */
export function accumulateGradients(loss: tf.Tensor | (() => tf.Tensor), scale: number, vars?: tf.Variable[]): GradientResult {
  let f: () => tf.Scalar;
  if (typeof loss === 'function') {
    discardRecording(); // the closure recomputes the forward pass under its own tape
    f = () => asScalar(loss());
  } else {
    if (!isOnTape(loss)) {
      throw new Error(
        'backward: this loss tensor was computed without a gradient tape, and tfjs can only differentiate recorded operations. ' +
          'Pass the loss as a closure — accelerator.backward(() => lossFn(model, batch)) — or compute it after a TfjsModule forward in training mode, ' +
          'or call startRecording() before the forward pass (needed for tf.LayersModel).',
      );
    }
    f = () => asScalar(loss);
  }
  let result: { value: tf.Scalar; grads: tf.NamedTensorMap };
  try {
    result = tf.variableGrads(f, vars);
  } catch (e) {
    if (typeof loss !== 'function') discardRecording();
    throw e;
  }
  const { value, grads } = result;
  const registered = engine().state.registeredVariables;
  const touched: tf.Variable[] = [];
  noGrad(() => {
    for (const [name, g] of Object.entries(grads)) {
      const v = registered[name];
      const prev = store.get(v);
      if (!prev && scale === 1) {
        setGrad(v, g); // the common step: the fresh gradient is stored as it is (no copy)
      } else {
        setGrad(v, tf.tidy(() => (prev ? prev.add(scale === 1 ? g : g.mul(scale)) : g.mul(scale))));
        g.dispose();
      }
      touched.push(v);
    }
  });
  if (typeof loss === 'function') return { variables: touched, value };
  if (value !== loss) value.dispose();
  discardRecording();
  return { variables: touched };
}
