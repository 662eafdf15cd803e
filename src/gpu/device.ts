// Turning a WebGPU adapter into the device the engine runs on. Runtime-neutral: Node (Dawn), Deno
// (wgpu) and browsers all hand us a GPUAdapter; only how that adapter is obtained differs.

export interface GpuInfo {
  vendor: string;
  architecture: string;
  description: string;
  features: string[];
  maxStorageBufferBindingSize: number;
  maxBufferSize: number;
}

const WANTED_FEATURES: GPUFeatureName[] = ["shader-f16", "timestamp-query", "subgroups" as GPUFeatureName];

/** Requests a device with all of the adapter's maximum limits (model tensors need the largest bindings). */
export async function requestEngineDevice(adapter: GPUAdapter): Promise<GPUDevice> {
  const requiredLimits: Record<string, number> = {};
  // for...in, because Dawn and wgpu expose the limits as accessors on the prototype.
  for (const key in adapter.limits) {
    const v = (adapter.limits as unknown as Record<string, unknown>)[key];
    if (typeof v === "number") requiredLimits[key] = v;
  }
  const requiredFeatures = WANTED_FEATURES.filter((f) => adapter.features.has(f));
  const device = await adapter.requestDevice({ requiredFeatures, requiredLimits });
  device.lost.then((info) => {
    if (info.reason !== "destroyed") console.error(`r3gpu: GPU device lost: ${info.message}`);
  });
  return device;
}

export function describeAdapter(adapter: GPUAdapter, device: GPUDevice): GpuInfo {
  const info = adapter.info ?? ({} as GPUAdapterInfo);
  return {
    vendor: info.vendor ?? "",
    architecture: info.architecture ?? "",
    description: info.description ?? "",
    features: [...device.features].sort(),
    maxStorageBufferBindingSize: device.limits.maxStorageBufferBindingSize,
    maxBufferSize: device.limits.maxBufferSize,
  };
}
