#!/usr/bin/env node
// Writes the config file's JSON Schema to dist/config-schema.json.
// Runs after `tsc` (see the package's build script): it imports the compiled
// schema from ../dist so the JSON and the TypeScript table can never differ.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, '..', 'dist');
const { toJsonSchema } = await import(new URL('../dist/config/schema.js', import.meta.url).href);

const out = join(dist, 'config-schema.json');
mkdirSync(dist, { recursive: true });
writeFileSync(out, `${JSON.stringify(toJsonSchema(), null, 2)}\n`);
console.log(`wrote ${out}`);
