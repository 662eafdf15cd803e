// A weight matrix on the GPU: [rows, cols] in its stored dtype and the blocked layout of src/gpu/layout.ts (or its
// quantized form), split by rows (in whole blocks) into parts that each fit one storage binding; kernels cover a
// split matrix with one dispatch per part.
import type { GpuDType, QuantDType, WeightDType } from "./kernel.ts";
import { QUANT_LAYOUT, WEIGHT_LAYOUT } from "./layout.ts";

export const DTYPE_BYTES: Record<WeightDType, number> = { BF16: 2, F16: 2, F32: 4 };

export function isQuantized(dtype: GpuDType): dtype is QuantDType {
  return dtype === "Q8" || dtype === "Q4";
}

/** Bytes per weight as stored, scales included (Q8: 8.5 bits, Q4: 4.5 bits). */
export function elementBytes(dtype: GpuDType): number {
  return isQuantized(dtype) ? QUANT_LAYOUT.tileBytes[dtype] / (QUANT_LAYOUT.tileQuads * WEIGHT_LAYOUT.quadElements) : DTYPE_BYTES[dtype];
}

export interface MatrixPart {
  buffer: GPUBuffer;
  row0: number;
  rows: number;
}

export interface GpuMatrix {
  name: string;
  dtype: GpuDType;
  rows: number;
  cols: number;
  parts: MatrixPart[];
}

/** Bytes of `blocks` blocks of rows in the layout (cols padded to a whole quad; quantized: to whole tiles). */
export function layoutBytes(blocks: number, cols: number, dtype: GpuDType): number {
  const { block, quadElements } = WEIGHT_LAYOUT;
  const quads = blocks * block * Math.ceil(cols / quadElements);
  if (isQuantized(dtype)) return Math.ceil(quads / QUANT_LAYOUT.tileQuads) * QUANT_LAYOUT.tileBytes[dtype];
  return quads * quadElements * DTYPE_BYTES[dtype];
}

/**
 * The row ranges of a matrix's parts: whole blocks, as many as fit `maxBindingBytes` per part, laid out and (for a
 * matrix quantized at load) as the row-major staging copy of the file's dtype `from` that the quantize kernel reads.
 */
export function planParts(name: string, rows: number, cols: number, dtype: GpuDType, maxBindingBytes: number,
  from?: WeightDType): { row0: number; rows: number; bytes: number }[] {
  const blocks = Math.ceil(rows / WEIGHT_LAYOUT.block);
  // From the bytes per block on average: whole tiles add at most one tile to a part, so step down from there.
  const paddedCols = Math.ceil(cols / WEIGHT_LAYOUT.quadElements) * WEIGHT_LAYOUT.quadElements;
  const perBlock = WEIGHT_LAYOUT.block * Math.max(paddedCols * elementBytes(dtype), from ? cols * DTYPE_BYTES[from] : 0);
  let blocksPerPart = Math.min(blocks, Math.floor(maxBindingBytes / perBlock));
  while (blocksPerPart > 0 && layoutBytes(blocksPerPart, cols, dtype) > maxBindingBytes) blocksPerPart--;
  if (blocksPerPart === 0) {
    throw new Error(`tensor "${name}": a block of ${WEIGHT_LAYOUT.block} rows (${layoutBytes(1, cols, dtype)} bytes) exceeds the storage binding limit ${maxBindingBytes}`);
  }
  const rowsPerPart = blocksPerPart * WEIGHT_LAYOUT.block;
  const parts = [];
  for (let row0 = 0; row0 < rows; row0 += rowsPerPart) {
    const n = Math.min(rowsPerPart, rows - row0);
    parts.push({ row0, rows: n, bytes: layoutBytes(Math.ceil(n / WEIGHT_LAYOUT.block), cols, dtype) });
  }
  return parts;
}
