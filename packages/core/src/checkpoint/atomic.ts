/**
 * Crash-safe checkpoint folders. A checkpoint is written into a hidden
 * temporary sibling (`.<name>.tmp-<pid>`), every file and folder is fsynced,
 * and only then is the folder renamed into place. Replacing an existing
 * checkpoint renames the old one aside (`.<name>.old-<pid>`), renames the new
 * one in and deletes the old one, so at every instant either the old or the
 * new checkpoint is complete under a name a loader recognises. Hidden
 * (dot-prefixed) folders are never taken for checkpoints.
 *
 * Also the one atomic file writer of accelerate-ts: {@link writeFileAtomic}
 * (and its synchronous twin {@link writeFileAtomicSync}, for config files and
 * tracker files written from synchronous code).
 * @module
 */
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';

/** Error codes of an fsync of a folder on platforms or file systems that cannot do it (Windows): ignored. */
const DIR_FSYNC_UNSUPPORTED = new Set(['EISDIR', 'EPERM', 'EINVAL', 'EBADF']);

/** fsync a directory so a rename in it survives a crash; platforms that cannot (Windows) are skipped. */
export async function fsyncDirectory(dir: string): Promise<void> {
  let fh: fsp.FileHandle | undefined;
  try {
    fh = await fsp.open(dir, 'r');
    await fh.sync();
  } catch (err) {
    if (!DIR_FSYNC_UNSUPPORTED.has((err as NodeJS.ErrnoException).code ?? '')) throw err;
  } finally {
    await fh?.close().catch(() => undefined);
  }
}

/** Synchronous {@link fsyncDirectory}. */
export function fsyncDirectorySync(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch (err) {
    if (!DIR_FSYNC_UNSUPPORTED.has((err as NodeJS.ErrnoException).code ?? '')) throw err;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** A fresh hidden temporary sibling of `path` for an atomic write. */
function atomicTempPath(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
}

const toBytes = (data: Uint8Array | string): Uint8Array => (typeof data === 'string' ? new TextEncoder().encode(data) : data);

/**
 * Write `path` atomically and durably: a temporary file in the same folder,
 * fsync, rename over `path`, fsync the folder. Readers see the old file or
 * the complete new one, never a partial write, also after a crash. `data` is
 * the content (a string is UTF-8), or a function that writes it through the
 * file handle (for streaming large files). The folder must exist.
 */
export async function writeFileAtomic(path: string, data: Uint8Array | string | ((fh: fsp.FileHandle) => Promise<void>)): Promise<void> {
  const tmp = atomicTempPath(path);
  const fh = await fsp.open(tmp, 'wx');
  let ok = false;
  try {
    if (typeof data === 'function') await data(fh);
    else {
      const bytes = toBytes(data);
      for (let done = 0; done < bytes.length; ) done += (await fh.write(bytes, done, bytes.length - done, done)).bytesWritten;
    }
    await fh.sync();
    await fh.close();
    await fsp.rename(tmp, path);
    ok = true;
  } finally {
    if (!ok) {
      await fh.close().catch(() => undefined);
      await fsp.rm(tmp, { force: true }).catch(() => undefined);
    }
  }
  await fsyncDirectory(dirname(path));
}

/** Synchronous {@link writeFileAtomic}, for callers that cannot await (config files, tracker files). */
export function writeFileAtomicSync(path: string, data: Uint8Array | string): void {
  const tmp = atomicTempPath(path);
  const fd = openSync(tmp, 'wx');
  let ok = false;
  try {
    const bytes = toBytes(data);
    for (let done = 0; done < bytes.length; ) done += writeSync(fd, bytes, done, bytes.length - done, done);
    fsyncSync(fd);
    closeSync(fd);
    renameSync(tmp, path);
    ok = true;
  } finally {
    if (!ok) {
      try {
        closeSync(fd);
      } catch {
        // already closed
      }
      rmSync(tmp, { force: true });
    }
  }
  fsyncDirectorySync(dirname(path));
}

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
