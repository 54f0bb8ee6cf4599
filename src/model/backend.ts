/**
 * The one place a compute backend is chosen. `auto` takes the first that loads (AUTO_ORDER):
 * native TensorFlow with a GPU (@tensorflow/tfjs-node-gpu), WebGPU on a hardware adapter
 * (Dawn, npm `webgpu`; a software adapter such as Mesa's lavapipe is never picked
 * automatically), native TensorFlow on CPU (@tensorflow/tfjs-node), wasm (with the kernels this
 * project registers), then pure-JS cpu. The native bindings are optional peer dependencies:
 * they are loaded only when installed.
 */
import { setFlagsFromString } from 'node:v8';
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { BackendUnavailableError } from './errors.js';
import { registerWasmKernels } from './kernels/register-wasm-kernels.js';
import { simdProductKind } from './kernels/simd.js';
import { describeAdapter, hardwareAdapterPossible, initializedWebgpu, initWebgpuBackend, machineGpuFacts, probeWebgpuAdapter, type AdapterSummary, type ProbedAdapter } from './webgpu.js';

export const BACKEND_CHOICES = ['auto', 'tensorflow', 'webgpu', 'wasm', 'cpu'] as const;
export type BackendChoice = (typeof BACKEND_CHOICES)[number];

export interface BackendInfo {
  /** tfjs backend name actually in use. */
  name: 'tensorflow' | 'webgpu' | 'wasm' | 'cpu';
  /** What computes: 'gpu (CUDA)', 'gpu (WebGPU on Dawn: ...)', 'cpu (native)', 'cpu (wasm, simd)', ... */
  device: string;
  /** npm package that provides it. */
  package: string;
  /** The WebGPU adapter (webgpu only). */
  adapter?: AdapterSummary;
  /** With `auto`: the candidates passed over before this one, and why. */
  passedOver?: string[];
}

/** The order `auto` tries. */
export const AUTO_ORDER = ['tensorflow-gpu', 'webgpu', 'tensorflow-cpu', 'wasm', 'cpu'] as const;
export type AutoCandidate = (typeof AUTO_ORDER)[number];

/** What probing a candidate found: `init` makes it the active backend. */
export interface Found<T> {
  /** A software device (CPU-emulated GPU): usable when asked for by name, never by `auto`. */
  software?: boolean;
  description?: string;
  init(): Promise<T>;
}

/** Pure: whether `auto` takes a candidate that probed successfully. */
export function autoAccepts(found: { software?: boolean; description?: string }): { take: true } | { take: false; reason: string } {
  if (found.software) return { take: false, reason: `software adapter${found.description ? ` (${found.description})` : ''}: not picked automatically, ask for it by name` };
  return { take: true };
}

/**
 * The `auto` decision, with the probing injected: walks AUTO_ORDER, probes each candidate only
 * when every earlier one was passed over (a probe throws when the candidate is unavailable),
 * takes the first that `autoAccepts` and that initializes. Throws the last error when none does.
 */
export async function chooseAuto<T>(probe: (candidate: AutoCandidate) => Promise<Found<T>>): Promise<{ candidate: AutoCandidate; result: T; passedOver: string[] }> {
  const passedOver: string[] = [];
  let last: unknown = new BackendUnavailableError('auto', 'no candidate');
  for (const candidate of AUTO_ORDER) {
    try {
      const found = await probe(candidate);
      const verdict = autoAccepts(found);
      if (!verdict.take) {
        passedOver.push(`${candidate}: ${verdict.reason}`);
        continue;
      }
      return { candidate, result: await found.init(), passedOver };
    } catch (err) {
      last = err;
      passedOver.push(`${candidate}: ${(err as Error).message}`);
    }
  }
  throw last;
}

export function isBackendChoice(name: string): name is BackendChoice {
  return (BACKEND_CHOICES as readonly string[]).includes(name);
}

let active: BackendInfo | undefined;

async function tryNative(pkg: '@tensorflow/tfjs-node-gpu' | '@tensorflow/tfjs-node'): Promise<BackendInfo> {
  try {
    await import(pkg);
  } catch (err) {
    throw new BackendUnavailableError('tensorflow', `${pkg} is not installed or failed to load (${(err as Error).message.split('\n')[0]})`, { cause: err });
  }
  if (!(await tf.setBackend('tensorflow'))) {
    throw new BackendUnavailableError('tensorflow', `${pkg} loaded but the 'tensorflow' backend failed to initialize`);
  }
  const gpu = pkg === '@tensorflow/tfjs-node-gpu';
  return { name: 'tensorflow', device: gpu ? 'gpu (CUDA)' : 'cpu (native)', package: pkg };
}

function webgpuInfo(probed: ProbedAdapter): BackendInfo {
  return { name: 'webgpu', device: describeAdapter(probed.summary), package: '@tensorflow/tfjs-backend-webgpu', adapter: probed.summary };
}

/** `--backend webgpu`: any adapter Dawn offers, a software one included. */
async function tryWebgpu(): Promise<BackendInfo> {
  return webgpuInfo(await initWebgpuBackend(initializedWebgpu() ?? (await probeWebgpuAdapter())));
}

/** `auto`'s WebGPU probe: Dawn is loaded only where a hardware adapter can exist. */
async function probeWebgpuForAuto(): Promise<Found<BackendInfo>> {
  const possible = hardwareAdapterPossible(machineGpuFacts());
  if (!possible.possible) throw new BackendUnavailableError('webgpu', possible.reason!);
  const probed = await probeWebgpuAdapter();
  return {
    software: probed.summary.software,
    description: probed.summary.name,
    init: async () => webgpuInfo(await initWebgpuBackend(probed)),
  };
}

/**
 * V8 compiles WebAssembly with its baseline compiler first and moves hot functions to the
 * optimizing one as they run ("dynamic tiering"). For a training loop that spends its life in a
 * few kernels that means hundreds of slow steps: a worker's step on the reference CNN started at
 * 19 ms and only reached 13 ms after ~500 steps. Optimizing every function up front costs a
 * fraction of a second at start-up instead. It must be set before the first module compiles.
 */
function optimizeWasmEagerly(): void {
  setFlagsFromString('--no-wasm-dynamic-tiering');
}

async function tryWasm(): Promise<BackendInfo> {
  optimizeWasmEagerly();
  try {
    await import('@tensorflow/tfjs-backend-wasm');
  } catch (err) {
    throw new BackendUnavailableError('wasm', `@tensorflow/tfjs-backend-wasm failed to load (${(err as Error).message})`, { cause: err });
  }
  registerWasmKernels();
  if (!(await tf.setBackend('wasm'))) throw new BackendUnavailableError('wasm', 'the wasm module failed to initialize');
  const simd = tf.env().getBool('WASM_HAS_SIMD_SUPPORT');
  const fused = simdProductKind(tf.backend() as BackendWasm) === 'fused';
  return { name: 'wasm', device: `cpu (wasm${simd ? ', simd' : ''}${fused ? ', fused multiply-add' : ''}, 1 thread)`, package: '@tensorflow/tfjs-backend-wasm' };
}

async function tryCpu(): Promise<BackendInfo> {
  if (!(await tf.setBackend('cpu'))) throw new BackendUnavailableError('cpu', 'the pure-JS backend failed to initialize');
  return { name: 'cpu', device: 'cpu (pure JS)', package: '@tensorflow/tfjs-backend-cpu' };
}

/**
 * Selects and initializes the backend. An explicit choice that cannot load throws
 * BackendUnavailableError (never a silent fallback); `auto` falls through the order above.
 */
export async function selectBackend(choice: BackendChoice): Promise<BackendInfo> {
  if (active && (choice === 'auto' || choice === active.name)) return active;
  let info: BackendInfo;
  switch (choice) {
    case 'tensorflow':
      info = await tryNative('@tensorflow/tfjs-node-gpu').catch(() => tryNative('@tensorflow/tfjs-node'));
      break;
    case 'wasm':
      info = await tryWasm();
      break;
    case 'cpu':
      info = await tryCpu();
      break;
    case 'webgpu':
      info = await tryWebgpu();
      break;
    case 'auto': {
      const loaded = (attempt: () => Promise<BackendInfo>) => async (): Promise<Found<BackendInfo>> => {
        const result = await attempt();
        return { init: async () => result };
      };
      const probes: Record<AutoCandidate, () => Promise<Found<BackendInfo>>> = {
        'tensorflow-gpu': loaded(() => tryNative('@tensorflow/tfjs-node-gpu')),
        webgpu: probeWebgpuForAuto,
        'tensorflow-cpu': loaded(() => tryNative('@tensorflow/tfjs-node')),
        wasm: loaded(tryWasm),
        cpu: loaded(tryCpu),
      };
      const chosen = await chooseAuto((candidate) => probes[candidate]());
      info = { ...chosen.result, passedOver: chosen.passedOver };
      break;
    }
  }
  await tf.ready();
  active = info;
  return info;
}
