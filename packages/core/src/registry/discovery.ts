/**
 * Finding what the user installed — backends, trackers, strategy plugins —
 * through a field in each package's own `package.json`, so that core names no
 * downstream package and a third-party package in `node_modules` is found
 * exactly as ours are.
 *
 * ## The `accelerate` field
 *
 * ```jsonc
 * {
 *   "name": "@acme/accelerate-backend",
 *   "accelerate": {
 *     // a compute backend: registered under `name` with `priority` (higher is tried first;
 *     // ours: libtorch 10, tfjs 5); `entry` exports `accelerateBackend` (a BackendModuleEntry)
 *     "backend": { "name": "acme", "entry": "./dist/backend-entry.js", "priority": 20,
 *                  // optional: a CommonJS module exporting `seedIfLoaded(seed): boolean`,
 *                  // which `setSeed` calls synchronously (see setSeed)
 *                  "seed": "./seed-entry.cjs" },
 *     // tracker classes: `entry` exports `accelerateTrackers` ({ [logWithName]: TrackerClass })
 *     "trackers": "./dist/trackers-entry.js",
 *     // a plugin; with `strategy`, the one a configuration's `distributed_type` selects:
 *     // `entry` exports `acceleratePlugin()` building it from the configuration alone
 *     "plugin": { "entry": "./dist/index.js", "strategy": "FSDP" }
 *   }
 * }
 * ```
 *
 * Each key is optional and one package may carry several. `trackers` may also
 * be written `{ "entry": "…" }`. Entry paths are relative to the package
 * folder, start with `./`, and must be listed in the package's `files`.
 *
 * ## How packages are found
 *
 * {@link scanAcceleratePackages} walks the `node_modules` folders from the
 * current directory upwards, from the running script's folder
 * (`process.argv[1]`) upwards and from core's own folder upwards (which covers
 * a user project, a global install and npm workspaces), scoped folders
 * included and symlinks (workspaces) followed. It reads each `package.json`
 * once and parses only those that mention `"accelerate"`; the result is
 * memoised. Nothing is imported by the scan: entries are imported on demand
 * (`import(pathToFileURL(entry))`) by {@link loadPackageEntry}, and a package
 * whose field is malformed or whose entry fails to load is remembered with
 * its reason ({@link discoveryFailures}) — for `accelerate env` and for the
 * "no available backend" error.
 *
 * Everything can also be registered explicitly instead: `registerBackend`,
 * `registerTrackerClass`, `new Accelerator({ plugins })`.
 * @module
 */
import { closeSync, openSync, readdirSync, readFileSync, readSync, realpathSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** `accelerate.backend` of a package.json. */
export interface BackendManifest {
  /** Name the backend is registered under (`--backend <name>`, `ACCELERATE_BACKEND`). */
  name: string;
  /** Module exporting `accelerateBackend` ({@link BackendModuleEntry}), relative to the package (`./dist/backend-entry.js`). */
  entry: string;
  /** Higher is tried first when nothing is asked for by name. Default 0. */
  priority?: number;
  /**
   * Optional CommonJS module (`.cjs`) exporting `seedIfLoaded(seed: number): boolean`:
   * seeds the package's process-wide generators if the package is in use in
   * this process and says whether it did. `setSeed` loads it synchronously;
   * it must be cheap and must not load the package itself.
   */
  seed?: string;
}

/** `accelerate.plugin` of a package.json. */
export interface PluginManifest {
  /** Module exporting `acceleratePlugin(): Plugin`, relative to the package. */
  entry: string;
  /** The `distributed_type` it provides (`FSDP`, `DEEPSPEED`, `MEGATRON_LM`), for strategy plugins. */
  strategy?: string;
}

/** The `accelerate` field of a package.json, as written. */
export interface AccelerateManifest {
  backend?: BackendManifest;
  /** Module exporting `accelerateTrackers`, or `{ entry }`. */
  trackers?: string | { entry: string };
  plugin?: PluginManifest;
}

/** A package that has an `accelerate` field, with its entries made absolute. */
export interface DiscoveredPackage {
  /** The package's `name`. */
  name: string;
  version: string;
  /** Its folder (symlinks resolved). */
  dir: string;
  backend?: { name: string; priority: number; entry: string; seed?: string };
  trackers?: { entry: string };
  plugin?: { entry: string; strategy?: string };
}

/** Which part of a package a failure concerns. */
export type DiscoveryKind = 'manifest' | 'backend' | 'trackers' | 'plugin' | 'seed';

/** A package that could not be used, and why. */
export interface DiscoveryFailure {
  /** The package's name. */
  package: string;
  kind: DiscoveryKind;
  /** One line: what is wrong and, when known, what to do. */
  reason: string;
  error?: unknown;
}

/** Options of {@link scanAcceleratePackages}. */
export interface ScanOptions {
  /** Folders to walk upwards from. Default: {@link defaultDiscoveryRoots}. */
  from?: readonly string[];
  /** Scan again instead of returning the memoised result. */
  refresh?: boolean;
}

/** The folders discovery walks upwards from: the current directory, the running script's folder, core's folder. */
export function defaultDiscoveryRoots(): string[] {
  const roots = [process.cwd()];
  const script = process.argv[1];
  if (script) roots.push(dirname(resolve(script)));
  roots.push(dirname(fileURLToPath(import.meta.url)));
  return roots;
}

const scans = new Map<string, readonly DiscoveredPackage[]>();
const failures = new Map<string, DiscoveryFailure>();
const loaded = new Map<string, Promise<unknown>>();

function fail(pkg: string, kind: DiscoveryKind, reason: string, error?: unknown): void {
  failures.set(`${pkg}\0${kind}`, { package: pkg, kind, reason, ...(error !== undefined ? { error } : {}) });
}

/** Every package that could not be used so far (malformed field, entry that failed to load), in the order found. */
export function discoveryFailures(): DiscoveryFailure[] {
  return [...failures.values()];
}

/** Forget every scan, loaded entry and failure (tests; a process that installed packages meanwhile). */
export function resetDiscovery(): void {
  scans.clear();
  failures.clear();
  loaded.clear();
}

/** The `node_modules` folders from `start` up to the file-system root. */
function nodeModulesChain(start: string): string[] {
  const out: string[] = [];
  let dir = resolve(start);
  for (;;) {
    if (!dir.endsWith(`${sep}node_modules`)) out.push(join(dir, 'node_modules'));
    const up = dirname(dir);
    if (up === dir) return out;
    dir = up;
  }
}

function readDir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

function entryPath(pkgName: string, dir: string, kind: DiscoveryKind, value: unknown, field: string): string | undefined {
  if (typeof value !== 'string' || !value.startsWith('./') || isAbsolute(value)) {
    fail(pkgName, kind, `its package.json "accelerate.${field}" must be a path relative to the package starting with "./" (e.g. "./dist/index.js"), got ${JSON.stringify(value)}`);
    return undefined;
  }
  return resolve(dir, value);
}

/** Validate one `accelerate` field; malformed parts are recorded as failures and left out. */
function parseManifest(pkgName: string, version: string, dir: string, field: unknown): DiscoveredPackage | undefined {
  if (!field || typeof field !== 'object' || Array.isArray(field)) {
    fail(pkgName, 'manifest', `its package.json "accelerate" field must be an object with "backend", "trackers" and/or "plugin", got ${JSON.stringify(field)}`);
    return undefined;
  }
  const f = field as Record<string, unknown>;
  const out: DiscoveredPackage = { name: pkgName, version, dir };
  if (f.backend !== undefined) {
    const b = f.backend as Partial<BackendManifest> | null;
    if (!b || typeof b !== 'object' || typeof b.name !== 'string' || b.name.trim() === '') {
      fail(pkgName, 'backend', `its package.json "accelerate.backend" must be { "name": "<backend name>", "entry": "./dist/backend-entry.js", "priority": 0 }, got ${JSON.stringify(b)}`);
    } else if (b.priority !== undefined && (typeof b.priority !== 'number' || !Number.isFinite(b.priority))) {
      fail(pkgName, 'backend', `its package.json "accelerate.backend.priority" must be a number, got ${JSON.stringify(b.priority)}`);
    } else {
      const entry = entryPath(pkgName, dir, 'backend', b.entry, 'backend.entry');
      const seed = b.seed === undefined ? undefined : entryPath(pkgName, dir, 'seed', b.seed, 'backend.seed');
      if (entry) out.backend = { name: b.name, priority: b.priority ?? 0, entry, ...(seed ? { seed } : {}) };
    }
  }
  if (f.trackers !== undefined) {
    const t = f.trackers as string | { entry?: unknown } | null;
    const raw = typeof t === 'string' ? t : t && typeof t === 'object' ? t.entry : t;
    const entry = entryPath(pkgName, dir, 'trackers', raw, 'trackers');
    if (entry) out.trackers = { entry };
  }
  if (f.plugin !== undefined) {
    const p = f.plugin as Partial<PluginManifest> | null;
    const entry = entryPath(pkgName, dir, 'plugin', p && typeof p === 'object' ? p.entry : p, 'plugin.entry');
    if (p && typeof p === 'object' && p.strategy !== undefined && typeof p.strategy !== 'string') {
      fail(pkgName, 'plugin', `its package.json "accelerate.plugin.strategy" must be a distributed_type such as "FSDP", got ${JSON.stringify(p.strategy)}`);
    } else if (entry) {
      out.plugin = { entry, ...(p?.strategy ? { strategy: p.strategy } : {}) };
    }
  }
  return out;
}

const NEEDLE = Buffer.from('"accelerate"');
let scratch = Buffer.alloc(0);

function scanFolder(nodeModules: string, seen: Set<string>, found: DiscoveredPackage[]): void {
  const visit = (pkgDir: string) => {
    const file = join(pkgDir, 'package.json');
    let fd: number;
    try {
      fd = openSync(file, 'r');
    } catch {
      return; // not a package (.bin, .cache, a stray file)
    }
    let size: number;
    try {
      size = readSync(fd, scratch, 0, scratch.length, 0);
    } catch {
      return;
    } finally {
      closeSync(fd);
    }
    // The cheap filter, on bytes: most packages stop here without being decoded or parsed.
    if (scratch.subarray(0, size).indexOf(NEEDLE) < 0) return;
    let text: string;
    try {
      text = size < scratch.length ? scratch.toString('utf8', 0, size) : readFileSync(file, 'utf8');
    } catch {
      return;
    }
    let pj: { name?: unknown; version?: unknown; accelerate?: unknown };
    try {
      pj = JSON.parse(text) as typeof pj;
    } catch (e) {
      fail(pkgDir, 'manifest', `its package.json is not valid JSON (${(e as Error).message})`);
      return;
    }
    if (pj.accelerate === undefined) return;
    const name = typeof pj.name === 'string' ? pj.name : pkgDir;
    if (seen.has(name)) return; // the nearest copy wins, as Node's resolution would pick it
    seen.add(name);
    let dir = pkgDir;
    try {
      dir = realpathSync(pkgDir);
    } catch {
      // keep the link's path
    }
    const pkg = parseManifest(name, typeof pj.version === 'string' ? pj.version : '0.0.0', dir, pj.accelerate);
    if (pkg) found.push(pkg);
  };
  for (const name of readDir(nodeModules)) {
    if (name.startsWith('.')) continue;
    if (name.startsWith('@')) {
      for (const sub of readDir(join(nodeModules, name))) if (!sub.startsWith('.')) visit(join(nodeModules, name, sub));
    } else {
      visit(join(nodeModules, name));
    }
  }
}

/**
 * Every installed package with an `accelerate` field, nearest first (a name
 * found twice keeps its first copy). Synchronous, imports nothing, memoised
 * per set of starting folders.
 */
export function scanAcceleratePackages(options: ScanOptions = {}): readonly DiscoveredPackage[] {
  const from = options.from ?? defaultDiscoveryRoots();
  const key = from.map((d) => resolve(d)).join('\0');
  const memo = scans.get(key);
  if (memo && !options.refresh) return memo;
  const found: DiscoveredPackage[] = [];
  scratch = Buffer.allocUnsafe(1 << 16); // one read per package.json; larger ones are read whole
  const seenNames = new Set<string>();
  const seenFolders = new Set<string>();
  for (const start of from) {
    for (const nm of nodeModulesChain(start)) {
      if (seenFolders.has(nm)) continue;
      seenFolders.add(nm);
      scanFolder(nm, seenNames, found);
    }
  }
  scratch = Buffer.alloc(0);
  const result = Object.freeze(found);
  scans.set(key, result);
  return result;
}

/** The absolute entry of `kind` of a discovered package. */
function entryOf(pkg: DiscoveredPackage, kind: 'backend' | 'trackers' | 'plugin'): string {
  const entry = pkg[kind]?.entry;
  if (!entry) throw new Error(`${pkg.name} has no "accelerate.${kind}" entry in its package.json.`);
  return entry;
}

/**
 * Import the `backend`, `trackers` or `plugin` entry of a discovered package
 * (once; later calls share the promise). A failure is recorded in
 * {@link discoveryFailures} and rethrown with the package named.
 */
export function loadPackageEntry<T = Record<string, unknown>>(pkg: DiscoveredPackage, kind: 'backend' | 'trackers' | 'plugin'): Promise<T> {
  const entry = entryOf(pkg, kind);
  let p = loaded.get(entry);
  if (!p) {
    p = import(pathToFileURL(entry).href).catch((e: unknown) => {
      const message = e instanceof Error ? e.message.split('\n')[0] : String(e);
      const reason = `${pkg.name} is installed but its ${kind} entry ${entry} failed to load: ${message}`;
      fail(pkg.name, kind, reason, e);
      throw new Error(reason, { cause: e });
    });
    p.catch(() => {});
    loaded.set(entry, p);
  }
  return p as Promise<T>;
}

/** Record a failure found while using a package's entry (wrong exports, …). @internal */
export function recordDiscoveryFailure(pkg: string, kind: DiscoveryKind, reason: string, error?: unknown): void {
  fail(pkg, kind, reason, error);
}
