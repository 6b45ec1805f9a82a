// Core's backend conformance suite on the tfjs cpu engine (one engine per file: tfjs has one active backend per process).
import { describe, it, expect } from 'vitest';
import { runBackendConformance } from '@accelerate/core/testing';
import { TfjsBackend } from '../../src/index.js';
import { fixtures } from '../fixtures/conformance.js';

runBackendConformance('tfjs-cpu', async () => {
  const b = await TfjsBackend.create({ engine: 'cpu' });
  expect(b.engine).toBe('cpu');
  return b;
}, { describe, it, expect }, { dtypes: ['float32', 'int32', 'bool'], fixtures });
