// The tuner's cache in a browser: one IndexedDB object store, records by key.
import type { TuneCache, TuneRecord } from "./cache.ts";

const DB = "r3gpu";
const STORE = "tune";

function open(): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

function request<T>(store: "readonly" | "readwrite", run: (s: IDBObjectStore) => IDBRequest<T>): Promise<T> {
  return open().then((db) => new Promise<T>((resolve, reject) => {
    const req = run(db.transaction(STORE, store).objectStore(STORE));
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  }));
}

export function indexedDbTuneCache(): TuneCache {
  return {
    where: `IndexedDB ${DB}/${STORE}`,
    async read(key) {
      try {
        return (await request("readonly", (s) => s.get(key))) as TuneRecord | undefined;
      } catch {
        return undefined;
      }
    },
    async write(key, record) {
      await request("readwrite", (s) => s.put(record, key));
    },
  };
}
