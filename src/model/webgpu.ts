/**
 * TensorFlow.js' WebGPU backend on Dawn, Chrome's WebGPU implementation, which the npm package
 * `webgpu` ships prebuilt (`dawn.node`). On Linux Dawn drives the GPU through Vulkan: the GPU
 * vendor's Vulkan driver on a GPU node, or Mesa's software device (lavapipe) on a machine without
 * one, which is slow but runs the same code path (this is how CI tests it).
 *
 * Set-up order matters: Dawn's globals (GPUBufferUsage, ...) and `navigator.gpu` must exist
 * before @tensorflow/tfjs-backend-webgpu is imported (it registers itself only when it sees
 * `navigator.gpu`). The backend is then registered again with a factory that uses the adapter
 * probed here, so the adapter that is logged is the one that computes.
 *
 * Reads on this backend are asynchronous only: `dataSync()` needs `OffscreenCanvas` and throws.
 */
import { existsSync, readdirSync } from 'node:fs';
import { delimiter } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { BackendUnavailableError } from './errors.js';

/** What a worker logs about its WebGPU adapter. */
export interface AdapterSummary {
  /** Human-readable name: the driver's description, else the device id. */
  name: string;
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** A device implemented on the CPU (Mesa lavapipe/llvmpipe, SwiftShader, WARP): correct but slow. */
  software: boolean;
}

/** The fields of GPUAdapterInfo this module reads (Dawn also reports `isFallbackAdapter` there). */
export interface AdapterInfoLike {
  vendor?: string;
  architecture?: string;
  device?: string;
  description?: string;
  isFallbackAdapter?: boolean;
}

const SOFTWARE_NAMES = /llvmpipe|lavapipe|swiftshader|softpipe|microsoft basic render|\bwarp\b/i;

/** Pure: whether an adapter is a software (CPU) device. */
export function isSoftwareAdapter(info: AdapterInfoLike): boolean {
  if (info.isFallbackAdapter === true) return true;
  if ((info.architecture ?? '').toLowerCase() === 'software') return true;
  return SOFTWARE_NAMES.test(`${info.device ?? ''} ${info.description ?? ''}`);
}

/** Pure: the summary a worker logs, from an adapter's info. */
export function summarizeAdapter(info: AdapterInfoLike): AdapterSummary {
  const vendor = info.vendor ?? '';
  const device = info.device ?? '';
  const description = info.description ?? '';
  return {
    name: description || device || vendor || 'unknown adapter',
    vendor,
    architecture: info.architecture ?? '',
    device,
    description,
    software: isSoftwareAdapter(info),
  };
}

/** Pure: `BackendInfo.device` for a WebGPU adapter. */
export function describeAdapter(a: AdapterSummary): string {
  const vendor = a.vendor ? `, vendor ${a.vendor}` : '';
  return `${a.software ? 'software adapter' : 'gpu'} (WebGPU on Dawn: ${a.name}${vendor})`;
}

/**
 * Pure: whether this machine can have a hardware WebGPU adapter at all, from what exists on
 * disk. On Linux a hardware adapter needs the Vulkan loader and a GPU device node (/dev/dri/
 * renderD* for Mesa's drivers, /dev/nvidia0... for NVIDIA's); `auto` does not load Dawn
 * without both, which keeps it instant and quiet on machines without a GPU. Other platforms
 * (Metal, D3D12) are left to Dawn.
 */
export function hardwareAdapterPossible(facts: { platform: string; vulkanLoader: boolean; gpuDeviceNodes: string[] }): { possible: boolean; reason?: string } {
  if (facts.platform !== 'linux') return { possible: true };
  if (!facts.vulkanLoader) return { possible: false, reason: 'no Vulkan loader (libvulkan.so.1) on this machine' };
  if (facts.gpuDeviceNodes.length === 0) return { possible: false, reason: 'no GPU device node (/dev/dri/renderD*, /dev/nvidia*) on this machine' };
  return { possible: true };
}

const LIBRARY_DIRS = ['/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib64', '/usr/lib', '/lib/x86_64-linux-gnu', '/lib/aarch64-linux-gnu', '/lib64', '/lib', '/usr/local/lib'];

/** The facts `hardwareAdapterPossible` decides on, read from this machine (a few stat calls). */
export function machineGpuFacts(): { platform: string; vulkanLoader: boolean; gpuDeviceNodes: string[] } {
  const dirs = [...(process.env.LD_LIBRARY_PATH ?? '').split(delimiter).filter(Boolean), ...LIBRARY_DIRS];
  const vulkanLoader = dirs.some((d) => existsSync(`${d}/libvulkan.so.1`));
  const list = (dir: string, pattern: RegExp) => {
    try {
      return readdirSync(dir)
        .filter((f) => pattern.test(f))
        .map((f) => `${dir}/${f}`);
    } catch {
      return [];
    }
  };
  return { platform: process.platform, vulkanLoader, gpuDeviceNodes: [...list('/dev/dri', /^renderD\d+$/), ...list('/dev', /^nvidia\d+$/)] };
}

interface Dawn {
  gpu: GPU;
}
let dawn: Promise<Dawn> | undefined;

/** Loads dawn.node once and installs its globals and `navigator.gpu`. */
function loadDawn(): Promise<Dawn> {
  dawn ??= (async () => {
    let mod: typeof import('webgpu');
    try {
      mod = await import('webgpu');
    } catch (err) {
      throw new BackendUnavailableError('webgpu', `the npm package 'webgpu' (Dawn) failed to load (${(err as Error).message.split('\n')[0]})`, { cause: err });
    }
    const g = globalThis as Record<string, unknown>;
    for (const [key, value] of Object.entries(mod.globals as Record<string, unknown>)) if (!(key in g)) g[key] = value;
    const gpu = mod.create([]);
    // Node 21+ has a global navigator (an accessor on globalThis): add `gpu` to it; Node 20 has none.
    const nav = g.navigator as Record<string, unknown> | undefined;
    if (nav) Object.defineProperty(nav, 'gpu', { value: gpu, configurable: true, writable: true });
    else Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true, writable: true });
    return { gpu };
  })();
  dawn.catch(() => (dawn = undefined));
  return dawn;
}

export interface ProbedAdapter {
  adapter: GPUAdapter;
  summary: AdapterSummary;
}

const NO_ADAPTER =
  "Dawn found no WebGPU adapter (no working Vulkan driver: on a GPU node install the vendor's Vulkan driver, with the NVIDIA container runtime set NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics; without a GPU, Mesa 25's lavapipe, on Debian 12 mesa-vulkan-drivers from bookworm-backports)";

/** Loads Dawn and requests the high-performance adapter; throws BackendUnavailableError without one. */
export async function probeWebgpuAdapter(): Promise<ProbedAdapter> {
  const { gpu } = await loadDawn();
  let adapter: GPUAdapter | null;
  try {
    adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  } catch (err) {
    throw new BackendUnavailableError('webgpu', `requesting a WebGPU adapter failed (${(err as Error).message})`, { cause: err });
  }
  if (!adapter) throw new BackendUnavailableError('webgpu', NO_ADAPTER);
  const info = 'info' in adapter && adapter.info ? adapter.info : await (adapter as unknown as { requestAdapterInfo(): Promise<GPUAdapterInfo> }).requestAdapterInfo();
  return { adapter, summary: summarizeAdapter(info as AdapterInfoLike) };
}

/** MatMulProgramType.MatMulPackedProgram of @tensorflow/tfjs-backend-webgpu (webgpu_util). */
export const MATMUL_PACKED_PROGRAM = 3;

let initialized: ProbedAdapter | undefined;

/** The adapter the webgpu backend was initialized on in this process, if it was. */
export function initializedWebgpu(): ProbedAdapter | undefined {
  return initialized;
}

/**
 * Makes `webgpu` the active tfjs backend on `probed.adapter`. The device is requested as
 * @tensorflow/tfjs-backend-webgpu's own factory does (same features and limits). Once
 * initialized, the backend is kept: switching back to it later reuses its device (and the
 * tensors that live on it), whatever `probed` says.
 */
export async function initWebgpuBackend(probed: ProbedAdapter): Promise<ProbedAdapter> {
  if (initialized) {
    if (!(await tf.setBackend('webgpu'))) throw new BackendUnavailableError('webgpu', 'the WebGPU backend could not be re-activated');
    return initialized;
  }
  let backendModule: typeof import('@tensorflow/tfjs-backend-webgpu');
  try {
    backendModule = await import('@tensorflow/tfjs-backend-webgpu');
  } catch (err) {
    throw new BackendUnavailableError('webgpu', `@tensorflow/tfjs-backend-webgpu failed to load (${(err as Error).message.split('\n')[0]})`, { cause: err });
  }
  const { adapter } = probed;
  const factory = async () => {
    const requiredFeatures: GPUFeatureName[] = adapter.features.has('timestamp-query') ? ['timestamp-query'] : [];
    const l = adapter.limits;
    const device = await adapter.requestDevice({
      requiredFeatures,
      requiredLimits: {
        maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
        maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
        maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
        maxBufferSize: l.maxBufferSize,
        maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
        maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
      },
    });
    return new backendModule.WebGPUBackend(device, adapter.info);
  };
  if (tf.findBackendFactory('webgpu')) tf.removeBackend('webgpu');
  tf.registerBackend('webgpu', factory, 3);
  let ok: boolean;
  try {
    ok = await tf.setBackend('webgpu');
  } catch (err) {
    throw new BackendUnavailableError('webgpu', `the WebGPU device failed to initialize (${(err as Error).message})`, { cause: err });
  }
  if (!ok) throw new BackendUnavailableError('webgpu', `the WebGPU device on '${probed.summary.name}' failed to initialize`);
  // Left to itself tfjs picks a split-K matmul for small outputs with a long inner dimension
  // (the first dense layer's forward pass); it sums partial products with float atomics, in
  // whatever order the GPU runs them, so two identical steps differ in the last bits. The
  // packed (tiled) matmul sums in a fixed order: runs stay bitwise reproducible.
  tf.env().set('WEBGPU_MATMUL_PROGRAM_TYPE', MATMUL_PACKED_PROGRAM);
  initialized = probed;
  return probed;
}
