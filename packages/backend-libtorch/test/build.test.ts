// The addon's build guards: it exports only the Node-API entry points (so no gloo or
// libtorch symbol/vtable leaks out of it) and binds every libtorch symbol at load.
import { describe, it, expect } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const addon = process.env.ACCELERATE_TORCH_ADDON ?? fileURLToPath(new URL('../build/Release/torch_native.node', import.meta.url));

describe('native addon build', () => {
  it('exports only napi_register_module_v1 and node_api_module_get_api_version_v1, and has no gloo:: symbols', (ctx) => {
    const nm = spawnSync('nm', ['-D', '--defined-only', addon], { encoding: 'utf8' });
    if (nm.error) {
      console.log(`[build.test] skipped: nm not available (${nm.error.message})`);
      ctx.skip();
      return;
    }
    expect(existsSync(addon)).toBe(true);
    const defined = nm.stdout
      .split('\n')
      .filter(Boolean)
      .map((l) => l.trim().split(/\s+/).pop());
    expect(defined.sort()).toEqual(['napi_register_module_v1', 'node_api_module_get_api_version_v1']);
    // Nothing of gloo's own namespace, defined or imported (ProcessGroupGloo's c10d API is fine),
    // and no gloo vtable/typeinfo emitted into the addon even as a local symbol.
    const dyn = spawnSync('nm', ['-D', addon], { encoding: 'utf8' }).stdout;
    expect(dyn).not.toMatch(/_ZN4gloo|_ZTVN4gloo|_ZTIN4gloo/);
    const local = spawnSync('nm', ['-C', addon], { encoding: 'utf8' }).stdout;
    expect(local).not.toMatch(/(vtable|typeinfo) for gloo::/);
  });

  it('is linked with -z now (BIND_NOW), so an ABI mismatch fails at load time', () => {
    const r = spawnSync('readelf', ['-d', addon], { encoding: 'utf8' });
    if (r.error) return;
    expect(r.stdout).toMatch(/BIND_NOW|FLAGS_1.*NOW/);
  });
});
