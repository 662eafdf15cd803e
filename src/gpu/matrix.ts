// A weight matrix on the GPU: [rows, cols] in its stored dtype and the blocked layout of src/gpu/layout.ts, split
// by rows (in whole blocks) into parts that each fit one storage binding; kernels cover a split matrix with one
// dispatch per part.
import type { WeightDType } from "./kernel.ts";
import { WEIGHT_LAYOUT } from "./layout.ts";

export const DTYPE_BYTES: Record<WeightDType, number> = { BF16: 2, F16: 2, F32: 4 };

export interface MatrixPart {
  buffer: GPUBuffer;
  row0: number;
  rows: number;
}

export interface GpuMatrix {
  name: string;
  dtype: WeightDType;
  rows: number;
  cols: number;
  parts: MatrixPart[];
}

/** Bytes of one block of rows in the layout (cols padded to a whole quad). */
export function blockBytes(cols: number, dtype: WeightDType): number {
  const { block, quadElements } = WEIGHT_LAYOUT;
  return block * Math.ceil(cols / quadElements) * quadElements * DTYPE_BYTES[dtype];
}

/** The row ranges of a matrix's parts: whole blocks, as many as fit `maxBindingBytes` per part. */
export function planParts(name: string, rows: number, cols: number, dtype: WeightDType, maxBindingBytes: number): { row0: number; rows: number; bytes: number }[] {
  const perBlock = blockBytes(cols, dtype);
  const blocksPerPart = Math.floor(maxBindingBytes / perBlock);
  if (blocksPerPart === 0) {
    throw new Error(`tensor "${name}": a block of ${WEIGHT_LAYOUT.block} rows (${perBlock} bytes) exceeds the storage binding limit ${maxBindingBytes}`);
  }
  const rowsPerPart = blocksPerPart * WEIGHT_LAYOUT.block;
  const parts = [];
  for (let row0 = 0; row0 < rows; row0 += rowsPerPart) {
    const n = Math.min(rowsPerPart, rows - row0);
    parts.push({ row0, rows: n, bytes: Math.ceil(n / WEIGHT_LAYOUT.block) * perBlock });
  }
  return parts;
}
