/**
 * The TensorFlow.js namespace this package uses, and the few engine internals
 * it needs (typed in one place so a tfjs upgrade breaks here, not everywhere).
 * @module
 */
import * as tf from '@tensorflow/tfjs';

export { tf };

/** A node of tfjs's gradient tape (subset of `TapeNode`). */
export interface TapeNodeLike {
  id: number;
  outputs: tf.Tensor[];
  saved?: tf.Tensor[];
}

/** The engine members used for tape recording (present in tfjs 4.x, partly untyped). */
export interface EngineInternals {
  state: {
    gradientDepth: number;
    kernelDepth: number;
    activeTape: TapeNodeLike[] | null;
    registeredVariables: Record<string, tf.Variable>;
  };
  startTape(): void;
  endTape(): void;
}

/** tfjs's engine, with the internals this package touches. */
export function engine(): EngineInternals {
  return tf.engine() as unknown as EngineInternals;
}
