// GPU buffers with an owner: whoever creates a set of buffers destroys them together, and knows their bytes.
// Sizes are checked against the device's limits when asked for, so an impossible size is an error that names the
// buffer, never a validation error later.

const STORAGE_USAGE = () => GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

export class BufferSet {
  private owned: GPUBuffer[] = [];
  private total = 0;

  constructor(readonly device: GPUDevice) {}

  /** A storage buffer of at least `bytes` (rounded up to 16), zero-filled. */
  storage(label: string, bytes: number): GPUBuffer {
    return this.create(label, bytes, STORAGE_USAGE());
  }

  /** A buffer the host maps to read results. */
  readback(label: string, bytes: number): GPUBuffer {
    return this.create(label, bytes, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST);
  }

  create(label: string, bytes: number, usage: GPUBufferUsageFlags): GPUBuffer {
    const size = Math.max(16, Math.ceil(bytes / 16) * 16);
    const max = this.device.limits.maxBufferSize;
    if (!Number.isSafeInteger(size) || size > max) {
      throw new Error(`${label}: a buffer of ${bytes} bytes exceeds this device's largest buffer (maxBufferSize ${max})`);
    }
    const buffer = this.device.createBuffer({ label, size, usage });
    this.owned.push(buffer);
    this.total += size;
    return buffer;
  }

  /** Bytes of every buffer created here and not yet destroyed. */
  get bytes(): number {
    return this.total;
  }

  /** Destroys one buffer of the set (e.g. a staging copy) before the rest. */
  release(buffer: GPUBuffer): void {
    const i = this.owned.indexOf(buffer);
    if (i < 0) return;
    this.owned.splice(i, 1);
    this.total -= buffer.size;
    buffer.destroy();
  }

  destroy(): void {
    for (const b of this.owned) b.destroy();
    this.owned = [];
    this.total = 0;
  }
}
