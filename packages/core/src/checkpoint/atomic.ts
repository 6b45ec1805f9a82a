/**
 * Crash-safe checkpoint folders. A checkpoint is written into a hidden
 * temporary sibling (`.<name>.tmp-<pid>`), every file and folder is fsynced,
 * and only then is the folder renamed into place. Replacing an existing
 * checkpoint renames the old one aside (`.<name>.old-<pid>`), renames the new
 * one in and deletes the old one, so at every instant either the old or the
 * new checkpoint is complete under a name a loader recognises. Hidden
 * (dot-prefixed) folders are never taken for checkpoints.
 * @module
 */
import * as fsp from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { fsyncDirectory } from './safetensors.js';

/** Name of the temporary folder a save of `target` writes into. */
export function tempCheckpointDir(target: string, pid: number): string {
  return join(dirname(target), `.${basename(target)}.tmp-${pid}`);
}

/** Name the previous checkpoint is moved to while `target` is replaced. */
export function asideCheckpointDir(target: string, pid: number): string {
  return join(dirname(target), `.${basename(target)}.old-${pid}`);
}

/** Temporary and set-aside siblings of `target` left by interrupted saves (full paths). */
export async function leftoverSiblings(target: string): Promise<{ temp: string[]; aside: string[] }> {
  const name = basename(target);
  let entries: string[];
  try {
    entries = await fsp.readdir(dirname(target));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { temp: [], aside: [] };
    throw err;
  }
  const esc = name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const tmp = new RegExp(`^\\.${esc}\\.tmp-\\d+$`);
  const old = new RegExp(`^\\.${esc}\\.old-\\d+$`);
  return {
    temp: entries.filter((e) => tmp.test(e)).map((e) => join(dirname(target), e)),
    aside: entries.filter((e) => old.test(e)).map((e) => join(dirname(target), e)),
  };
}

/** Whether `path` exists (any kind). */
export async function pathExists(path: string): Promise<boolean> {
  try {
    await fsp.lstat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/**
 * Write `bytes` to a new file `path` and fsync it before returning. Fails if
 * the file exists (`wx`): inside a fresh temporary folder nothing should.
 */
export async function writeFileDurable(path: string, bytes: Uint8Array | string): Promise<void> {
  const data = typeof bytes === 'string' ? new TextEncoder().encode(bytes) : bytes;
  const fh = await fsp.open(path, 'wx');
  try {
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await fh.write(data, done, data.length - done, done);
      done += bytesWritten;
    }
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * fsync every file and folder under (and including) `dir`, deepest first, so
 * files written by hooks, plugins or other ranks without an fsync of their
 * own are on disk before the folder is renamed into place.
 */
export async function fsyncTree(dir: string): Promise<void> {
  const entries = await fsp.readdir(dir, { withFileTypes: true });
  for (const e of entries) {
    const full = join(dir, e.name);
    if (e.isDirectory()) await fsyncTree(full);
    else if (e.isFile()) {
      const fh = await fsp.open(full, 'r');
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
    }
  }
  await fsyncDirectory(dir);
}

/**
 * Move the finished temporary folder `temp` to `target`, replacing a
 * previous checkpoint there without ever leaving `target` half-written:
 * old aside, new in, parent folder synced, old deleted.
 */
export async function commitCheckpointDir(temp: string, target: string, pid = process.pid): Promise<void> {
  await fsyncTree(temp);
  const parent = dirname(target);
  if (await pathExists(target)) {
    const aside = asideCheckpointDir(target, pid);
    await fsp.rm(aside, { recursive: true, force: true });
    await fsp.rename(target, aside);
    await fsp.rename(temp, target);
    await fsyncDirectory(parent);
    await fsp.rm(aside, { recursive: true, force: true });
  } else {
    await fsp.rename(temp, target);
  }
  await fsyncDirectory(parent);
}

/**
 * Undo what a crash between "old aside" and "new in" left: when `target` is
 * missing and exactly one set-aside copy exists, move it back. Returns the
 * restored path, or undefined when there was nothing to do.
 */
export async function recoverInterruptedReplace(target: string): Promise<string | undefined> {
  if (await pathExists(target)) return undefined;
  const { aside } = await leftoverSiblings(target);
  if (aside.length !== 1) return undefined;
  await fsp.rename(aside[0], target);
  await fsyncDirectory(dirname(target));
  return target;
}

/** Every regular file under `dir`, as forward-slash paths relative to it, sorted. */
export async function listFilesRecursive(dir: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  const entries = await fsp.readdir(join(dir, prefix), { withFileTypes: true });
  for (const e of entries) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...(await listFilesRecursive(dir, rel)));
    else if (e.isFile()) out.push(rel);
  }
  return out.sort();
}
