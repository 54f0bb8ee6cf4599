/** `--backend auto`: the order and the software-adapter rule, decided without loading Dawn. */
import { describe, expect, it } from 'vitest';
import { AUTO_ORDER, autoAccepts, chooseAuto, type AutoCandidate, type Found } from '../../src/model/backend.js';
import { BackendUnavailableError } from '../../src/model/errors.js';
import { describeAdapter, hardwareAdapterPossible, isSoftwareAdapter, summarizeAdapter } from '../../src/model/webgpu.js';

const LAVAPIPE = {
  vendor: 'mesa',
  architecture: 'software',
  device: 'llvmpipe-llvm-15-0-6-256-bits-',
  description: 'llvmpipe: Mesa 25.0.7-2~bpo12+1 (LLVM 15.0.6) 0.0.1',
  isFallbackAdapter: true,
};
const NVIDIA = { vendor: 'nvidia', architecture: 'ampere', device: '', description: 'NVIDIA A10G' };

/** A probe from a table: a string is "unavailable, because"; records what was probed and initialized. */
function fakeProbe(table: Partial<Record<AutoCandidate, string | { software?: boolean; description?: string; initFails?: string }>>) {
  const probed: AutoCandidate[] = [];
  const initialized: AutoCandidate[] = [];
  const probe = async (c: AutoCandidate): Promise<Found<AutoCandidate>> => {
    probed.push(c);
    const entry = table[c] ?? 'not installed';
    if (typeof entry === 'string') throw new BackendUnavailableError(c, entry);
    return {
      software: entry.software,
      description: entry.description,
      init: async () => {
        if (entry.initFails) throw new BackendUnavailableError(c, entry.initFails);
        initialized.push(c);
        return c;
      },
    };
  };
  return { probe, probed, initialized };
}

describe('auto backend order', () => {
  it('is native GPU, WebGPU, native CPU, wasm, cpu', () => {
    expect(AUTO_ORDER).toEqual(['tensorflow-gpu', 'webgpu', 'tensorflow-cpu', 'wasm', 'cpu']);
  });

  it('takes a hardware WebGPU adapter before native TensorFlow on CPU', async () => {
    const f = fakeProbe({ webgpu: { software: false, description: 'NVIDIA A10G' }, 'tensorflow-cpu': {}, wasm: {}, cpu: {} });
    const chosen = await chooseAuto(f.probe);
    expect(chosen.candidate).toBe('webgpu');
    expect(f.probed).toEqual(['tensorflow-gpu', 'webgpu']); // nothing after the pick is even probed
    expect(chosen.passedOver).toHaveLength(1);
  });

  it('never picks a software adapter: lavapipe is passed over with the reason, wasm is taken', async () => {
    const f = fakeProbe({ webgpu: { software: true, description: 'llvmpipe' }, wasm: {}, cpu: {} });
    const chosen = await chooseAuto(f.probe);
    expect(chosen.candidate).toBe('wasm');
    expect(f.initialized).toEqual(['wasm']); // the software adapter was never initialized
    expect(chosen.passedOver.find((r) => r.startsWith('webgpu:'))).toMatch(/software adapter \(llvmpipe\): not picked automatically/);
  });

  it('native TensorFlow with a GPU comes first; a failing init moves on; all failing throws the last error', async () => {
    expect((await chooseAuto(fakeProbe({ 'tensorflow-gpu': {}, webgpu: { software: false } }).probe)).candidate).toBe('tensorflow-gpu');
    expect((await chooseAuto(fakeProbe({ webgpu: { software: false, initFails: 'device lost' }, 'tensorflow-cpu': {} }).probe)).candidate).toBe('tensorflow-cpu');
    await expect(chooseAuto(fakeProbe({ cpu: 'broken' }).probe)).rejects.toThrow(/backend 'cpu' is not available: broken/);
  });

  it('autoAccepts is the software rule alone', () => {
    expect(autoAccepts({})).toEqual({ take: true });
    expect(autoAccepts({ software: false })).toEqual({ take: true });
    expect(autoAccepts({ software: true }).take).toBe(false);
  });
});

describe('WebGPU adapter classification (pure)', () => {
  it('lavapipe is a software adapter by any of its signs; a GPU is not', () => {
    expect(isSoftwareAdapter(LAVAPIPE)).toBe(true);
    expect(isSoftwareAdapter({ vendor: 'mesa', device: 'llvmpipe-llvm-15' })).toBe(true); // no architecture, no fallback flag
    expect(isSoftwareAdapter({ vendor: 'google', description: 'SwiftShader Device (Subzero)' })).toBe(true);
    expect(isSoftwareAdapter({ isFallbackAdapter: true })).toBe(true);
    expect(isSoftwareAdapter(NVIDIA)).toBe(false);
    expect(isSoftwareAdapter({ vendor: 'amd', architecture: 'rdna-3', description: 'AMD Radeon RX 7900 XTX (RADV NAVI31)' })).toBe(false);
  });

  it('summaries and device strings name the adapter and say software', () => {
    const s = summarizeAdapter(LAVAPIPE);
    expect(s).toMatchObject({ vendor: 'mesa', device: 'llvmpipe-llvm-15-0-6-256-bits-', software: true });
    expect(s.name).toMatch(/^llvmpipe: Mesa 25/);
    expect(describeAdapter(s)).toMatch(/^software adapter \(WebGPU on Dawn: llvmpipe.*vendor mesa\)$/);
    expect(describeAdapter(summarizeAdapter(NVIDIA))).toBe('gpu (WebGPU on Dawn: NVIDIA A10G, vendor nvidia)');
    expect(summarizeAdapter({ vendor: 'x', device: 'dev' }).name).toBe('dev');
  });

  it('auto loads Dawn on Linux only with a Vulkan loader and a GPU device node', () => {
    expect(hardwareAdapterPossible({ platform: 'linux', vulkanLoader: false, gpuDeviceNodes: ['/dev/nvidia0'] })).toMatchObject({ possible: false, reason: expect.stringMatching(/Vulkan loader/) });
    expect(hardwareAdapterPossible({ platform: 'linux', vulkanLoader: true, gpuDeviceNodes: [] })).toMatchObject({ possible: false, reason: expect.stringMatching(/GPU device node/) });
    expect(hardwareAdapterPossible({ platform: 'linux', vulkanLoader: true, gpuDeviceNodes: ['/dev/dri/renderD128'] }).possible).toBe(true);
    expect(hardwareAdapterPossible({ platform: 'darwin', vulkanLoader: false, gpuDeviceNodes: [] }).possible).toBe(true);
  });
});
