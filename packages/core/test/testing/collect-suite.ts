/**
 * Run a conformance suite's registration without a test runner: its tests
 * are collected (full names joined with " > ") so a test can run them against
 * a deliberately broken implementation and check which fail.
 */
import { expect } from 'vitest';
import type { ConformanceTestApi } from '../../src/testing/conformance.js';

export interface CollectedTest {
  name: string;
  fn: (...args: unknown[]) => void | Promise<void>;
}

/** The tests `register(api)` registers, in order. */
export function collectSuite(register: (api: ConformanceTestApi) => void): CollectedTest[] {
  const tests: CollectedTest[] = [];
  const prefix: string[] = [];
  const api: ConformanceTestApi = {
    describe(name, fn) {
      prefix.push(name);
      fn();
      prefix.pop();
    },
    it(name, fn) {
      tests.push({ name: [...prefix, name].join(' > '), fn });
    },
    expect: expect as unknown as ConformanceTestApi['expect'],
  };
  register(api);
  return tests;
}

/** Full names of the collected tests that throw. */
export async function failingNames(tests: readonly CollectedTest[]): Promise<string[]> {
  const failed: string[] = [];
  for (const t of tests) {
    try {
      await t.fn();
    } catch {
      failed.push(t.name);
    }
  }
  return failed;
}
