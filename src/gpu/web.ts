// The WebGPU adapter where the runtime provides navigator.gpu: Deno (wgpu) and browsers.
import { describeAdapter, requestEngineDevice, type GpuInfo } from "./device.ts";

export interface WebGpu {
  adapter: GPUAdapter;
  device: GPUDevice;
  info: GpuInfo;
}

export async function webGpu(): Promise<WebGpu> {
  const gpu = (globalThis.navigator as Navigator | undefined)?.gpu;
  if (!gpu) throw new Error("r3gpu: this runtime has no navigator.gpu (WebGPU is not available or not enabled)");
  const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) throw new Error("r3gpu: navigator.gpu.requestAdapter() found no adapter");
  const device = await requestEngineDevice(adapter);
  return { adapter, device, info: describeAdapter(adapter, device) };
}
