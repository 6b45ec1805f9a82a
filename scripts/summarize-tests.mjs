#!/usr/bin/env node
// Sum vitest JSON reports into the one line CI reads: "N passed, N failed, N skipped".
// A test file that failed without running any test (import error, crash) counts as one failure.
// Usage: node scripts/summarize-tests.mjs report.json [report.json ...]
import { existsSync, readFileSync } from 'node:fs';

export function summarize(files) {
  let passed = 0, failed = 0, skipped = 0;
  for (const file of files) {
    if (!existsSync(file)) { failed += 1; continue; }
    const r = JSON.parse(readFileSync(file, 'utf8'));
    passed += r.numPassedTests;
    failed += r.numFailedTests;
    skipped += r.numPendingTests + r.numTodoTests;
    for (const t of r.testResults ?? []) if (t.status === 'failed' && (t.assertionResults ?? []).length === 0) failed += 1;
  }
  return { passed, failed, skipped };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { passed, failed, skipped } = summarize(process.argv.slice(2));
  console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
  process.exit(failed > 0 ? 1 : 0);
}
