// Mutations of a safetensors file: its header's entries (dtype, shape, offsets, names), the header's text and
// length field, and the bytes around it. `invalid` is set where the format or the model config must refuse the result.
import type { Rng } from "../rng.ts";
import { safetensorsBytes, type ModelSeed, type TensorEntry } from "../seeds.ts";
import { damageText, hostileValue, stringify, type Json } from "./json.ts";

export interface Mutant {
  label: string;
  bytes: Uint8Array;
  invalid: boolean;
}

const SIZE: Record<string, number> = { BF16: 2, F16: 2, F32: 4, I32: 4 };

export function mutateSafetensors(rng: Rng, seed: ModelSeed): Mutant {
  const header: Record<string, any> = seed.header;
  const names = Object.keys(header);
  const name = rng.pick(names);
  const t: TensorEntry = header[name];
  const file = (h: object | string = header, data = seed.data) => safetensorsBytes(h, data);
  const headerText = stringify(header);
  const ops: (() => Mutant)[] = [
    () => {
      const dtype = rng.pick<Json>(["BF16", "F16", "F32", "I32", "F64", "Q4_K", "U8", "", "bf16", 5, null]);
      header[name].dtype = dtype;
      // BF16 and F16 have the same size, so swapping them is well-formed (the values are then other numbers).
      const sameSize = typeof dtype === "string" && SIZE[dtype] === SIZE[t.dtype];
      return { label: `dtype of ${name} -> ${JSON.stringify(dtype)}`, bytes: file(), invalid: !sameSize };
    },
    () => {
      const { label, value } = hostileValue(rng);
      const dims = [...t.shape] as Json[];
      dims[rng.int(dims.length)] = value;
      header[name].shape = dims;
      const product = dims.every((d) => Number.isSafeInteger(d) && (d as number) >= 0)
        ? (dims as number[]).reduce((a, d) => a * d, 1) : -1;
      return { label: `a dimension of ${name} -> ${label}`, bytes: file(), invalid: product !== t.shape.reduce((a, d) => a * d, 1) };
    },
    () => {
      const [b, e] = t.data_offsets;
      const shift = rng.pick([-2, -1, 1, 2, 64, seed.data.length]);
      const which = rng.int(3);
      header[name].data_offsets = which === 0 ? [b + shift, e] : which === 1 ? [b, e + shift] : [b + shift, e + shift];
      return { label: `data_offsets of ${name} shifted by ${shift} (${["begin", "end", "both"][which]})`, bytes: file(), invalid: true };
    },
    () => {
      const { label, value } = hostileValue(rng);
      header[name].data_offsets = rng.chance(0.5) ? value : [value, t.data_offsets[1]];
      return { label: `data_offsets of ${name} -> ${label}`, bytes: file(), invalid: true };
    },
    () => {
      delete header[name];
      return { label: `entry of ${name} removed (its bytes left)`, bytes: file(), invalid: true };
    },
    () => ({ label: `${name} listed twice`, bytes: file(`{${JSON.stringify(name)}:${JSON.stringify(t)},${headerText.slice(1)}`), invalid: true }),
    () => ({ label: "a byte-order mark before the header", bytes: file(`\uFEFF${headerText}`), invalid: true }),
    () => ({ label: "a space before the header", bytes: file(` ${headerText}`), invalid: true }),
    () => ({ label: "the header padded with spaces", bytes: file(headerText + " ".repeat(rng.int(16) + 1)), invalid: false }),
    () => ({ label: "the header padded with NUL bytes", bytes: file(headerText + "\u0000".repeat(rng.int(8) + 1)), invalid: true }),
    () => {
      const bytes = file();
      const view = new DataView(bytes.buffer, bytes.byteOffset, 8);
      const n = view.getBigUint64(0, true);
      const value = rng.pick([n + 1n, n - 1n, 0n, 1n, 7n, BigInt(bytes.length), 2n ** 63n, 2n ** 64n - 1n]);
      view.setBigUint64(0, value, true);
      return { label: `header length field ${n} -> ${value}`, bytes, invalid: true };
    },
    () => {
      const bytes = file();
      const cut = rng.int(bytes.length);
      return { label: `file truncated to ${cut} of ${bytes.length} bytes`, bytes: bytes.subarray(0, cut), invalid: true };
    },
    () => ({ label: "bytes appended after the data", bytes: Buffer.concat([file(), new Uint8Array(rng.int(64) + 1)]), invalid: true }),
    () => {
      const data = Buffer.from(seed.data);
      for (let i = rng.int(8) + 1; i > 0; i--) data[rng.int(data.length)] = rng.int(256);
      return { label: "data bytes changed", bytes: file(header, data), invalid: false };
    },
    () => {
      const { label, bytes } = damageText(rng, headerText);
      const len = Buffer.alloc(8);
      len.writeBigUInt64LE(BigInt(bytes.length));
      // A byte changed at random can leave a valid header; every other damage makes it invalid.
      return { label: `header text: ${label}`, bytes: Buffer.concat([len, bytes, seed.data]), invalid: label !== "a random byte changed" };
    },
    () => {
      const { label, value } = hostileValue(rng);
      const valid = value !== null && typeof value === "object" && !Array.isArray(value) && Object.keys(value).length === 0;
      return { label: `__metadata__ -> ${label}`, bytes: file({ __metadata__: value, ...header }), invalid: !valid };
    },
    () => {
      const to = rng.pick(["model.layers.9.mlp.up_proj.weight", "model.layers.99999999999999999999.x", "model.layers.-1.x", "", "\u0000", "x".repeat(10_000)]);
      header[to] = t;
      delete header[name];
      // A layer past num_hidden_layers is refused by the comparison with config.json.
      return { label: `${name} renamed to ${JSON.stringify(to.slice(0, 40))}`, bytes: file(), invalid: to.startsWith("model.layers.9") };
    },
    () => {
      const many: Record<string, unknown> = { ...header };
      const end = seed.data.length;
      for (let i = 0; i < 100_000; i++) many[`extra.${i}`] = { dtype: "F32", shape: [0], data_offsets: [end, end] };
      return { label: "100000 zero-size tensors added", bytes: file(many), invalid: false };
    },
  ];
  return rng.pick(ops)();
}
