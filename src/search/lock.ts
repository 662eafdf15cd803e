// One indexing run per index at a time: two runs on one database would both embed the documents it lacks and store
// each of them twice. The lock is a file in the index's folder naming the process that holds it; a lock left by a
// process that is gone (killed with SIGKILL, a crash) is taken over, with a message.
import { readFileSync } from "node:fs";
import { link, mkdir, open, readFile, rename, unlink } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";

export const LOCK_FILE = ".r3gpu-index.lock";

/** Who holds a lock, as its file says. */
export interface LockHolder {
  pid: number;
  host: string;
  /** ISO 8601. */
  started: string;
}

/** Another run holds the index's lock. */
export class IndexLockedError extends Error {
  constructor(readonly folder: string, readonly holder: LockHolder) {
    super(`${folder} is being indexed by process ${holder.pid} on ${holder.host} (since ${holder.started}); ` +
      `wait for that run to finish, or, if no such process is running, remove ${join(folder, LOCK_FILE)}`);
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    // EPERM: the process exists but belongs to someone else.
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
  // A process that has exited but not been reaped (a zombie, as orphans stay in a container whose first process
  // reaps none) still answers kill(pid, 0); on Linux /proc tells it apart: the state follows the parenthesized name.
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat[stat.lastIndexOf(")") + 2] !== "Z";
  } catch {
    return true;
  }
}

function parseHolder(text: string, path: string): LockHolder {
  let holder: Partial<LockHolder> | undefined;
  try {
    holder = JSON.parse(text);
  } catch {
    // Reported below.
  }
  if (!holder || !Number.isSafeInteger(holder.pid) || typeof holder.host !== "string" || typeof holder.started !== "string") {
    throw new Error(`${path}: not a lock file r3gpu wrote; remove it if no \`r3gpu index\` runs on this index`);
  }
  return holder as LockHolder;
}

const readIfPresent = (path: string) => readFile(path, "utf8").catch((e: NodeJS.ErrnoException) => {
  if (e.code === "ENOENT") return undefined;
  throw e;
});

/** Who holds the lock of the index in `folder`, and whether that process still runs (on this host; elsewhere, true). */
export async function lockHolder(folder: string): Promise<{ holder: LockHolder; running: boolean } | undefined> {
  const path = join(folder, LOCK_FILE);
  const text = await readIfPresent(path);
  if (!text) return undefined;
  const holder = parseHolder(text, path);
  return { holder, running: holder.host !== hostname() || isRunning(holder.pid) };
}

export class IndexLock {
  private constructor(private readonly path: string, private readonly content: string) {}

  /**
   * Takes the lock of the index in `folder` (created if missing), or throws IndexLockedError naming its holder.
   * A lock whose process no longer runs on this host is taken over, and `onMessage` told so.
   */
  static async acquire(folder: string, onMessage: (message: string) => void = console.warn): Promise<IndexLock> {
    await mkdir(folder, { recursive: true });
    const path = join(folder, LOCK_FILE);
    const content = JSON.stringify({ pid: process.pid, host: hostname(), started: new Date().toISOString() } satisfies LockHolder) + "\n";
    // Each pass either takes the lock, refuses, or removes a stale lock (and another process may take it then).
    for (let pass = 0; pass < 5; pass++) {
      try {
        // "wx": created only if absent, atomically, so that of two runs exactly one gets here.
        const file = await open(path, "wx");
        try {
          await file.writeFile(content);
        } finally {
          await file.close();
        }
        return new IndexLock(path, content);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      }
      const text = await readIfPresent(path);
      if (text === undefined) continue;
      if (text === "" && pass < 2) {
        // Another run may have just created the file and not yet written it.
        await new Promise((r) => setTimeout(r, 50));
        continue;
      }
      const holder = parseHolder(text, path);
      if (holder.host !== hostname() || isRunning(holder.pid)) throw new IndexLockedError(folder, holder);
      // Moved aside before it is removed, so that a lock another run took meanwhile is not removed with it.
      const aside = `${path}.stale-${process.pid}`;
      try {
        await rename(path, aside);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === "ENOENT") continue;
        throw e;
      }
      if ((await readIfPresent(aside)) === text) {
        onMessage(`${folder}: took over the lock of process ${holder.pid} (since ${holder.started}), which is no longer running`);
      } else {
        // A live lock was moved: put it back unless yet another run holds the place now.
        await link(aside, path).catch(() => {});
      }
      await unlink(aside).catch(() => {});
    }
    throw new Error(`${path}: could not take the lock (other runs keep taking and leaving it)`);
  }

  /** Removes the lock file, if it is still this run's. */
  async release(): Promise<void> {
    if ((await readIfPresent(this.path)) === this.content) await unlink(this.path);
  }
}
