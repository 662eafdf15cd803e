// The WebGPU adapter under Node: Dawn through the `webgpu` npm package.
import { mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create, globals } from "webgpu";
import { describeAdapter, requestEngineDevice, type GpuInfo } from "./device.ts";

// Dawn's GPU object must stay reachable for the life of the process: once it is garbage-collected,
// pending onSubmittedWorkDone/mapAsync promises never settle and Node exits silently.
let navigatorGpu: GPU | undefined;

export interface NodeGpu {
  adapter: GPUAdapter;
  device: GPUDevice;
  info: GpuInfo;
}

export async function nodeGpu(): Promise<NodeGpu> {
  if (!navigatorGpu) {
    // Mesa's Vulkan loader warns on every start when XDG_RUNTIME_DIR is unset (common in containers and CI).
    if (!process.env.XDG_RUNTIME_DIR) {
      const dir = join(tmpdir(), `r3gpu-runtime-${process.getuid?.() ?? 0}`);
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      process.env.XDG_RUNTIME_DIR = dir;
    }
    Object.assign(globalThis, globals);
    navigatorGpu = create([]);
  }
  const adapter = await navigatorGpu.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) {
    throw new Error("r3gpu: no WebGPU adapter found. On Linux without a GPU, run scripts/setup-webgpu.sh " +
      "to install Mesa's lavapipe (a CPU Vulkan driver).");
  }
  const device = await requestEngineDevice(adapter);
  return { adapter, device, info: describeAdapter(adapter, device) };
}
