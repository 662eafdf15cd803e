// Sharded weights: model.safetensors.index.json and the shards it names, the micro model split in two.
import { damageText, hostileValue, stringify, type Json } from "../mutators/json.ts";
import type { Rng } from "../rng.ts";
import { microModel, safetensorsBytes, type ModelSeed, type TensorEntry } from "../seeds.ts";
import { loadModel, modelFiles } from "./model.ts";
import type { FileCase, FileSpec, FileTarget } from "./types.ts";

const SHARDS = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"];
const INDEX = "model.safetensors.index.json";

/** The seed's tensors split between two shards (the embedding and layer 0 first), with the index. */
function split(seed: ModelSeed): { weightMap: Record<string, string>; shards: Record<string, Record<string, TensorEntry>>; data: Record<string, Uint8Array> } {
  const weightMap: Record<string, string> = {};
  const shards: Record<string, Record<string, TensorEntry>> = { [SHARDS[0]]: {}, [SHARDS[1]]: {} };
  const parts: Record<string, Uint8Array[]> = { [SHARDS[0]]: [], [SHARDS[1]]: [] };
  const at: Record<string, number> = { [SHARDS[0]]: 0, [SHARDS[1]]: 0 };
  for (const [name, t] of Object.entries(seed.header)) {
    const shard = name.startsWith("model.embed") || name.startsWith("model.layers.0.") ? SHARDS[0] : SHARDS[1];
    const bytes = seed.data.subarray(t.data_offsets[0], t.data_offsets[1]);
    shards[shard][name] = { ...t, data_offsets: [at[shard], at[shard] + bytes.length] };
    at[shard] += bytes.length;
    parts[shard].push(bytes);
    weightMap[name] = shard;
  }
  return { weightMap, shards, data: Object.fromEntries(SHARDS.map((s) => [s, Buffer.concat(parts[s])])) };
}

function shardedCase(rng: Rng, seed: ModelSeed, index: number): FileCase {
  const { weightMap, shards, data } = split(seed);
  const shardFile = (s: string) => safetensorsBytes(shards[s], data[s]);
  const files: Record<string, FileSpec> = modelFiles(seed);
  delete files["model.safetensors"];
  for (const s of SHARDS) files[s] = shardFile(s);
  const index_ = (map: Json = weightMap) => stringify({ metadata: { total_size: 0 }, weight_map: map }, 2);
  const tensor = rng.pick(Object.keys(weightMap));
  const shard = weightMap[tensor];
  const pointAt = (path: string, label: string, invalid: boolean, extra: Record<string, FileSpec> = {}): FileCase => {
    // Every tensor of that shard moves to the new path, as if the index had been edited by hand.
    const map = Object.fromEntries(Object.entries(weightMap).map(([n, s]) => [n, s === shard ? path : s]));
    return { mutation: label, files: { ...files, ...extra, [INDEX]: index_(map) }, invalid };
  };
  if (index === 0) return { mutation: "none (the seed)", files: { ...files, [INDEX]: index_() }, invalid: false };
  const ops: (() => FileCase)[] = [
    // A well-formed shard beside the model folder: an index that climbs out of the folder could load it.
    () => pointAt(`../outside-${shard}`, `${shard} named by "../" (the file exists outside the folder)`, true,
      { [`../outside-${shard}`]: shardFile(shard) }),
    () => pointAt("/etc/passwd", `${shard} named by "/etc/passwd"`, true),
    () => pointAt("/dev/zero", `${shard} named by "/dev/zero"`, true),
    () => pointAt(`sub/../${shard}`, `${shard} named by "sub/../${shard}"`, true),
    () => pointAt("", `${shard} named by ""`, true),
    () => pointAt(`C:\\models\\${shard}`, `${shard} named by a Windows path`, true),
    () => pointAt(`sub/${shard}`, `${shard} moved into a subfolder`, false, { [`sub/${shard}`]: shardFile(shard) }),
    () => pointAt(`linked-${shard}`, `${shard} a link to a file outside the folder (as in the Hugging Face cache)`, false,
      { [`../blob-${shard}`]: shardFile(shard), [`linked-${shard}`]: { link: `../blob-${shard}` } }),
    () => {
      const { [shard]: _, ...rest } = files;
      return { mutation: `${shard} missing`, files: { ...rest, [INDEX]: index_() }, invalid: true };
    },
    () => ({ mutation: `${shard} is a directory`, files: { ...files, [shard]: { directory: true }, [INDEX]: index_() }, invalid: true }),
    () => ({ mutation: `${shard} is a FIFO`, files: { ...files, [shard]: { fifo: true }, [INDEX]: index_() }, invalid: true }),
    () => ({ mutation: `${shard} links to /dev/zero`, files: { ...files, [shard]: { link: "/dev/zero" }, [INDEX]: index_() }, invalid: true }),
    () => {
      const other = SHARDS.find((s) => s !== shard)!;
      return { mutation: `${tensor} listed in the wrong shard`, files: { ...files, [INDEX]: index_({ ...weightMap, [tensor]: other }) }, invalid: true };
    },
    () => {
      const { label, value } = hostileValue(rng);
      return { mutation: `weight_map entry ${tensor} -> ${label}`, files: { ...files, [INDEX]: index_({ ...weightMap, [tensor]: value }) },
        invalid: true };
    },
    () => {
      const { label, value } = hostileValue(rng);
      const valid = value !== null && typeof value === "object" && !Array.isArray(value) && Object.keys(value).length > 0;
      return { mutation: `weight_map -> ${label}`, files: { ...files, [INDEX]: index_(value) }, invalid: !valid };
    },
    () => {
      const many: Record<string, string> = { ...weightMap };
      for (let i = 0; i < 200_000; i++) many[`missing.${i}`] = SHARDS[0];
      return { mutation: "200000 tensors listed that no shard holds", files: { ...files, [INDEX]: index_(many) }, invalid: true };
    },
    () => {
      const { label, bytes } = damageText(rng, index_());
      const unjudged = label === "a random byte changed" || label === "a byte-order mark before it";
      return { mutation: `index text: ${label}`, files: { ...files, [INDEX]: bytes }, invalid: !unjudged };
    },
    () => {
      // The same tensor in both shards.
      const other = SHARDS.find((s) => s !== shard)!;
      const t = shards[shard][tensor];
      const bytes = Buffer.concat([data[other], data[shard].subarray(t.data_offsets[0], t.data_offsets[1])]);
      const extra = { ...shards[other], [tensor]: { ...t, data_offsets: [data[other].length, bytes.length] } };
      return { mutation: `${tensor} in both shards`, files: { ...files, [other]: safetensorsBytes(extra, bytes), [INDEX]: index_() }, invalid: true };
    },
  ];
  return rng.pick(ops)();
}

export const shardsTarget: FileTarget = {
  name: "shards",
  kind: "files",
  generate: (rng, index) => shardedCase(rng, microModel(), index),
  run: (dir) => loadModel(dir, false),
};
